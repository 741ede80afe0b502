"""End to end on a tiny synthetic cohort: train, kill, resume, predict, evaluate; and DDP with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from h2aseg.cli import main as cli_main
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic import generate_cohort
from h2aseg.training.checkpoint import load_checkpoint

TINY_COHORT = {"pet_shape": (32, 32, 48), "pet_spacing": (8.0, 8.0, 8.0), "ct_spacing": (4.0, 4.0, 4.0)}
TINY_TRAIN = [
    "--model",
    "h2aseg",
    "--channels",
    "2",
    "4",
    "4",
    "8",
    "8",
    "--model-options",
    '{"window_size": [4, 4, 4], "dropout": 0.1}',
    "--patch",
    "32",
    "32",
    "32",
    "--batch",
    "2",
    "--steps-per-epoch",
    "2",
    "--lr",
    "1e-3",
    "--no-progress",
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort("autopet", root, 8, seed=3, lesion_free_fraction=0.25, **TINY_COHORT)
    return root


def train(cohort: Path, out: Path, cache: Path, *extra: str) -> int:
    return cli_main(
        ["train", "--data", str(cohort), "--out", str(out), "--cache", str(cache), *TINY_TRAIN, *extra]
    )


def test_resumed_run_equals_uninterrupted_run(cohort, tmp_path):
    cache = tmp_path / "cache"
    assert train(cohort, tmp_path / "straight", cache, "--epochs", "2") == 0
    assert train(cohort, tmp_path / "resumed", cache, "--epochs", "1") == 0
    assert (
        cli_main(["train", "--out", str(tmp_path / "resumed"), "--resume", "--epochs", "2", "--no-progress"])
        == 0
    )
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert straight["epoch"] == resumed["epoch"] == 2 and straight["step"] == resumed["step"] == 4
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0, msg=name)
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    # the summary's total counts both processes' training; "seconds" only the resuming one's
    summary = json.loads((tmp_path / "resumed" / "train_summary.json").read_text())
    assert summary["total_seconds"] == round(resumed["train_seconds"], 1) >= summary["seconds"] > 0


def test_compiled_training_equals_eager_and_saves_plain_checkpoints(cohort, tmp_path):
    # The "eager" backend runs the Dynamo-captured graphs with PyTorch's own kernels: same maths, so the
    # compiled run must reproduce the plain run; inductor only changes the kernels (benchmarks/speed.py).
    from torch._dynamo.utils import counters

    cache = tmp_path / "cache"
    assert train(cohort, tmp_path / "plain", cache, "--epochs", "1") == 0
    counters.clear()
    assert train(cohort, tmp_path / "compiled", cache, "--epochs", "1", "--compile", "eager") == 0
    assert counters["stats"]["unique_graphs"] >= 1  # Dynamo captured the network, it did not just run eagerly
    plain = load_checkpoint(tmp_path / "plain" / "last.pt")["model"]
    compiled = load_checkpoint(tmp_path / "compiled" / "last.pt")["model"]
    assert list(compiled) == list(plain)  # no "_orig_mod." prefixes: loads into the plain network
    for name, tensor in plain.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_existing_run_is_not_overwritten_without_resume(cohort, tmp_path):
    cache = tmp_path / "cache"
    assert train(cohort, tmp_path / "run", cache, "--epochs", "1") == 0
    before = (tmp_path / "run" / "last.pt").read_bytes()
    assert train(cohort, tmp_path / "run", cache, "--epochs", "1") == 2
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_rotation_probability_outside_0_1_is_refused_before_training(cohort, tmp_path, capsys):
    assert train(cohort, tmp_path / "run", tmp_path / "cache", "--epochs", "1", "--rotate-prob", "1.5") == 2
    assert (
        "train.rotate_prob: must be >= 0 and <= 1" in capsys.readouterr().err
    )  # checked where the config is built
    assert not (tmp_path / "run" / "last.pt").exists()


def test_killed_training_resumes_from_its_last_checkpoint(cohort, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "h2aseg",
        "train",
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--cache",
        str(cache),
        *TINY_TRAIN,
        "--epochs",
        "50",
        "--val-every",
        "100",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = out / "metrics.csv"
            if metrics.exists() and len(metrics.read_text().strip().splitlines()) >= 3:  # header + 2 epochs
                break
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    saved = load_checkpoint(out / "last.pt")["epoch"]
    assert 2 <= saved < 50
    assert (
        cli_main(["train", "--out", str(out), "--resume", "--epochs", str(saved + 1), "--no-progress"]) == 0
    )
    final = load_checkpoint(out / "last.pt")
    assert final["epoch"] == saved + 1 and final["step"] == 2 * (saved + 1)


def test_predict_writes_labels_on_the_input_pet_grid_and_evaluate_scores_them(cohort, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(cohort, run, tmp_path / "cache", "--epochs", "1") == 0
    splits = json.loads((run / "splits.json").read_text())
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--input",
                str(cohort),
                "--out",
                str(tmp_path / "pred"),
                "--cases",
                *splits["test"],
                "--mirror",
                "--save-probabilities",
                "--no-progress",
            ]
        )
        == 0
    )
    cases = {c.case_id: c for c in discover_cases(cohort, "autopet").cases}
    for case_id in splits["test"]:
        pet = sitk.ReadImage(str(cases[case_id].pet))
        pred = sitk.ReadImage(str(tmp_path / "pred" / f"{case_id}.nii.gz"))
        assert pred.GetSize() == pet.GetSize()
        assert pred.GetSpacing() == pytest.approx(pet.GetSpacing())
        assert pred.GetOrigin() == pytest.approx(pet.GetOrigin())
        assert pred.GetDirection() == pytest.approx(pet.GetDirection())
        assert set(sitk.GetArrayViewFromImage(pred).ravel().tolist()) <= {0, 1}
        prob = sitk.GetArrayFromImage(
            sitk.ReadImage(str(tmp_path / "pred" / "probabilities" / f"{case_id}.nii.gz"))
        )
        assert 0.0 <= prob.min() <= prob.max() <= 1.0
        # the saved probabilities are the ones the labels came from: thresholding them gives the saved label
        # (before the fix a second sigmoid put every value in [0.5, 0.73], so every voxel thresholded to 1)
        assert ((prob > 0.5) == (sitk.GetArrayViewFromImage(pred) > 0)).all()
        assert prob.min() < 0.5
    capsys.readouterr()
    assert (
        cli_main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--gt",
                str(cohort),
                "--layout",
                "autopet",
                "--cases",
                *splits["test"],
                "--out",
                str(tmp_path / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_cases"] == len(splits["test"])


def test_a_run_whose_validation_never_rises_above_zero_is_predicted_with_last_pt(cohort, tmp_path, caplog):
    run = tmp_path / "run"
    # lr 0: the heads stay at their 1 % foreground prior, so nothing is predicted and validation Dice is 0
    assert train(cohort, run, tmp_path / "cache", "--epochs", "2", "--lr", "0") == 0
    rows = (run / "metrics.csv").read_text().strip().splitlines()[1:]
    assert [float(r.split(",")[3]) for r in rows] == [0.0, 0.0]
    assert not (run / "best.pt").exists()  # before: best.pt was epoch 1, the first validated epoch
    from h2aseg.inference.predictor import resolve_checkpoint

    with caplog.at_level("WARNING"):
        assert resolve_checkpoint(run) == run / "last.pt"
    assert "using last.pt" in caplog.text


def test_predict_reports_a_bad_case_and_goes_on(cohort, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(cohort, run, tmp_path / "cache", "--epochs", "1") == 0
    good = discover_cases(cohort, "autopet").cases[0]
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--ct",
                str(good.ct),
                "--pet",
                str(tmp_path / "missing.nii.gz"),
                "--out",
                str(tmp_path / "pred"),
                "--no-progress",
            ]
        )
        == 1
    )
    assert "missing.nii.gz" in capsys.readouterr().err


def _launcher_failure(stderr: str) -> str:
    """What a failed torch.distributed.run left on stderr: every line that names an error, an abort or a
    traceback's last frame (a rank's own error sits far above the launcher's summary), then the tail."""
    keys = ("error", "terminate", "abort", "exception", "what():", "gloo")
    lines = [line for line in stderr.splitlines() if any(k in line.lower() for k in keys)]
    return "\n".join(lines[:40]) + "\n...\n" + stderr[-1500:]


def test_two_process_ddp_training_keeps_ranks_identical(cohort, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "h2aseg",
        "train",
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        *TINY_TRAIN,
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, _launcher_failure(result.stderr)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    digests = summary["parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_two_process_ddp_training_stops_together_when_the_time_budget_ends(cohort, tmp_path):
    out = tmp_path / "ddp_budget"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "h2aseg",
        "train",
        "--data",
        str(cohort),
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        *TINY_TRAIN,
        "--epochs",
        "5",
        "--max-minutes",
        "0.0001",
        "--device",
        "cpu",
    ]
    # rank 0's clock ends the run after its first step; a rank that went on alone would hang in its next
    # all-reduce
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, _launcher_failure(result.stderr)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["stopped_by"] == "time budget"
    digests = summary["parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
