"""Per-case segmentation metrics of the paper (Dice, HD95, Precision, Recall) and of the challenges.

All functions take numpy arrays indexed (X, Y, Z) with Z the axial axis, and spacing in mm (sx, sy, sz).
Masks are binarised as ``array > 0`` unless a function says otherwise; ``pred`` and ``gt`` must have
the same shape.

Empty-mask conventions (each function's docstring repeats its own):

==========================  ================  ===================  ==================
metric                      both empty        prediction empty     label empty
==========================  ================  ===================  ==================
dice, precision, recall     1.0               0.0                  0.0
hd95                        NaN               NaN                  NaN
false_positive_volume       0.0               0.0                  volume of pred
false_negative_volume       NaN               volume of label      NaN
lesion_detection            all counts 0      every lesion missed  every component false
==========================  ================  ===================  ==================

The false-negative volume of a lesion-free study is NaN, as in the autoPET challenge's evaluation
code (nothing can be missed); summaries average it over lesion-positive studies only.

Connected components use 18-connectivity (voxels sharing a face or an edge, not only a corner), the
autoPET challenge's choice: ``scipy.ndimage.generate_binary_structure(3, 2)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from h2aseg.constants import MM3_PER_ML

__all__ = [
    "CONNECTIVITY_18",
    "aggregated_dice",
    "case_metrics",
    "dice",
    "false_negative_volume",
    "false_positive_volume",
    "hd95",
    "lesion_detection",
    "precision",
    "recall",
    "voxel_volume_ml",
]

#: 3-D structuring element for 18-connectivity (face and edge neighbours).
CONNECTIVITY_18 = ndimage.generate_binary_structure(3, 2)

Spacing = Sequence[float]


def _binary(a: np.ndarray) -> np.ndarray:
    return np.asarray(a) > 0


def _crop_to_union(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Crop to the bounding box of all foreground plus one voxel (clipped at the volume's border).

    Every metric here is unchanged by this crop: overlaps and components lie inside the box, and the one
    voxel margin keeps surface voxels (found by erosion) what they were in the full volume. It makes a
    whole-body volume with small lesions cheap to evaluate.
    """
    union = np.zeros(arrays[0].shape, dtype=bool)
    for a in arrays:
        union |= np.asarray(a) > 0
    if not union.any():
        return arrays
    box = []
    for axis in range(union.ndim):
        hit = np.nonzero(union.any(axis=tuple(i for i in range(union.ndim) if i != axis)))[0]
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, union.shape[axis])))
    return tuple(np.asarray(a)[tuple(box)] for a in arrays)


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = _binary(pred), _binary(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} and label shape {g.shape} must be equal")
    return _crop_to_union(p, g)


def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    # 0/0 happens only when a mask is empty: perfect when both are, a failure when only one is.
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return numerator / denominator


def voxel_volume_ml(spacing: Spacing) -> float:
    """Volume of one voxel in millilitres (spacing in mm; 1 ml = 1000 mm³)."""
    return float(np.prod(np.asarray(spacing, dtype=float))) / MM3_PER_ML


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity coefficient 2·|P∩G| / (|P| + |G|), in [0, 1].

    Empty masks: 1.0 when both are empty, 0.0 when only one is.
    """
    p, g = _pair(pred, gt)
    inter, sp, sg = int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g))
    return _ratio(2 * inter, sp + sg, both_empty=sp == 0 and sg == 0)


def precision(pred: np.ndarray, gt: np.ndarray) -> float:
    """Precision |P∩G| / |P| (positive predictive value), in [0, 1].

    Empty masks: 1.0 when both are empty; 0.0 when the prediction is empty but the label is not;
    0.0 when the label is empty but the prediction is not (every predicted voxel is false).
    """
    p, g = _pair(pred, gt)
    sp, sg = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    return _ratio(int(np.count_nonzero(p & g)), sp, both_empty=sp == 0 and sg == 0)


def recall(pred: np.ndarray, gt: np.ndarray) -> float:
    """Recall |P∩G| / |G| (sensitivity), in [0, 1].

    Empty masks: 1.0 when both are empty; 0.0 when the label is empty but the prediction is not
    (the case is a false alarm); 0.0 when the prediction is empty but the label is not.
    """
    p, g = _pair(pred, gt)
    sp, sg = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    return _ratio(int(np.count_nonzero(p & g)), sg, both_empty=sp == 0 and sg == 0)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> float:
    """95 % Hausdorff distance in mm, computed with MONAI's ``compute_hausdorff_distance``.

    Surface voxels are those a 3-D erosion removes; for each surface voxel of one mask the Euclidean
    distance (physical spacing) to the nearest surface voxel of the other mask is taken, the 95th
    percentile (linear interpolation, ``torch.quantile``) is taken of each direction, and the larger of
    the two directed values is returned: max(P95(d(∂P→∂G)), P95(d(∂G→∂P))). This is MONAI's definition
    (``percentile=95``, ``directed=False``); it can differ slightly from pooling both directions
    before the percentile.

    Empty masks: NaN when either mask (or both) is empty, because no distance exists. Summaries
    (:func:`h2aseg.evaluation.report.summarise`) skip NaN and report how many values were undefined.
    """
    p, g = _pair(pred, gt)
    if len(spacing) != p.ndim:
        raise ValueError(f"spacing {tuple(spacing)} must have one value per axis of shape {p.shape}")
    if not p.any() or not g.any():
        return math.nan
    import torch
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        # MONAI 1.5+ warns about its own internal use of a deprecated argument; nothing for users to act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(p[None, None]),
            torch.from_numpy(g[None, None]),
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(value.reshape(-1)[0])


def labelled_components(mask: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 18-connected components of ``mask`` (the autoPET rule): their label map (0 = outside, component i
    = i + 1), sizes in voxels and whether each touches ``other``."""
    labels, n = ndimage.label(mask, structure=CONNECTIVITY_18)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    touched = np.zeros(n + 1, dtype=bool)
    touched[labels[mask & other]] = True
    return labels, sizes, touched[1:]


def _components(mask: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes (voxels) of the 18-connected components of ``mask`` and whether each touches ``other``."""
    return labelled_components(mask, other)[1:]


def false_positive_volume(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> float:
    """autoPET false-positive volume in ml: predicted 18-connected components that overlap no label voxel.

    A predicted component touching the label in one voxel counts as true in full (no partial volume).

    Empty masks: 0.0 when the prediction is empty; the whole predicted volume when the label is empty.
    """
    p, g = _pair(pred, gt)
    sizes, touched = _components(p, g)
    return int(sizes[~touched].sum()) * voxel_volume_ml(spacing)


def false_negative_volume(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> float:
    """autoPET false-negative volume in ml: label 18-connected components that overlap no predicted voxel.

    Empty masks: NaN when the label is empty (a lesion-free study, as the autoPET evaluation code); the
    whole label volume when the prediction is empty.
    """
    p, g = _pair(pred, gt)
    if not g.any():
        return math.nan
    sizes, touched = _components(g, p)
    return int(sizes[~touched].sum()) * voxel_volume_ml(spacing)


def _detection(
    p_components: tuple[np.ndarray, np.ndarray],
    g_components: tuple[np.ndarray, np.ndarray],
    min_voxels: float,
) -> dict[str, int]:
    (p_sizes, p_touched), (g_sizes, g_touched) = p_components, g_components
    lesions = g_sizes >= min_voxels
    hits = int((lesions & g_touched).sum())
    return {
        "lesions": int(lesions.sum()),
        "hits": hits,
        "misses": int(lesions.sum()) - hits,
        "false_detections": int(((p_sizes >= min_voxels) & ~p_touched).sum()),
    }


def lesion_detection(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing | None = None, min_lesion_ml: float = 0.0
) -> dict[str, int]:
    """Lesion-wise detection from 18-connected components.

    A label component (lesion) is a *hit* when at least one predicted voxel lies in it, otherwise a
    *miss*; a predicted component that overlaps no label voxel is a *false detection*.

    Args:
        pred, gt: masks (binarised as ``> 0``).
        spacing: voxel spacing in mm; needed only with ``min_lesion_ml``.
        min_lesion_ml: label and predicted components smaller than this volume are ignored (neither
            lesions nor false detections). Default 0: every component counts.

    Returns:
        ``{"lesions": n, "hits": h, "misses": n - h, "false_detections": f}``.
        Empty masks: all zero when both are empty; ``misses == lesions`` when the prediction is empty;
        every predicted component is a false detection when the label is empty.
    """
    p, g = _pair(pred, gt)
    min_voxels = 0.0
    if min_lesion_ml > 0:
        if spacing is None:
            raise ValueError("lesion_detection: min_lesion_ml needs the voxel spacing")
        min_voxels = min_lesion_ml / voxel_volume_ml(spacing)
    return _detection(_components(p, g), _components(g, p), min_voxels)


def case_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing, labels: Sequence[int] = (1,)
) -> dict[str, float]:
    """All metrics of one case.

    Binary metrics compare ``pred > 0`` with ``gt > 0`` (the paper reports one foreground class):
    ``dice``, ``hd95`` (mm), ``precision``, ``recall``, ``fp_volume_ml``, ``fn_volume_ml``,
    ``lesions``, ``hits``, ``misses``, ``false_detections``, and the sizes ``pred_voxels``,
    ``gt_voxels``, ``intersection``, ``gt_volume_ml``, ``pred_volume_ml``.

    For every class ``k`` in ``labels`` (e.g. HECKTOR's 1 = GTVp, 2 = GTVn) it adds ``dice_<k>``
    (``pred == k`` vs ``gt == k``, same empty-mask rule as :func:`dice`) and the counts
    ``intersection_<k>``, ``pred_voxels_<k>``, ``gt_voxels_<k>`` from which :func:`aggregated_dice`
    is computed over a cohort.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} and label shape {gt.shape} must be equal")
    pred, gt = _crop_to_union(pred, gt)
    p, g = _pair(pred, gt)
    vml = voxel_volume_ml(spacing)
    sp, sg, inter = int(np.count_nonzero(p)), int(np.count_nonzero(g)), int(np.count_nonzero(p & g))
    row: dict[str, float] = {
        "dice": dice(p, g),
        "hd95": hd95(p, g, spacing),
        "precision": precision(p, g),
        "recall": recall(p, g),
    }
    # Components are found once and shared by the FP/FN volumes and the detection counts.
    p_comp, g_comp = _components(p, g), _components(g, p)
    row["fp_volume_ml"] = int(p_comp[0][~p_comp[1]].sum()) * vml
    row["fn_volume_ml"] = (
        int(g_comp[0][~g_comp[1]].sum()) * vml if sg else math.nan
    )  # autoPET: NaN lesion-free
    row.update(_detection(p_comp, g_comp, 0.0))
    row.update(
        {
            "pred_voxels": sp,
            "gt_voxels": sg,
            "intersection": inter,
            "pred_volume_ml": sp * vml,
            "gt_volume_ml": sg * vml,
        }
    )
    for k in labels:
        pk, gk = pred == k, gt == k
        row[f"dice_{k}"] = dice(pk, gk)
        row[f"intersection_{k}"] = int(np.count_nonzero(pk & gk))
        row[f"pred_voxels_{k}"] = int(np.count_nonzero(pk))
        row[f"gt_voxels_{k}"] = int(np.count_nonzero(gk))
    return row


def aggregated_dice(rows: Iterable[Mapping[str, float]], label: int) -> float:
    """HECKTOR aggregated Dice of one class over a cohort: 2·Σ|P∩G| / Σ(|P| + |G|).

    ``rows`` are :func:`case_metrics` results (or CSV rows with the same keys ``intersection_<label>``,
    ``pred_voxels_<label>``, ``gt_voxels_<label>``).

    Empty masks: NaN when no case has the class in either prediction or label (nothing to aggregate).
    """
    inter = total = 0.0
    for row in rows:
        inter += float(row[f"intersection_{label}"])
        total += float(row[f"pred_voxels_{label}"]) + float(row[f"gt_voxels_{label}"])
    return 2.0 * inter / total if total > 0 else math.nan
