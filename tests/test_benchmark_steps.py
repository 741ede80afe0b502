"""Benchmarks at equal optimizer steps (issue 15): the ``steps`` section, the paired bootstrap, and the
tables' H2ASeg − row column that marks differences outside their interval."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from h2aseg.benchmarking.config import load_benchmark_config, parse_benchmark_config
from h2aseg.benchmarking.tables import write_tables
from h2aseg.cli import main as cli_main
from h2aseg.errors import ConfigError
from h2aseg.evaluation.report import summarise, write_csv, write_json
from h2aseg.evaluation.statistics import mean_std, over_seeds, paired_bootstrap

REPO = Path(__file__).resolve().parents[1]

STEPS_BENCHMARK = {
    "title": "Tiny benchmark at equal steps",
    "dataset": {
        "name": "tiny AutoPET-like",
        "layout": "autopet",
        "synthetic": {
            "kind": "autopet",
            "cases": 10,
            "seed": 3,
            "options": {
                "pet_shape": [32, 32, 48],
                "pet_spacing": [8.0, 8.0, 8.0],
                "ct_spacing": [4.0, 4.0, 4.0],
                "lesion_free_fraction": 0.25,
            },
        },
    },
    "seeds": [0, 1],
    "steps": {"total": 4, "per_epoch": 2, "validate_every": 2},
    "train": {"batch": 2, "patch": [16, 16, 16], "lr": 1e-3, "device": "cpu", "sw_overlap": 0.0},
    "predict": {"overlap": 0.0},
    "models": [
        {"name": "unet3d", "options": {"channels": [4, 8]}},
        # a protocol with its own epochs (release: 200) and a row with its own patch: the steps still rule
        {
            "name": "resunet3d",
            "protocol": "release",
            "options": {"channels": [2, 4]},
            "train": {"patch": [16, 16, 32], "batch": 2},
        },
    ],
}


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_run_of_a_steps_benchmark_takes_the_same_optimizer_steps(tmp_path, one_thread, caplog):
    config_path = tmp_path / "steps.yaml"
    config_path.write_text(yaml.safe_dump(STEPS_BENCHMARK, sort_keys=False))
    out = tmp_path / "out"
    # one seed of every row first (resumable), then the rest
    assert cli_main(["benchmark", "--config", str(config_path), "--out", str(out), "--seeds", "0"]) == 0
    assert not (out / "runs" / "unet3d" / "seed1").exists()
    assert {r["seed"]: r["status"] for r in _csv(out / "tables" / "runs.csv")} == {
        "0": "done",
        "1": "missing",
    }
    assert cli_main(["benchmark", "--config", str(config_path), "--out", str(out), "--seeds", "5"]) != 0
    assert "--seeds 5: not in" in caplog.text
    assert cli_main(["benchmark", "--config", str(config_path), "--out", str(out)]) == 0
    for model in ("unet3d", "resunet3d"):
        for seed in (0, 1):
            run = out / "runs" / model / f"seed{seed}"
            metrics = _csv(run / "metrics.csv")
            assert [int(r["step"]) for r in metrics] == [2, 4]  # 2 epochs of 2 steps, not the protocol's 200
            assert all(r["val_dice"] != "" for r in metrics)  # validated every 2 steps: the learning curve
            assert json.loads((run / "train_summary.json").read_text())["stopped_by"] == "epochs"
            assert json.loads((run / "benchmark.json").read_text())["steps"] == 4
    runs = _csv(out / "tables" / "runs.csv")
    assert {r["steps"] for r in runs} == {"4"} and len(runs) == 4
    assert all(int(r["params"]) > 0 for r in runs)
    table1 = {r["run_id"]: r for r in _csv(out / "tables" / "table1.csv")}
    assert table1["unet3d"]["steps"] == "4 4" and table1["resunet3d"]["steps"] == "4 4"
    curves = _csv(out / "tables" / "curves.csv")
    assert sorted({(r["run_id"], r["seed"], r["step"]) for r in curves}) == sorted(
        (m, str(s), str(k)) for m in ("unet3d", "resunet3d") for s in (0, 1) for k in (2, 4)
    )
    assert (out / "tables" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_steps_section_decides_epochs_alone_and_refuses_clashes():
    config = parse_benchmark_config(STEPS_BENCHMARK, "s.yaml")
    for spec in config.models:
        train = config.run_config(spec, 0, Path("d"), Path("c")).train
        assert (train.epochs, train.steps_per_epoch, train.val_every, train.max_minutes) == (2, 2, 1, None)
    with pytest.raises(ConfigError, match=r"s.yaml: models\[0\] \(unet3d\).train sets epochs"):
        models = [{"name": "unet3d", "train": {"epochs": 3}}]
        parse_benchmark_config({**STEPS_BENCHMARK, "models": models}, "s.yaml")
    with pytest.raises(ConfigError, match="s.yaml: train sets max_minutes"):
        parse_benchmark_config({**STEPS_BENCHMARK, "train": {"max_minutes": 2}}, "s.yaml")
    with pytest.raises(ConfigError, match=r"multiples of per_epoch \(2\)"):
        parse_benchmark_config({**STEPS_BENCHMARK, "steps": {"total": 5, "per_epoch": 2}}, "s.yaml")
    with pytest.raises(ConfigError, match="unknown key"):
        parse_benchmark_config({**STEPS_BENCHMARK, "steps": {"total": 4, "every": 2}}, "s.yaml")


def test_the_shipped_steps_benchmark_gives_every_row_the_cpu_protocol_and_equal_steps():
    from h2aseg.benchmarking.comparison import count_parameters

    config = load_benchmark_config(REPO / "benchmarks" / "cpu_steps.yaml")
    assert config.seeds == [0, 1, 2] and config.steps is not None
    names = {spec.name for spec in config.models}
    assert {
        "unet3d",
        "vnet",
        "resunet3d",
        "unetr",
        "swinunetr",
        "nnunet",
        "nestedformer",
        "a2fseg",
        "sdb",
        "h2aseg",
        "resunet3d_pet",
        "resunet3d_ct",
        "dual_resunet3d",
        "h2aseg_no_mcsa",
        "h2aseg_no_tamw",
    } == names
    assert config.threshold_methods == ["suv2.5", "suv41"]
    steps = set()
    for spec in config.models:
        train = config.run_config(spec, 0, Path("d"), Path("c")).train
        assert train.protocol == "cpu" and train.max_minutes is None and train.lr_schedule == "poly"
        assert train.batch == 2
        assert train.patch == ([64, 32, 32] if spec.name == "swinunetr" else [32, 32, 32])
        steps.add(train.epochs * train.steps_per_epoch)
        assert count_parameters(config, spec) > 0  # every row builds
        # the committed tables were run without MCSA gates; the rows keep that recipe
        options = config.run_config(spec, 0, Path("d"), Path("c")).model.options
        assert options.get("mcsa_gate_init") is None
    assert steps == {config.steps.total}


def test_bootstrap_interval_excludes_zero_for_a_planted_difference_and_includes_it_for_identical_runs():
    rng = np.random.default_rng(7)
    base = rng.uniform(0.1, 0.8, size=25)
    better = base + 0.08 + rng.normal(0.0, 0.03, size=25)
    planted = paired_bootstrap(better, base, n_resamples=4000, seed=0)
    assert planted.excludes_zero and 0.0 < planted.low < planted.mean_difference < planted.high
    assert planted.mean_difference == pytest.approx(np.mean(better - base))
    same = paired_bootstrap(base, base.copy(), n_resamples=4000, seed=0)
    assert not same.excludes_zero and same.low <= 0.0 <= same.high
    # two runs that differ study by study but not on average: the interval straddles 0
    noise = rng.normal(0.0, 0.05, size=25)
    noisy = paired_bootstrap(base + noise - noise.mean(), base, n_resamples=4000, seed=0)
    assert noisy.low < 0.0 < noisy.high and not noisy.excludes_zero
    assert paired_bootstrap(better, base, n_resamples=4000, seed=0) == planted  # seeded
    with pytest.raises(ValueError, match="one value per study"):
        paired_bootstrap(base, base[:3])


def test_mean_std_over_studies_and_over_seeds():
    assert mean_std([0.2, 0.4, float("nan")]) == pytest.approx((0.3, 0.1))
    mean, spread = over_seeds([[0.2, 0.4], [0.5, 0.7]])  # per-seed means 0.3 and 0.6
    assert (mean, spread) == pytest.approx((0.45, 0.15))
    assert np.isnan(over_seeds([[0.2, 0.4]])[1])


def _fake_run(folder: Path, dice: dict[str, float], steps: int | None) -> None:
    rows = [
        {
            "case_id": case,
            "dice": value,
            "hd95": 5.0,
            "precision": value,
            "recall": value,
            "gt_voxels": 0 if case.startswith("free") else 50,
        }
        for case, value in dice.items()
    ]
    write_csv(rows, folder / "eval" / "per_case.csv")
    write_json(summarise(rows), folder / "eval" / "summary.json")
    (folder / "benchmark.json").write_text(json.dumps({} if steps is None else {"steps": steps}))


def test_tables_mark_differences_whose_interval_excludes_zero(tmp_path):
    tiny = {"channels": [4, 8]}
    config = parse_benchmark_config(
        {
            "title": "planted",
            "dataset": {"root": "data", "layout": "autopet"},
            "seeds": [0, 1],
            "models": [
                {"name": "h2aseg", "options": {"channels": [2, 4, 4, 8, 8], "window_size": [4, 4, 4]}},
                {"name": "unet3d", "options": tiny},
                {"name": "resunet3d", "options": {"channels": [2, 4]}},
                {"name": "dual_resunet3d", "options": {"channels": [2, 4, 4, 8, 8]}},
            ],
            "threshold_methods": ["suv2.5"],
        },
        "planted.yaml",
    )
    rng = np.random.default_rng(1)
    cases = [f"case{i:02d}" for i in range(24)] + ["free1", "free2"]
    for seed in (0, 1):
        h2aseg = {c: float(v) for c, v in zip(cases, rng.uniform(0.4, 0.9, size=len(cases)))}
        _fake_run(tmp_path / "runs" / "h2aseg" / f"seed{seed}", h2aseg, 10)
        worse = {c: max(0.0, v - 0.2 + float(rng.normal(0, 0.02))) for c, v in h2aseg.items()}
        _fake_run(tmp_path / "runs" / "unet3d" / f"seed{seed}", worse, 10)
        _fake_run(tmp_path / "runs" / "dual_resunet3d" / f"seed{seed}", dict(h2aseg), 10)  # identical
    _fake_run(tmp_path / "runs" / "resunet3d" / "seed0", {c: 0.5 for c in cases}, 12)  # one seed only
    _fake_run(tmp_path / "runs" / "suv2.5", {c: 0.05 for c in cases}, None)
    write_tables(config, tmp_path)

    table1 = {r["run_id"]: r for r in _csv(tmp_path / "tables" / "table1.csv")}
    assert table1["unet3d"]["dice_diff_excludes_0"] == "True" and float(table1["unet3d"]["dice_diff_low"]) > 0
    assert int(table1["unet3d"]["dice_diff_studies"]) == 24  # lesion-positive studies only (AutoPET rule)
    assert table1["unet3d"]["dice_diff_seeds"] == "0 1" and table1["resunet3d"]["dice_diff_seeds"] == "0"
    assert table1["suv2.5"]["dice_diff_excludes_0"] == "True"
    assert table1["h2aseg"]["dice_diff_vs_h2aseg_pts"] == ""  # the reference row
    table2 = {r["run_id"]: r for r in _csv(tmp_path / "tables" / "table2.csv")}
    assert table2["dual_resunet3d"]["dice_diff_excludes_0"] == "False"
    assert float(table2["dual_resunet3d"]["dice_diff_vs_h2aseg_pts"]) == 0.0
    md1 = (tmp_path / "tables" / "table1.md").read_text()
    unet_line = next(line for line in md1.splitlines() if line.startswith("| UNet-3D"))
    assert "†" in unet_line and "| 10 |" in unet_line
    assert "did not all take the same number of steps (10, 12)" in md1  # ResUNet-3D's run took 12
    resunet_line = next(line for line in md1.splitlines() if line.startswith("| ResUNet-3D"))
    assert "(1 seed)" in resunet_line
    dual_line = next(
        line
        for line in (tmp_path / "tables" / "table2.md").read_text().splitlines()
        if line.startswith("|  |  |")
    )
    assert "+0.00 [+0.00, +0.00]" in dual_line and "†" not in dual_line
    assert "excludes 0" in md1 and "Params" in md1
    assert "same number of steps" not in (tmp_path / "tables" / "table2.md").read_text()


def test_a_difference_on_too_few_studies_is_never_marked():
    from h2aseg.benchmarking.comparison import Comparison, format_difference

    one = Comparison(paired_bootstrap([0.6], [0.2], n_resamples=100).scaled(100.0), (0,))
    assert one.result.excludes_zero and not one.significant  # a zero-width interval from one study
    assert format_difference(one) == "+40.00 [+40.00, +40.00] (n = 1: too few to mark)"


def test_a_run_held_by_a_live_process_is_not_trained_twice(tmp_path):
    import os
    import subprocess
    import sys

    from h2aseg.benchmarking.runner import RUN_LOCK, _run_lock

    with _run_lock(tmp_path) as holder:
        assert holder is None  # free: this call takes it
        assert (tmp_path / RUN_LOCK).read_text() == str(os.getpid())
        with _run_lock(tmp_path) as second:  # another holder (own open file) finds it taken, and by whom
            assert second == os.getpid()
    assert (tmp_path / RUN_LOCK).read_text() == ""  # released
    # a process killed while holding it leaves the file, but not the lock
    code = (
        "import fcntl, os, sys; h = open(sys.argv[1], 'a+'); fcntl.flock(h, fcntl.LOCK_EX); "
        "h.write(str(os.getpid())); h.flush(); os._exit(9)"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path / RUN_LOCK)])
    assert killed.returncode == 9 and (tmp_path / RUN_LOCK).read_text().strip().isdigit()
    with _run_lock(tmp_path) as holder:
        assert holder is None
