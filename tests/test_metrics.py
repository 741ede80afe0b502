"""Metrics against values worked out by hand on tiny masks, and HD95 against MONAI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from h2aseg.evaluation.metrics import (
    aggregated_dice,
    case_metrics,
    dice,
    false_negative_volume,
    false_positive_volume,
    hd95,
    lesion_detection,
    precision,
    recall,
)
from h2aseg.evaluation.report import format_mean_std, markdown_table, summarise, write_csv, write_json

SPACING = (2.0, 1.0, 3.0)  # one voxel = 6 mm³ = 0.006 ml


def mask(shape=(10, 10, 10), voxels=()):
    m = np.zeros(shape, dtype=np.uint8)
    for v in voxels:
        m[v] = 1
    return m


# Label lesions: L1 (2 voxels), L2 (1), L3 (1, touches L2 only at a corner -> separate under 18-connectivity),
# L4 (3). Prediction components: P1 (2, edge-connected, overlaps L1), P2 (hits L2), P3 (2) and
# P4 (1) touch nothing.
L1, L2, L3, L4 = [(1, 1, 1), (1, 1, 2)], [(5, 5, 5)], [(6, 6, 6)], [(8, 1, 1), (8, 1, 2), (8, 2, 1)]
P1, P2, P3, P4 = [(1, 1, 2), (2, 2, 2)], [(5, 5, 5)], [(3, 8, 8), (4, 9, 8)], [(1, 8, 1)]
GT = mask(voxels=L1 + L2 + L3 + L4)
PRED = mask(voxels=P1 + P2 + P3 + P4)


def test_overlap_scores_match_hand_counts():
    # |P| = 6, |G| = 7, |P∩G| = 2: (1,1,2) and (5,5,5)
    assert dice(PRED, GT) == pytest.approx(4 / 13)
    assert precision(PRED, GT) == pytest.approx(2 / 6)
    assert recall(PRED, GT) == pytest.approx(2 / 7)


@pytest.mark.parametrize(
    "pred_empty, gt_empty, expected",
    [(True, True, 1.0), (True, False, 0.0), (False, True, 0.0)],
    ids=["both-empty", "empty-prediction", "empty-label"],
)
def test_overlap_scores_on_empty_masks(pred_empty, gt_empty, expected):
    pred = mask() if pred_empty else PRED
    gt = mask() if gt_empty else GT
    assert dice(pred, gt) == expected
    assert precision(pred, gt) == expected
    assert recall(pred, gt) == expected


def test_hd95_of_single_voxels_uses_physical_spacing_per_axis():
    a = mask(voxels=[(0, 0, 0)])
    assert hd95(a, mask(voxels=[(3, 0, 0)]), (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, mask(voxels=[(0, 3, 0)]), (2.0, 1.0, 1.0)) == pytest.approx(3.0)
    assert hd95(a, mask(voxels=[(0, 0, 2)]), (1.0, 1.0, 3.0)) == pytest.approx(6.0)


def test_hd95_is_larger_of_the_two_directed_95th_percentiles():
    # pred -> gt distances [0]; gt -> pred distances [0, 8 mm]; P95 of [0, 8] by linear interpolation = 7.6.
    pred = mask(voxels=[(0, 0, 0)])
    gt = mask(voxels=[(0, 0, 0), (0, 0, 4)])
    assert hd95(pred, gt, (1.0, 1.0, 2.0)) == pytest.approx(7.6, abs=1e-5)
    assert hd95(gt, pred, (1.0, 1.0, 2.0)) == pytest.approx(7.6, abs=1e-5)


def test_hd95_is_nan_when_a_mask_is_empty():
    assert math.isnan(hd95(mask(), GT, SPACING))
    assert math.isnan(hd95(PRED, mask(), SPACING))
    assert math.isnan(hd95(mask(), mask(), SPACING))


def _blobs(seed, shape=(24, 20, 12)):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.52


def _brute_force_hd95(p, g, spacing):
    def surface_points(m):
        edge = m & ~ndimage.binary_erosion(m)
        return np.argwhere(edge) * np.asarray(spacing)

    d = cdist(surface_points(p), surface_points(g))
    return max(np.quantile(d.min(axis=1), 0.95), np.quantile(d.min(axis=0), 0.95))


@pytest.mark.parametrize("seed", [0, 1])
def test_hd95_agrees_with_monai_metric_and_brute_force(seed):
    from monai.metrics import HausdorffDistanceMetric

    p, g = _blobs(seed), _blobs(seed + 10)
    assert p.any() and g.any()
    spacing = (0.8, 1.3, 3.0)
    ours = hd95(p, g, spacing)

    def one_hot(m):
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    metric = HausdorffDistanceMetric(include_background=False, percentile=95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monai_value = float(metric(one_hot(p), one_hot(g), spacing=list(spacing)).item())
    assert ours == pytest.approx(monai_value, rel=1e-5)
    assert ours == pytest.approx(_brute_force_hd95(p, g, spacing), rel=1e-4)
    # A different spacing must change the answer: the spacing really reaches MONAI, axis by axis.
    assert hd95(p, g, (3.0, 1.3, 0.8)) != pytest.approx(ours)


def test_fp_and_fn_volumes_use_18_connected_components_and_anisotropic_voxels():
    # FP: P3 + P4 = 3 voxels; FN: L3 + L4 = 4 voxels; one voxel = 2·1·3 mm³ = 0.006 ml.
    assert false_positive_volume(PRED, GT, SPACING) == pytest.approx(0.018)
    assert false_negative_volume(PRED, GT, SPACING) == pytest.approx(0.024)
    # With 26-connectivity L3 would join L2 (which is hit) and the FN volume would be 0.018 ml.


def test_fp_and_fn_volumes_on_empty_masks():
    assert false_positive_volume(mask(), GT, SPACING) == 0.0
    assert false_negative_volume(mask(), GT, SPACING) == pytest.approx(7 * 0.006)
    assert false_positive_volume(PRED, mask(), SPACING) == pytest.approx(6 * 0.006)
    # lesion-free study: NaN as in the autoPET evaluation code (before: 0.0, which pulled the mean down)
    assert math.isnan(false_negative_volume(PRED, mask(), SPACING))
    assert false_positive_volume(mask(), mask(), SPACING) == 0.0
    assert math.isnan(false_negative_volume(mask(), mask(), SPACING))


def test_a_component_touching_the_label_once_is_not_a_false_positive():
    gt = mask(voxels=[(4, 4, 4)])
    pred = mask(voxels=[(4, 4, 4), (4, 4, 5), (4, 4, 6), (4, 4, 7)])
    assert false_positive_volume(pred, gt, (1.0, 1.0, 1.0)) == 0.0


def test_lesion_detection_counts_hits_misses_and_false_detections():
    assert lesion_detection(PRED, GT) == {"lesions": 4, "hits": 2, "misses": 2, "false_detections": 2}


def test_lesion_detection_ignores_components_below_min_volume():
    # Only components of at least 2 voxels (0.012 ml): lesions L1 (hit), L4 (miss);
    # predictions P1, P3 (false).
    result = lesion_detection(PRED, GT, SPACING, min_lesion_ml=0.012)
    assert result == {"lesions": 2, "hits": 1, "misses": 1, "false_detections": 1}
    with pytest.raises(ValueError, match="spacing"):
        lesion_detection(PRED, GT, min_lesion_ml=0.012)


def test_lesion_detection_on_empty_masks():
    assert lesion_detection(mask(), mask()) == {"lesions": 0, "hits": 0, "misses": 0, "false_detections": 0}
    assert lesion_detection(mask(), GT) == {"lesions": 4, "hits": 0, "misses": 4, "false_detections": 0}
    assert lesion_detection(PRED, mask()) == {"lesions": 0, "hits": 0, "misses": 0, "false_detections": 4}


def _two_class_cases():
    # Case A: class 1 label 4 voxels, predicted 2 inside; class 2 label 2 voxels,
    # predicted 2 of which 1 overlaps.
    gt_a = np.zeros((6, 6, 6), np.uint8)
    gt_a[0, 0, 0:4] = 1
    gt_a[4, 4, 0:2] = 2
    pred_a = np.zeros_like(gt_a)
    pred_a[0, 0, 0:2] = 1
    pred_a[4, 4, 1:3] = 2
    # Case B: no class 1 anywhere; class 2 label 3 voxels, predicted 1 inside.
    gt_b = np.zeros_like(gt_a)
    gt_b[2, 2, 0:3] = 2
    pred_b = np.zeros_like(gt_a)
    pred_b[2, 2, 0] = 2
    return (pred_a, gt_a), (pred_b, gt_b)


def test_case_metrics_reports_binary_and_per_class_values():
    (pred_a, gt_a), _ = _two_class_cases()
    row = case_metrics(pred_a, gt_a, (1.0, 1.0, 2.0), labels=(1, 2))
    # binary: |P| = 4, |G| = 6, |P∩G| = 3
    assert row["dice"] == pytest.approx(6 / 10)
    assert (row["pred_voxels"], row["gt_voxels"], row["intersection"]) == (4, 6, 3)
    assert row["gt_volume_ml"] == pytest.approx(6 * 0.002)
    assert row["dice_1"] == pytest.approx(2 * 2 / 6)
    assert row["dice_2"] == pytest.approx(2 * 1 / 4)
    assert (row["intersection_2"], row["pred_voxels_2"], row["gt_voxels_2"]) == (1, 2, 2)
    assert row["hd95"] >= 0


def test_aggregated_dice_pools_counts_over_cases():
    rows = [case_metrics(p, g, (1.0, 1.0, 1.0), labels=(1, 2)) for p, g in _two_class_cases()]
    assert aggregated_dice(rows, 1) == pytest.approx(2 * 2 / (2 + 4))
    assert aggregated_dice(rows, 2) == pytest.approx(2 * (1 + 1) / ((2 + 2) + (1 + 3)))
    # Class 1 is absent from case B: its per-case Dice is 1.0 by convention, but it adds nothing to the pool.
    assert rows[1]["dice_1"] == 1.0
    empty = [{"intersection_3": 0, "pred_voxels_3": 0, "gt_voxels_3": 0}]
    assert math.isnan(aggregated_dice(empty, 3))


def test_summarise_applies_the_autopet_rule_when_a_case_is_lesion_free():
    rows = [
        {"case_id": "a", "dice": 0.5, "hd95": 4.0, "precision": 0.4, "gt_voxels": 10},
        {"case_id": "b", "dice": 0.7, "hd95": math.nan, "precision": 0.8, "gt_voxels": 5},
        {"case_id": "c", "dice": 0.0, "hd95": math.nan, "precision": 0.0, "gt_voxels": 0},
    ]
    s = summarise(rows)
    assert (s["n_cases"], s["n_lesion_positive"], s["n_lesion_free"]) == (3, 2, 1)
    assert s["positive_only"] == ["dice", "hd95"]
    assert s["metrics"]["dice"]["mean"] == pytest.approx(0.6)
    assert s["metrics"]["dice"]["std"] == pytest.approx(0.1)
    assert s["metrics"]["dice"]["n"] == 2
    assert s["metrics"]["hd95"]["mean"] == pytest.approx(4.0)
    assert (s["metrics"]["hd95"]["n"], s["metrics"]["hd95"]["n_undefined"]) == (1, 1)
    assert s["metrics"]["precision"]["mean"] == pytest.approx(0.4)
    assert s["metrics"]["precision"]["n"] == 3


def test_summarise_uses_all_cases_without_lesion_free_ones():
    rows = [{"dice": 0.2, "gt_voxels": 1}, {"dice": 0.6, "gt_voxels": 3}]
    s = summarise(rows)
    assert s["positive_only"] == []
    assert s["metrics"]["dice"]["mean"] == pytest.approx(0.4)
    assert s["metrics"]["dice"]["cases"] == "all"


def test_summarise_totals_lesion_detection_and_aggregates_classes():
    rows = [case_metrics(p, g, (1.0, 1.0, 1.0), labels=(1, 2)) for p, g in _two_class_cases()]
    s = summarise(rows)
    # lesions: case A has 2 label components, case B 1; all three are hit.
    assert s["detection"] == {
        "lesions": 3,
        "hits": 3,
        "misses": 0,
        "false_detections": 0,
        "lesion_sensitivity": 1.0,
    }
    assert s["aggregated_dice"]["2"] == pytest.approx(0.5)


def test_format_mean_std():
    assert format_mean_std(0.6003, 0.1475, percent=True) == "60.03 ± 14.75"
    assert format_mean_std(63.091, 30.444, percent=False) == "63.09 ± 30.44"
    assert format_mean_std(math.nan, math.nan, percent=True) == "n/a"


def test_markdown_table_marks_best_bold_and_second_underlined_per_column():
    header = ["Method", "Dice", "HD95"]
    values = [[math.nan, 0.55, 70.0], [math.nan, 0.60, 63.0], [math.nan, 0.57, 67.0]]
    rows = [["A", "55", "70"], ["B", "60", "63"], ["C", "57", "67"]]
    text = markdown_table(header, rows, higher_is_better={1: True, 2: False}, values=values)
    lines = text.strip().splitlines()
    assert lines[0] == "| Method | Dice | HD95 |"
    assert lines[2] == "| A | 55 | 70 |"
    assert lines[3] == "| B | **60** | **63** |"
    assert lines[4] == "| C | <u>57</u> | <u>67</u> |"


def test_writers_are_atomic_and_json_has_no_nan(tmp_path):
    write_csv([{"case_id": "a", "dice": 0.5}, {"case_id": "b", "hd95": math.nan}], tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_text().splitlines() == ["case_id,dice,hd95", "a,0.5,", "b,,nan"]
    write_json({"v": math.nan, "w": np.float32(1.5)}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "v": null,\n  "w": 1.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv", "x.json"]


def test_case_metrics_do_not_depend_on_empty_space_around_the_masks():
    # Internally the masks are cropped to their union (plus one voxel); padding must change nothing,
    # including for surfaces that touch the volume's border.
    p, g = _blobs(3).astype(np.uint8), _blobs(4).astype(np.uint8)
    padded = [np.pad(a, ((5, 0), (0, 7), (3, 3))) for a in (p, g)]
    spacing = (0.8, 1.3, 3.0)
    assert case_metrics(*padded, spacing) == pytest.approx(case_metrics(p, g, spacing))
