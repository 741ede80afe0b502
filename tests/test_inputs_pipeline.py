"""Issue 11 end to end: HECKTOR synth -> train -> predict -> evaluate on the CT grid;
a broken batch goes on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk

from h2aseg.cli import main as cli_main
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic import generate_cohort

TINY_TRAIN = [
    "--model",
    "h2aseg",
    "--channels",
    "2",
    "2",
    "2",
    "2",
    "2",
    "--model-options",
    '{"window_size": [2, 2, 2]}',
    "--patch",
    "32",
    "32",
    "32",
    "--batch",
    "1",
    "--samples-per-volume",
    "1",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "1",
    "--val-every",
    "0",
    "--no-progress",
]


@pytest.fixture(scope="module")
def hecktor_run(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hecktor")
    cohort, run = root / "cohort", root / "run"
    assert (
        cli_main(
            [
                "synth",
                "--kind",
                "hecktor",
                "--cases",
                "5",
                "--out",
                str(cohort),
                "--seed",
                "2",
                "--pet-shape",
                "32,32,32",
                "--pet-spacing",
                "6",
                "--ct-shape",
                "48,48,40",
                "--ct-spacing",
                "4",
            ]
        )
        == 0
    )
    assert cli_main(["train", "--data", str(cohort), "--out", str(run), *TINY_TRAIN]) == 0
    return cohort, run


def test_hecktor_synth_train_predict_evaluate_scores_on_the_ct_grid(hecktor_run, tmp_path, capsys):
    cohort, run = hecktor_run
    test_ids = json.loads((run / "splits.json").read_text())["test"]
    capsys.readouterr()
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--input",
                str(cohort),
                "--cases",
                *test_ids,
                "--out",
                str(tmp_path / "pred"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "CT grid" in capsys.readouterr().out
    cases = {c.case_id: c for c in discover_cases(cohort).cases}
    for case_id in test_ids:
        pred = sitk.ReadImage(str(tmp_path / "pred" / f"{case_id}.nii.gz"))
        label = sitk.ReadImage(str(cases[case_id].label))
        assert pred.GetSize() == label.GetSize() == (48, 48, 40)  # before: the PET grid (32, 32, 32)
        assert pred.GetOrigin() == pytest.approx(label.GetOrigin())
    # as the README shows it: evaluate the predictions against the dataset's labels
    assert (
        cli_main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(cohort),
                "--layout",
                "hecktor",
                "--cases",
                *test_ids,
                "--out",
                str(tmp_path / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_cases"] == len(test_ids) and summary["resampled"] == [] and summary["problems"] == []
    # --grid pet writes on the PET grid, and evaluate resamples it onto the label's CT grid, saying so
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--input",
                str(cohort),
                "--cases",
                *test_ids,
                "--grid",
                "pet",
                "--out",
                str(tmp_path / "pet"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert sitk.ReadImage(str(tmp_path / "pet" / f"{test_ids[0]}.nii.gz")).GetSize() == (32, 32, 32)
    assert (
        cli_main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pet"),
                "--gt",
                str(cohort),
                "--layout",
                "hecktor",
                "--cases",
                *test_ids,
                "--out",
                str(tmp_path / "eval_pet"),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "eval_pet" / "summary.json").read_text())
    assert summary["n_cases"] == len(test_ids) and len(summary["resampled"]) == len(test_ids)


def test_broken_studies_are_named_the_good_one_is_predicted_and_the_exit_status_says_skipped(
    hecktor_run, tmp_path, capsys
):
    _, run = hecktor_run
    data = tmp_path / "autopet"
    generate_cohort(
        "autopet",
        data,
        3,
        seed=4,
        pet_shape=(24, 24, 32),
        pet_spacing=(8.0, 8.0, 8.0),
        ct_spacing=(8.0, 8.0, 8.0),
        multi_study_fraction=0.0,
    )
    good, missing, truncated = discover_cases(data, "autopet").cases
    (missing.pet).unlink()  # PET.nii.gz (Bq/ml) stays beside it
    suv = Path(truncated.pet).read_bytes()
    Path(truncated.pet).write_bytes(suv[: len(suv) // 2])
    capsys.readouterr()
    code = cli_main(
        [
            "predict",
            "--model",
            str(run),
            "--input",
            str(data),
            "--out",
            str(tmp_path / "pred"),
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1  # before: an uncaught EOFError stopped the batch (traceback, status 1 from Python)
    assert "Traceback" not in err
    assert "2 case(s) skipped" in err and "2 case(s) skipped" in out
    assert f"case {missing.case_id}" in err and "SUV" in err  # before: never mentioned
    assert f"case {truncated.case_id}" in err and "unreadable image file" in err
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.nii.gz")) == [f"{good.case_id}.nii.gz"]


def test_train_lists_the_studies_discovery_left_out_and_exits_1(hecktor_run, tmp_path, capsys):
    cohort, _ = hecktor_run
    data = tmp_path / "cohort"
    shutil.copytree(cohort, data)
    dropped = sorted((data / "imagesTr").glob("*__PT.nii.gz"))[0]
    dropped.unlink()
    capsys.readouterr()
    code = cli_main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY_TRAIN])
    out, err = capsys.readouterr()
    assert code == 1  # before: 0, the left-out study only in the log above the progress
    case_id = dropped.name.split("__")[0]
    assert f"1 case(s) skipped:\n  case {case_id}: {dropped}: PET missing" in err
    assert json.loads(out.strip().splitlines()[-1])["skipped_cases"] == 1


def test_grid_defaults_to_ct_for_hecktor_and_dicom_outputs_keep_the_pet_grid(hecktor_run):
    import argparse

    from h2aseg.errors import ConfigError
    from h2aseg.inference.grid import choose_grid

    cohort, _ = hecktor_run

    def args(**kw):
        base = {"grid": None, "layout": "auto", "input": str(cohort), "ct": None, "pet": None, "format": None}
        return argparse.Namespace(**{**base, **kw})

    assert choose_grid(args())[0] == "ct"
    assert choose_grid(args(layout="autopet"))[0] == "pet"
    assert choose_grid(args(input=None, ct="ct.nii.gz", pet="pet.nii.gz"))[0] == "pet"
    grid, note = choose_grid(args(format=["dicom-seg"]))
    assert grid == "pet" and "PET series" in note
    with pytest.raises(ConfigError, match="--grid ct cannot be used"):
        choose_grid(args(grid="ct", format=["rtstruct"]))
