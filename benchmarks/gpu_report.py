"""Write ``gpu.md`` from the raw outputs of ``benchmarks/gpu_check.sh`` (not a test).

Every stage of the check may have failed or been cut short by its time limit; this report says so per
stage (``stages.tsv``: name, exit status, seconds) and shows whatever each stage left.

    python benchmarks/gpu_report.py RAW_DIR > benchmarks/results/gpu.md
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def load_json(path: Path):
    """The JSON object a script printed last (``speed.py`` prints one line per result first)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for start in (0, text.rfind("\n{\n") + 1):
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    return None


def stage_table(raw: Path) -> list[str]:
    lines = ["| stage | exit status | seconds |", "|---|---|---|"]
    rows = (raw / "stages.tsv").read_text().splitlines() if (raw / "stages.tsv").exists() else []
    for row in rows:
        name, status, seconds = (row.split("\t") + ["", ""])[:3]
        note = {"124": " (time limit)", "0": ""}.get(status, " (failed: see its .log)")
        lines.append(f"| {name} | {status}{note} | {seconds} |")
    return lines


def speed_lines(raw: Path) -> list[str]:
    lines = ["| run | median step (s) | min step (s) | first step (s) | peak GPU memory (MiB) | parameters |"]
    lines.append("|---|---|---|---|---|---|")
    for name in ("speed_eager", "speed_compiled"):
        report = load_json(raw / f"{name}.json")
        for result in (report or {}).get("results", []):
            lines.append(
                f"| {name} (compile: {result.get('compile')}) | {result['median_step_s']} | "
                f"{result['min_step_s']} | {result['first_step_s']} | {result.get('peak_memory_mib', '')} | "
                f"{result['parameters']:,} |"
            )
    return lines


def wholebody_lines(raw: Path) -> list[str]:
    report = load_json(raw / "inference_wholebody.json")
    if not report:
        return ["(no result: see `inference_wholebody.log`)"]
    lines = [f"Grid {report.get('grid')}, network {report.get('network')}.", ""]
    lines += ["| path | wall (s) | peak host RSS (GB) | last lines (stage timings) |", "|---|---|---|---|"]
    for mode, run in report["runs"].items():
        if "error" in run:
            last = (run["error"].strip().splitlines() or ["?"])[-1][:200].replace("|", "/")
            lines.append(f"| {mode} | failed | | {last} |")
            continue
        stages = " ".join(run["stdout"])[:300].replace("|", "/")
        lines.append(f"| {mode} | {run['wall_s']} | {run['peak_rss_gb']} | {stages} |")
    lines += ["", f"Wall time of each path over the default's (`new`): {report.get('speedup_vs')}"]
    return lines


def window_lines(raw: Path) -> list[str]:
    report = load_json(raw / "windows_cuda.json")
    if not report:
        return ["(no result: see `windows_cuda.log`)"]
    lines = [
        f"{report.get('network')}; one body window of the study, {report.get('calls_per_measurement')} "
        "calls a measurement, every configuration in turn, first round discarded; median over the rest.",
        "Configurations (`PATH_NETWORKS` in `inference.py`): new = bf16 autocast, 2 windows a call; "
        "new-fp32 = fp32, 2 a call; new-channels-last = bf16, channels-last; old = fp32, 2 a call; "
        "monai = fp32, 1 a call; new-fp16 = fp16 autocast; +cudnn-benchmark = cuDNN's autotuner on.",
        "",
        "| configuration | ms a window | all rounds (s) |",
        "|---|---|---|",
    ]
    for name, median in report["seconds_per_window_median"].items():
        rounds = report["seconds_per_window_all"].get(name)
        lines.append(f"| {name} | {median * 1000:.1f} | {rounds} |")
    return lines


def training_lines(raw: Path) -> list[str]:
    lines = ["| amp | seconds per epoch | validation Dice (last validated epoch) |", "|---|---|---|"]
    for amp in ("on", "off"):
        path = raw / f"train_amp_{amp}_metrics.csv"
        if not path.exists():
            lines.append(f"| {amp} | (no metrics: see `train_amp_{amp}.log`) | |")
            continue
        rows = list(csv.DictReader(path.open()))
        validated = [r["val_dice"] for r in rows if r.get("val_dice", "").lower() not in ("", "nan")]
        dice = validated[-1] if validated else ""
        lines.append(f"| {amp} | {', '.join(r.get('epoch_seconds', '') for r in rows)} | {dice} |")
    return lines


def main() -> None:
    raw = Path(sys.argv[1])
    device = (raw / "device.txt").read_text().strip() if (raw / "device.txt").exists() else "?"
    smi = (raw / "nvidia_smi.csv").read_text().strip() if (raw / "nvidia_smi.csv").exists() else ""
    env = (raw / "environment.txt").read_text().strip() if (raw / "environment.txt").exists() else ""
    out = [f"# GPU check on {device}", ""]
    out += ["Made by `bash benchmarks/gpu_check.sh` (report: `benchmarks/gpu_report.py`).", ""]
    out += ["```", smi, env, "```", "", "## Stages", ""] + stage_table(raw)
    out += ["", "## Whole-body prediction (`benchmarks/inference.py speed`, every path on the GPU)", ""]
    out += wholebody_lines(raw)
    out += ["", "## Network time a window, warm (`benchmarks/inference.py windows --device cuda`)", ""]
    out += window_lines(raw)
    out += ["", "## Training step, paper-width H2ASeg, 128×128×64, batch 2 (`benchmarks/speed.py`)", ""]
    out += speed_lines(raw)
    out += ["", "## Short training, `h2aseg train --amp on` against `--amp off`", ""]
    out += training_lines(raw)
    print("\n".join(out))


if __name__ == "__main__":
    main()
