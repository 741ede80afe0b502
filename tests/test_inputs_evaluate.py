"""Issue 11: evaluation on the label's grid, exact --cases matching,
autoPET FN volume of lesion-free studies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from h2aseg.cli import main as cli_main
from h2aseg.evaluation.evaluate import evaluate_folders


def write(array: np.ndarray, path: Path, spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)).astype(np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def test_prediction_on_a_coarser_grid_covering_the_label_is_resampled_and_said_so(tmp_path):
    label = np.zeros((16, 16, 12), np.uint8)
    label[4:8, 4:8, 4:8] = 1  # 2-mm grid, voxel centres at 0, 2, ... mm
    write(label, tmp_path / "gt" / "c1.nii.gz")
    # the same lesion on a 4-mm grid over the same field (first voxel centre at 1 mm)
    coarse = np.zeros((8, 8, 6), np.uint8)
    coarse[2:4, 2:4, 2:4] = 1
    write(coarse, tmp_path / "pred" / "c1.nii.gz", spacing=(4.0, 4.0, 4.0), origin=(1.0, 1.0, 1.0))
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", progress=False)
    assert summary["n_cases"] == 1 and not summary["problems"]  # before: refused, "resample the prediction"
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(1.0)
    assert len(summary["resampled"]) == 1 and "nearest neighbour" in summary["resampled"][0]
    assert (
        "resampled onto the label grid (nearest neighbour)" in (tmp_path / "out" / "summary.md").read_text()
    )


def test_prediction_that_does_not_cover_its_label_is_still_refused(tmp_path, capsys):
    label = np.zeros((8, 8, 8), np.uint8)
    label[2:4, 2:4, 2:4] = 1
    write(label, tmp_path / "gt" / "a.nii.gz")
    write(label, tmp_path / "pred" / "a.nii.gz")
    write(label, tmp_path / "gt" / "b.nii.gz")
    write(label, tmp_path / "pred" / "b.nii.gz", origin=(500.0, 0.0, 0.0))  # far away
    code = cli_main(
        [
            "evaluate",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 1  # something was left out
    err = capsys.readouterr().err
    assert "b: prediction" in err and "covers 0%" in err and "--grid ct" in err


def test_cases_filter_matches_problems_by_exact_case_id(tmp_path):
    root = tmp_path / "hecktor"
    lesion = np.zeros((8, 8, 8), np.uint8)
    lesion[2:4, 2:4, 2:4] = 1
    for case_id in ("CHUM-01", "CHUM-010"):
        write(lesion, root / "imagesTr" / f"{case_id}__CT.nii.gz")
    write(lesion, root / "imagesTr" / "CHUM-01__PT.nii.gz")
    write(lesion, root / "labelsTr" / "CHUM-01.nii.gz")
    write(lesion, tmp_path / "pred" / "CHUM-01.nii.gz")
    # CHUM-010 has no PET: discovery leaves it out with a problem that contains "CHUM-01" as a substring
    summary = evaluate_folders(
        tmp_path / "pred", root, tmp_path / "out", layout="hecktor", progress=False, case_ids=["CHUM-01"]
    )
    assert summary["n_cases"] == 1
    assert summary["problems"] == []  # before: CHUM-010's missing PET was listed too
    summary = evaluate_folders(tmp_path / "pred", root, tmp_path / "out", layout="hecktor", progress=False)
    assert len(summary["problems"]) == 1 and "CHUM-010" in summary["problems"][0]


def test_autopet_fn_volume_is_nan_for_lesion_free_studies_and_averaged_over_positive_ones(tmp_path):
    shape = (8, 8, 8)
    missed = np.zeros(shape, np.uint8)
    missed[1:3, 1:3, 1:3] = 1  # 8 voxels of 8 mm^3: 0.064 ml missed
    write(missed, tmp_path / "gt" / "pos.nii.gz")
    write(np.zeros(shape, np.uint8), tmp_path / "pred" / "pos.nii.gz")
    write(np.zeros(shape, np.uint8), tmp_path / "gt" / "neg.nii.gz")
    write(np.zeros(shape, np.uint8), tmp_path / "pred" / "neg.nii.gz")
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", progress=False)
    fn = summary["metrics"]["fn_volume_ml"]
    assert fn["mean"] == pytest.approx(0.064)  # before: 0.032, the lesion-free study's 0 counted
    assert fn["cases"] == "lesion-positive" and fn["n"] == 1
    rows = (tmp_path / "out" / "per_case.csv").read_text().splitlines()
    neg = [r for r in rows if r.startswith("neg,")][0]
    header = rows[0].split(",")
    assert neg.split(",")[header.index("fn_volume_ml")] == "nan"
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not math.isnan(on_disk["metrics"]["fn_volume_ml"]["mean"])
