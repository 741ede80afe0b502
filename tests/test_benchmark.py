"""``h2aseg benchmark`` end to end on a tiny synthetic cohort; config checks; the Table 3 statistic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from h2aseg.benchmarking.config import load_benchmark_config, parse_benchmark_config
from h2aseg.benchmarking.tamw_analysis import shares_from_weights
from h2aseg.cli import main as cli_main
from h2aseg.errors import ConfigError

TINY_BENCHMARK = {
    "title": "Tiny benchmark",
    "dataset": {
        "name": "tiny AutoPET-like",
        "layout": "autopet",
        "splits_seed": 0,
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
    "seeds": [0],
    "train": {
        "epochs": 1,
        "steps_per_epoch": 2,
        "batch": 2,
        "patch": [16, 16, 16],
        "lr": 1e-3,
        "device": "cpu",
    },
    "models": [
        {"name": "unet3d", "options": {"channels": [4, 8]}},
        {
            "name": "h2aseg",
            "options": {"channels": [2, 4, 4, 8, 8], "window_size": [4, 4, 4]},
            "train": {"patch": [32, 32, 32]},
        },  # 16³ would leave a 1³ bottleneck that instance norm refuses
        {"name": "unet3d", "id": "broken", "options": {"channels": [4]}},
    ],
    "threshold_methods": ["suv2.5"],
}


def _write(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_benchmark_writes_three_tables_and_a_rerun_does_not_retrain(tmp_path, capsys):
    config = _write(TINY_BENCHMARK, tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    assert cli_main(["benchmark", "--config", str(config), "--out", str(out)]) == 1  # the broken run failed
    log = (out / "benchmark.log").read_text()
    assert "broken seed 0: failed" in log and (out / "runs" / "broken" / "seed0" / "error.log").exists()
    for run in ("unet3d/seed0", "h2aseg/seed0"):
        run_dir = out / "runs" / run
        assert (run_dir / "config.yaml").exists() and (run_dir / "train.log").read_text()
        assert json.loads((run_dir / "splits.json").read_text()) == json.loads(
            (out / "splits.json").read_text()
        )
    test_ids = json.loads((out / "splits.json").read_text())["test"]
    summary = json.loads((out / "runs" / "h2aseg" / "seed0" / "eval" / "summary.json").read_text())
    assert summary["n_cases"] == len(test_ids) and not summary["problems"]

    table1 = {r["run_id"]: r for r in _csv(out / "tables" / "table1.csv")}
    assert set(table1) == {"unet3d", "h2aseg", "broken", "suv2.5"}
    assert table1["broken"]["seeds_done"] == "0" and table1["suv2.5"]["group"] == "reference"
    assert 0.0 <= float(table1["h2aseg"]["dice_pct_mean"] or 0.0) <= 100.0
    md = (out / "tables" / "table1.md").read_text()
    assert "averaged over the 1 seed(s)" in md and "*SUV ≥ 2.5 (no training)*" in md
    assert "| ✓ | ✓ |" in (out / "tables" / "table2.md").read_text()
    table3 = _csv(out / "tables" / "table3.csv")
    assert [int(r["depth"]) for r in table3] == [1, 2, 3, 4]
    for row in table3:
        for column in ("fore_pet", "fore_ct", "back_pet", "back_ct"):
            assert 0.0 <= float(row[f"{column}_pct_mean"]) <= 100.0
    per_case = _csv(out / "runs" / "h2aseg" / "seed0" / "tamw" / "per_case.csv")
    assert {r["case_id"] for r in per_case} == set(test_ids)

    # Rerun: finished runs are kept; a trained run that lost its predictions is predicted again,
    # not retrained.
    last = out / "runs" / "h2aseg" / "seed0" / "last.pt"
    before = last.stat().st_mtime_ns
    (out / "runs" / "h2aseg" / "seed0" / "benchmark.json").unlink()
    capsys.readouterr()
    assert (
        cli_main(["benchmark", "--config", str(config), "--out", str(out), "--only", "unet3d", "h2aseg"]) == 0
    )
    printed = capsys.readouterr().err  # progress lines go through logging (standard error)
    assert "unet3d seed 0: cached" in printed and "h2aseg seed 0: done" in printed
    assert last.stat().st_mtime_ns == before
    assert (out / "runs" / "h2aseg" / "seed0" / "benchmark.json").exists()
    assert cli_main(["benchmark", "--config", str(config), "--out", str(out), "--tables-only"]) == 0


def test_benchmark_file_errors_name_the_file_and_the_problem(tmp_path):
    bad = _write({**TINY_BENCHMARK, "modles": []}, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown top-level key\(s\): modles"):
        load_benchmark_config(bad)
    with pytest.raises(ConfigError, match="unknown model 'unet4d'"):
        parse_benchmark_config({**TINY_BENCHMARK, "models": [{"name": "unet4d"}]}, "x.yaml")
    with pytest.raises(ConfigError, match="threshold method 'suv3'"):
        parse_benchmark_config({**TINY_BENCHMARK, "threshold_methods": ["suv3"]}, "x.yaml")
    with pytest.raises(ConfigError, match="unet3d appear twice"):
        parse_benchmark_config({**TINY_BENCHMARK, "models": ["unet3d", "unet3d"]}, "x.yaml")
    with pytest.raises(ConfigError, match=r"models\[0\] \(unet3d\).train"):
        parse_benchmark_config(
            {**TINY_BENCHMARK, "models": [{"name": "unet3d", "train": {"epoch": 3}}]}, "x.yaml"
        )


@pytest.mark.parametrize("path", ["benchmarks/cpu.yaml", "benchmarks/paper.yaml"])
def test_shipped_benchmark_files_parse_and_build_every_model(path):
    from h2aseg.inference.predictor import build_network

    config = load_benchmark_config(Path(__file__).resolve().parents[1] / path)
    assert len(config.seeds) == (2 if "cpu" in path else 4)
    for spec in config.models:
        build_network(config.run_config(spec, config.seeds[0], Path("/data"), Path("/cache")))


def test_tamw_share_counts_channels_with_positive_case_weight_per_modality():
    # C^k = 2: channels 0-1 PET, 2-3 CT, 4-5 decoder (ignored). Two patches; the second has no foreground.
    fore = np.array([[0.5, -0.5, 0.2, 0.1, 0.9, 0.9], [-0.9, 0.9, -0.9, -0.9, -0.9, -0.9]])
    back = np.array([[-0.1, -0.1, -0.1, -0.1, 0.0, 0.0], [0.3, -0.3, 0.3, 0.3, 0.0, 0.0]])
    shares = shares_from_weights(fore, back, np.array([0.5, 0.0]), channels=2)
    # foreground: only patch 1 counts -> PET (+, -) 50 %, CT (+, +) 100 %
    # background: masses 0.5 and 1.0 -> PET (0.167, -0.233) 50 %, CT (0.167, 0.167) 100 %
    assert shares == {"fore_pet": 50.0, "fore_ct": 100.0, "back_pet": 50.0, "back_ct": 100.0}
    with pytest.raises(ValueError):
        shares_from_weights(fore[:, :3], back[:, :3], np.array([0.5, 0.0]), channels=2)


def test_a_benchmark_row_can_name_a_training_protocol():
    models = [
        {"name": "h2aseg_release", "id": "release", "protocol": "release"},
        {"name": "h2aseg", "protocol": "cpu", "train": {"lr": 3e-3}},
        {"name": "unet3d"},
    ]
    config = parse_benchmark_config({**TINY_BENCHMARK, "models": models}, "x.yaml")
    root, cache = Path("data"), Path("cache")
    release = config.run_config(config.model("release"), 0, root, cache)
    assert (
        release.train.protocol == "release"
        and release.train.batch == 4
        and release.train.samples_per_volume == 2
    )
    cpu = config.run_config(config.model("h2aseg"), 1, root, cache)
    # the row's own train beats its protocol, which beats the file's shared train
    assert (
        cpu.train.lr == 3e-3
        and cpu.train.patch == [32, 32, 32]
        and cpu.train.epochs == 1
        and cpu.train.seed == 1
    )
    assert cpu.model.options["channels"] == [4, 8, 16, 32, 64]
    plain = config.run_config(config.model("unet3d"), 0, root, cache)
    assert plain.train.protocol == "paper" and plain.train.patch == [16, 16, 16]
    with pytest.raises(ConfigError, match=r"models\[0\] \(h2aseg\): unknown protocol 'fast'"):
        parse_benchmark_config(
            {**TINY_BENCHMARK, "models": [{"name": "h2aseg", "protocol": "fast"}]}, "x.yaml"
        )
