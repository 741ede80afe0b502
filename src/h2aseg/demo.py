"""``h2aseg demo``: synthetic cohort -> train -> predict -> evaluate -> report with pictures, on the CPU.

Everything lands under one folder::

    OUT/cohort/              synthetic AutoPET-II-like studies (the real on-disk layout)
    OUT/run/                 the training run (config.yaml, splits.json, checkpoints, metrics.csv)
    OUT/predictions/         test-split labels on each study's PET grid
    OUT/threshold/           the SUV >= 2.5 reference on the same studies
    OUT/evaluation/          per-case CSV and summary of the network; OUT/evaluation_threshold/ likewise
    OUT/figures/             training curves, PET MIPs with TP/FN/FP overlay, CT/PET fusion slices
    OUT/report.md            the table and the pictures

Demo settings differ from the paper's on purpose (minutes on two CPU cores instead of 200 GPU epochs):
small channels, 32³ patches at the 4 mm PET grid, learning rate 1e-3 annealed to 0 over the time budget
(poly schedule), no rotation augmentation (the synthetic bodies are all upright); each is an option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from h2aseg.atomic import atomic_write_text
from h2aseg.config import RunConfig
from h2aseg.data.io import write_image
from h2aseg.data.layouts import Case, discover_cases
from h2aseg.data.synthetic import generate_cohort
from h2aseg.evaluation.evaluate import evaluate_folders
from h2aseg.evaluation.report import format_mean_std
from h2aseg.inference.predictor import PredictOptions, load_trained_model, predict_cases, threshold_mask
from h2aseg.training.schedule import SCHEDULES
from h2aseg.training.trainer import Trainer
from h2aseg.viz.cli import load_case
from h2aseg.viz.curves import training_curves
from h2aseg.viz.mip import mip_overlay
from h2aseg.viz.slices import fusion_slices

TABLE_METRICS = ("dice", "hd95", "precision", "recall", "fp_volume_ml", "fn_volume_ml")
TABLE_HEADER = ("Method", "Dice (%)", "HD95 (mm)", "Precision (%)", "Recall (%)", "FP vol. (ml)", "FN vol. (ml)")


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def demo_config(args: argparse.Namespace, cohort: Path) -> RunConfig:
    config = RunConfig()
    config.data.root = str(cohort)
    config.data.layout = "autopet"
    config.data.cache_dir = str(args.out / "cache")
    config.model.name = args.model
    config.model.options = {"dropout": args.dropout}
    if args.channels:
        config.model.options["channels"] = list(args.channels)
    t = config.train
    t.epochs, t.patch, t.lr, t.seed, t.lr_schedule = 1000, list(args.patch), args.lr, args.seed, args.lr_schedule
    t.max_minutes, t.val_every, t.batch, t.grad_clip = args.minutes, args.val_every, args.batch, args.grad_clip
    t.channels_last, t.hot_negatives_suv = True, (args.hot_negatives_suv or None)
    t.rotate_prob = args.rotate_prob
    return config


def threshold_predictions(cases: list[Case], out_dir: Path, method: str = "suv2.5") -> None:
    """The clinical SUV rule on each study's PET grid, written like a network's predictions."""
    for case in cases:
        write_image(threshold_mask(case, method), out_dir / f"{case.case_id}.nii.gz")


def table_row(name: str, summary: dict) -> str:
    cells = [name]
    for metric in TABLE_METRICS:
        entry = summary["metrics"].get(metric)
        if entry is None:
            cells.append("n/a")
        else:
            percent = metric in ("dice", "precision", "recall")
            cells.append(format_mean_std(entry["mean"], entry["std"], percent))
    return "| " + " | ".join(cells) + " |"


def draw_figures(cases: list[Case], pred_dir: Path, fig_dir: Path, summary_rows: list[dict], limit: int = 4) -> list[Path]:
    """MIPs of up to ``limit`` test studies (lesion-positive first) and fusion slices of the first one."""
    by_lesion = sorted(cases, key=lambda c: -next((r.get("gt_voxels", 0) for r in summary_rows
                                                   if r.get("case_id") == c.case_id), 0))
    figures = []
    for index, case in enumerate(by_lesion[:limit]):
        data = load_case(case.pet, case.ct, case.label, pred_dir / f"{case.case_id}.nii.gz")
        figures.append(mip_overlay(data["pet"], data["label"], data["pred"], data["spacing"],
                                   fig_dir / f"{case.case_id}_mip.png", title=case.case_id))
        if index == 0:
            figures.append(fusion_slices(data["ct"], data["pet"], data["label"], data["pred"], data["spacing"],
                                         fig_dir / f"{case.case_id}_fusion.png"))
    return figures


def read_rows(csv_path: Path) -> list[dict]:
    import csv

    with csv_path.open() as handle:
        return [{k: (float(v) if k != "case_id" and v not in ("", None) and _is_number(v) else v)
                 for k, v in row.items()} for row in csv.DictReader(handle)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_report(out: Path, args, result, summary: dict, threshold: dict, figures: list[Path],
                 timings: dict, n_split: dict, parameters: int) -> Path:
    dice = summary["metrics"]["dice"]
    lines = [
        "# h2aseg demo report",
        "",
        f"Synthetic AutoPET-II-like cohort of {args.cases} studies (seed {args.seed}); patient-grouped split "
        f"{n_split['train']}/{n_split['val']}/{n_split['test']} (train/val/test). "
        f"Network `{args.model}` ({parameters:,} parameters), trained {result.epochs_run} epochs "
        f"({result.seconds / 60:.1f} min wall, stopped by {result.stopped_by}); best validation Dice "
        f"{result.best_metric:.3f} at epoch {result.best_epoch}.",
        "",
        f"Settings (demo, not the paper's 200 GPU epochs): patch {'×'.join(map(str, args.patch))}, batch {args.batch}, "
        f"channels {tuple(args.channels)}, Adam lr {args.lr:g} ({args.lr_schedule} schedule), gradient-norm cap {args.grad_clip:g}, dropout "
        f"{args.dropout:g}, axial rotation with probability {args.rotate_prob:g}, " + (f"negative crops also on non-lesion uptake ≥ SUV {args.hot_negatives_suv:g} (not in the paper)"
                                 if args.hot_negatives_suv else "the paper's pos 1 / neg 1 crops") + ".",
        "",
        f"**Test Dice over lesion-positive studies: {100 * dice['mean']:.1f} ± {100 * dice['std']:.1f} %** "
        f"(n = {dice['n']}). Dice and HD95 follow the AutoPET rule (lesion-positive studies only); the other "
        "columns cover all test studies. Mean ± std over studies.",
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
        table_row(f"{args.model} (trained here)", summary),
        table_row("SUV ≥ 2.5 threshold (no training)", threshold),
        "",
        "The threshold row shows why CT is needed: physiological uptake (brain, heart, kidneys, bladder) and "
        "benign FDG-avid decoys (brown fat, bowel, muscle) are as hot as tumour on PET alone.",
        "",
        "## Time per stage",
        "",
        "| Stage | Seconds |",
        "|---|---|",
        *[f"| {stage} | {seconds:.0f} |" for stage, seconds in timings.items()],
        "",
        "## Pictures",
        "",
        "PET maximum-intensity projections (inverted grey, SUV 0–10): true positive red, false negative blue, "
        "false positive yellow (as in the paper's Fig. 3).",
        "",
        *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures],
        "",
        "Reproduce: `h2aseg demo --out DIR` with the options in `run/config.yaml`; per-study numbers are in "
        "`evaluation/per_case.csv`.",
        "",
    ]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.monotonic()
    cohort = out / "cohort"
    if not any(cohort.glob("PETCT_*")):
        say(f"writing a synthetic AutoPET-like cohort of {args.cases} studies to {cohort}")
        generate_cohort("autopet", cohort, args.cases, seed=args.seed)
    timings["synthetic cohort"] = time.monotonic() - clock

    clock = time.monotonic()
    run_dir = out / "run"
    say(f"training {args.model} for up to {args.minutes} min into {run_dir}")
    result = Trainer(demo_config(args, cohort), run_dir, resume=(run_dir / "last.pt").exists(),
                     progress=not args.no_progress).fit()
    timings["training (incl. validation)"] = time.monotonic() - clock

    clock = time.monotonic()
    splits = json.loads((run_dir / "splits.json").read_text())
    cases = {c.case_id: c for c in discover_cases(cohort, "autopet").cases}
    test_cases = [cases[i] for i in splits["test"] if i in cases]
    loaded = load_trained_model(run_dir)
    say(f"predicting {len(test_cases)} test studies")
    predict_cases(loaded, test_cases, out / "predictions", PredictOptions(overlap=0.5), progress=not args.no_progress)
    threshold_predictions(test_cases, out / "threshold")
    timings["prediction"] = time.monotonic() - clock

    clock = time.monotonic()
    test_ids = [c.case_id for c in test_cases]
    summary = evaluate_folders(out / "predictions", cohort, out / "evaluation", layout="autopet",
                               progress=False, case_ids=test_ids)
    threshold = evaluate_folders(out / "threshold", cohort, out / "evaluation_threshold", layout="autopet",
                                 progress=False, case_ids=test_ids)
    timings["evaluation"] = time.monotonic() - clock

    clock = time.monotonic()
    figures = [training_curves(run_dir / "metrics.csv", out / "figures" / "training_curves.png")]
    figures += draw_figures(test_cases, out / "predictions", out / "figures", read_rows(out / "evaluation" / "per_case.csv"))
    timings["pictures"] = time.monotonic() - clock

    parameters = sum(p.numel() for p in loaded.model.parameters())
    n_split = {k: len(v) for k, v in splits.items()}
    report = write_report(out, args, result, summary, threshold, figures, timings, n_split, parameters)
    dice = summary["metrics"]["dice"]
    say(f"test Dice (lesion-positive studies): {dice['mean']:.3f} ± {dice['std']:.3f}; "
        f"SUV>=2.5 threshold: {threshold['metrics']['dice']['mean']:.3f}; total {sum(timings.values()) / 60:.1f} min")
    print(report)
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="synthetic cohort -> train -> predict -> evaluate -> report.md with pictures (CPU, minutes)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (rerun resumes the training)")
    parser.add_argument("--cases", type=int, default=60,
                        help="synthetic studies to generate (60: about 8 lesion-positive studies in the test split)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cohort, split and training")
    parser.add_argument("--model", default="h2aseg", help="registered network to train")
    parser.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="network channels per level")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32], help="training patch in voxels")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout inside the network (short runs learn faster without)")
    parser.add_argument("--hot-negatives-suv", type=float, default=0.0,
                        help="also centre negative crops on non-lesion uptake >= this SUV (0 = the paper's pos/neg crops)")
    parser.add_argument("--rotate-prob", type=float, default=0.0,
                        help="probability of the ±45° axial rotation per patch (`h2aseg train` and the release: 0.8; the "
                             "synthetic bodies are never rotated, and a short run learns faster without it)")
    parser.add_argument("--grad-clip", type=float, default=12.0, help="cap on the gradient norm (nnU-Net's 12)")
    parser.add_argument("--batch", type=int, default=2, help="patches per optimizer step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the paper's 1e-4 is for 200 GPU epochs)")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default="poly",
                        help="exponential: x0.99 per epoch; poly: down to 0 at the end of --minutes")
    parser.add_argument("--minutes", type=float, default=11.5, help="training wall-time budget (validation included)")
    parser.add_argument("--val-every", type=int, default=20, help="validate every N epochs (and at the end)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
