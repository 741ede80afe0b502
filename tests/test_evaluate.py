"""``evaluate_folders`` and the ``evaluate`` verb on tiny NIfTI/MHA folders."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from h2aseg.errors import DataError
from h2aseg.evaluation import cli as evaluate_cli
from h2aseg.evaluation.evaluate import evaluate_arrays, evaluate_folders

SPACING = (2.0, 2.0, 3.0)
SHAPE = (8, 8, 6)


def write(array: np.ndarray, path: Path, spacing=SPACING) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture()
def folders(tmp_path):
    """Labels: pos (8-voxel lesion), neg (lesion-free), nopred, badshape. Predictions for pos, neg, badshape,
    extra."""
    gt, pred = tmp_path / "labels", tmp_path / "pred"
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[2:4, 2:4, 1:3] = 1  # 8 voxels
    guess = np.zeros(SHAPE, np.uint8)
    guess[2:4, 2:4, 2:4] = 1  # 8 voxels, 4 overlap -> Dice 0.5
    write(lesion, gt / "pos.nii.gz")
    write(guess, pred / "pos.nii.gz")
    write(np.zeros(SHAPE, np.uint8), gt / "neg.mha")
    stray = np.zeros(SHAPE, np.uint8)
    stray[6, 6, 4] = 1  # one false-positive voxel in a lesion-free study: 12 mm³
    write(stray, pred / "neg.mha")
    write(lesion, gt / "nopred.nii.gz")
    write(lesion, gt / "badshape.nii.gz")
    write(np.zeros((4, 4, 4), np.uint8), pred / "badshape.nii.gz")
    write(guess, pred / "extra.nii.gz")
    write(np.full(SHAPE, 0.3, np.float32), pred / "probabilities" / "pos.nii.gz")
    return pred, gt, tmp_path / "out"


def test_evaluate_folders_writes_reports_and_lists_unusable_cases(folders, caplog):
    pred, gt, out = folders
    summary = evaluate_folders(pred, gt, out, progress=False)
    assert summary["settings"]["case_ids"] is None  # no split given (was the list of every label)

    with open(out / "per_case.csv", newline="") as handle:
        rows = {r["case_id"]: r for r in csv.DictReader(handle)}
    assert sorted(rows) == ["neg", "pos"]
    assert float(rows["pos"]["dice"]) == pytest.approx(0.5)
    assert float(rows["pos"]["hd95"]) == pytest.approx(3.0)  # the lesion shifted by one 3 mm slice
    assert float(rows["neg"]["fp_volume_ml"]) == pytest.approx(0.012)
    assert float(rows["neg"]["dice"]) == 0.0

    # AutoPET rule: Dice over the lesion-positive case only; precision over both.
    assert summary["positive_only"] == ["dice", "hd95", "fn_volume_ml"]
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["metrics"]["precision"]["mean"] == pytest.approx(0.25)
    problems = summary["problems"]
    assert len(problems) == 3
    assert any(p.startswith("nopred:") and "nopred.nii.gz" in p for p in problems)
    assert any(p.startswith("badshape:") and "(4, 4, 4)" in p for p in problems)
    assert any(p.startswith("extra:") and "no label" in p for p in problems)
    assert "badshape" in caplog.text  # each left-out case is logged as a warning

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["metrics"]["dice"]["n"] == 1
    assert on_disk["metrics"]["hd95"]["n_undefined"] == 0
    text = (out / "summary.md").read_text()
    assert "| Dice (%) | 50.00 ± 0.00 |" in text
    assert "nopred" in text


def test_probability_maps_are_refused_as_predictions(tmp_path):
    gt = write(np.ones(SHAPE, np.uint8), tmp_path / "gt" / "a.nii.gz").parent
    write(np.full(SHAPE, 0.7, np.float32), tmp_path / "pred" / "a.nii.gz")
    with pytest.raises(DataError, match="non-integer"):
        evaluate_folders(tmp_path / "pred", gt, tmp_path / "out", progress=False)


def test_unusable_folders_raise_data_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="no label files"):
        evaluate_folders(tmp_path / "empty", tmp_path / "empty", tmp_path / "out", progress=False)


def test_layout_labels_come_from_discover_cases(tmp_path, monkeypatch):
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[1:3, 1:3, 1:3] = 2
    label = write(lesion, tmp_path / "root" / "labelsTr" / "CHUM-001.nii.gz")
    write(lesion, tmp_path / "pred" / "CHUM-001.nii.gz")
    seen = {}

    def discover_cases(root, layout):
        seen["args"] = (Path(root), layout)
        case = types.SimpleNamespace(case_id="CHUM-001", label=label)
        unlabelled = types.SimpleNamespace(case_id="CHUM-002", label=None)
        return types.SimpleNamespace(cases=[case, unlabelled], problems=[])

    monkeypatch.setitem(
        sys.modules, "h2aseg.data.layouts", types.SimpleNamespace(discover_cases=discover_cases)
    )
    summary = evaluate_folders(
        tmp_path / "pred",
        tmp_path / "root",
        tmp_path / "out",
        layout="hecktor",
        labels=(1, 2),
        progress=False,
    )
    assert seen["args"] == (tmp_path / "root", "hecktor")
    assert summary["metrics"]["dice"]["mean"] == 1.0
    assert math.isnan(summary["aggregated_dice"]["1"])  # class 1 appears in no case
    assert summary["aggregated_dice"]["2"] == 1.0
    assert any(p.startswith("CHUM-002:") for p in summary["problems"])


def test_evaluate_arrays_keeps_case_ids_in_order():
    a = np.zeros(SHAPE, np.uint8)
    a[0, 0, 0] = 1
    rows = evaluate_arrays([("x", a, a, SPACING), ("y", np.zeros_like(a), a, SPACING)])
    assert [(r["case_id"], r["dice"]) for r in rows] == [("x", 1.0), ("y", 0.0)]


def _parse(argv):
    parser = argparse.ArgumentParser(prog="h2aseg")
    evaluate_cli.add_parser(parser.add_subparsers(dest="verb"))
    return parser.parse_args(argv)


def test_evaluate_verb_prints_summary_and_strict_fails_on_problems(folders, capsys):
    pred, gt, out = folders
    args = _parse(["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--no-progress"])
    assert args.func(args) == 1  # cases were left out (issue 11: the exit status says so; before: 0)
    assert "AutoPET rule" in capsys.readouterr().out
    strict = _parse(
        ["evaluate", "--pred", str(pred), "--gt", str(gt), "--out", str(out), "--strict", "--no-progress"]
    )
    with pytest.raises(DataError, match="3 cases were not evaluated"):
        strict.func(strict)


def test_case_ids_restrict_evaluation_to_a_split_without_missing_prediction_noise(folders, caplog):
    pred, gt, out = folders
    summary = evaluate_folders(pred, gt, out, progress=False, case_ids=["pos", "neg", "unknown"])
    assert summary["n_cases"] == 2
    assert summary["problems"] == [
        f"unknown: listed for evaluation but has no label under {gt}; not evaluated"
    ]
    assert summary["settings"]["case_ids"] == ["pos", "neg"]
    args = _parse(
        [
            "evaluate",
            "--pred",
            str(pred),
            "--gt",
            str(gt),
            "--out",
            str(out),
            "--cases",
            "pos",
            "--strict",
            "--no-progress",
        ]
    )
    assert args.func(args) == 0
    assert json.loads((out / "summary.json").read_text())["n_cases"] == 1
    assert "unknown: listed" in caplog.text and "nopred" not in caplog.text  # problems are logged
