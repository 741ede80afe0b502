"""Small-lesion benchmark (issue 10): cohorts, equal-step training runs, the position probe, the table.

Each verb is resumable (a finished step is skipped), so the whole study can be driven by a shell loop:

    python benchmarks/small_lesions.py cohort --out bench/tune --seed 11 --cases 60 --lesion-free 0.5
    python benchmarks/small_lesions.py run --cohort bench/tune --name h2aseg --model h2aseg --steps 1200
    python benchmarks/small_lesions.py probe --cohort bench/tune --name h2aseg
    python benchmarks/small_lesions.py table --cohort bench/tune \\
        --out benchmarks/results/small_lesions_tune.md

``run`` trains with the CPU recipe (``h2aseg train --protocol cpu``, or the options given after ``--``),
validating every ``--val-steps`` steps, then predicts the test split with ``h2aseg predict`` (the CLI's
defaults) and scores it with ``h2aseg evaluate``. ``probe`` cuts one patch centred on each held-out lesion and
one shifted by (10, −10, 8) voxels and reports the Dice of the lesion inside each: a network that learned
"lesion = patch centre" finds the centred lesion and misses the shifted one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

STEPS_PER_EPOCH = 50
SHIFT = (10, -10, 8)


def h2aseg(*args: str, log: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "h2aseg", *args]
    with open(log, "a") if log else open(os.devnull, "w") as out:
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)


def make_cohort(args) -> None:
    if (args.out / "done").exists():
        return
    extra = []
    if args.pet_shape:
        extra += ["--pet-shape", args.pet_shape]
    if args.pet_spacing:
        extra += ["--pet-spacing", args.pet_spacing]
    if args.lesion_suv:
        extra += ["--lesion-suv", *args.lesion_suv]
    h2aseg(
        "synth",
        "--kind",
        "autopet",
        "--cases",
        str(args.cases),
        "--seed",
        str(args.seed),
        "--out",
        str(args.out / "data"),
        "--lesion-sizes",
        args.lesion_sizes,
        "--lesion-free-fraction",
        str(args.lesion_free),
        *extra,
    )
    (args.out / "cohort.json").write_text(
        json.dumps({k: str(v) for k, v in vars(args).items() if k != "func"})
    )
    (args.out / "done").write_text("")


def run(args) -> None:
    run_dir = args.cohort / "runs" / args.name
    log = args.cohort / "runs" / f"{args.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    epochs = max(1, args.steps // STEPS_PER_EPOCH)
    val_every = max(1, args.val_steps // STEPS_PER_EPOCH)
    if not (run_dir / "train_summary.json").exists():
        resume = ["--resume"] if (run_dir / "last.pt").exists() else []
        recipe = args.train_args or ["--protocol", "cpu"]
        h2aseg(
            "train",
            "--data",
            str(args.cohort / "data"),
            "--layout",
            "autopet",
            "--out",
            str(run_dir),
            "--cache",
            str(args.cohort / "cache"),
            "--model",
            args.model,
            "--epochs",
            str(epochs),
            "--steps-per-epoch",
            str(STEPS_PER_EPOCH),
            "--val-every",
            str(val_every),
            "--no-progress",
            "--seed",
            str(args.seed),
            *recipe,
            *resume,
            log=log,
        )
    splits = json.loads((run_dir / "splits.json").read_text())
    if not (run_dir / "eval" / "summary.json").exists():
        h2aseg(
            "predict",
            "--model",
            str(run_dir),
            "--input",
            str(args.cohort / "data"),
            "--out",
            str(run_dir / "pred"),
            "--cases",
            *splits["test"],
            "--no-progress",
            log=log,
        )
        h2aseg(
            "evaluate",
            "--pred",
            str(run_dir / "pred"),
            "--gt",
            str(args.cohort / "data"),
            "--layout",
            "autopet",
            "--out",
            str(run_dir / "eval"),
            "--cases",
            *splits["test"],
            "--no-progress",
            log=log,
        )


def _window(start, patch) -> tuple:
    """Index of the patch at ``start`` in a (1, X, Y, Z) array."""
    return (0, *(slice(a, a + p) for a, p in zip(start, patch)))


def _predict_patch(model, ct_patch: np.ndarray, pet_patch: np.ndarray) -> np.ndarray:
    """Binary lesion mask of one (X, Y, Z) patch pair."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(ct_patch)[None, None], torch.from_numpy(pet_patch)[None, None])
    return (out[0, 0] > 0).numpy() if out.shape[1] == 1 else (out[0].argmax(0) > 0).numpy()


def _patch_dice(model, ct, pet, label, start, patch) -> float:
    window = _window(start, patch)
    pred, truth = _predict_patch(model, ct[window], pet[window]), label[window] > 0
    return float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))


def probe(args) -> None:
    """Dice of each held-out (validation and test) lesion in a patch centred on it and in one shifted by
    SHIFT."""
    from scipy import ndimage

    from h2aseg.data.layouts import discover_cases
    from h2aseg.data.preprocess import preprocess_case
    from h2aseg.inference.predictor import load_trained_model

    run_dir = args.cohort / "runs" / args.name
    loaded = load_trained_model(run_dir)
    patch = loaded.patch_size
    splits = json.loads((run_dir / "splits.json").read_text())
    cases = {c.case_id: c for c in discover_cases(args.cohort / "data", "autopet").cases}
    rows = []
    for case_id in splits["val"] + splits["test"]:  # every held-out lesion: the test split alone holds few
        data = preprocess_case(cases[case_id], loaded.preprocess)
        ct, pet, label = (np.asarray(data[k], np.float32) for k in ("ct", "pet", "label"))
        pad = [(0, 0)] + [(p, p) for p in patch]
        ct, pet, label = (np.pad(a, pad) for a in (ct, pet, label))
        components, n = ndimage.label(label[0] > 0)
        for index, centre in enumerate(ndimage.center_of_mass(label[0] > 0, components, range(1, n + 1))):
            centre = np.round(centre).astype(int)
            centred = centre - np.array(patch) // 2
            shifted = centred - np.array(SHIFT)
            rows.append(
                {
                    "case_id": case_id,
                    "lesion": index + 1,
                    "voxels": int((components == index + 1).sum()),
                    "centred": _patch_dice(loaded.model, ct, pet, label, centred, patch),
                    "shifted": _patch_dice(loaded.model, ct, pet, label, shifted, patch),
                }
            )
    (run_dir / "probe.json").write_text(json.dumps(rows, indent=1))
    c, s = np.array([r["centred"] for r in rows]), np.array([r["shifted"] for r in rows])
    print(
        f"{args.name}: {len(rows)} lesions; centred median {np.median(c):.2f}, shifted median "
        f"{np.median(s):.2f}; shifted Dice 0 in {(s == 0).sum()} / {len(s)}"
    )


def summarise_run(run_dir: Path) -> dict | None:
    per_case = run_dir / "eval" / "per_case.csv"
    if not per_case.exists():
        return None
    rows = list(csv.DictReader(per_case.open()))
    positive = [r for r in rows if float(r["gt_voxels"]) > 0]
    dice = np.array([float(r["dice"]) for r in positive]) * 100
    metrics = list(csv.DictReader((run_dir / "metrics.csv").open()))
    curve = [(int(m["step"]), float(m["val_dice"])) for m in metrics if m["val_dice"]]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    probe_rows = json.loads((run_dir / "probe.json").read_text()) if (run_dir / "probe.json").exists() else []
    return {
        "steps": int(metrics[-1]["step"]),
        "seconds": summary["seconds"],
        "dice_mean": float(dice.mean()),
        "dice_std": float(dice.std()),
        "n_pos": len(positive),
        "hits": sum(int(r["hits"]) for r in positive),
        "lesions": sum(int(r["lesions"]) for r in positive),
        "fd_per_study": float(np.mean([int(r["false_detections"]) for r in rows])),
        "curve": curve,
        "probe_centred": float(np.mean([r["centred"] for r in probe_rows])) if probe_rows else None,
        "probe_shifted": float(np.mean([r["shifted"] for r in probe_rows])) if probe_rows else None,
        "probe_found_centred": sum(r["centred"] > 0.1 for r in probe_rows),
        "probe_found_shifted": sum(r["shifted"] > 0.1 for r in probe_rows),
        "probe_n": len(probe_rows),
    }


def plot_curves(results: dict, path: Path, title: str) -> None:
    """Validation Dice against optimizer steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, s in results.items():
        if s["curve"]:
            steps, values = zip(*s["curve"])
            ax.plot(steps, values, marker="o", label=name)
    ax.set_xlabel("optimizer steps (batch 2)")
    ax.set_ylabel("validation Dice")
    ax.set_title(f"learning curves, cohort {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(args) -> None:
    lines = [
        "| run | steps | train min | validation Dice by step | test Dice (positive studies) | lesions found "
        "| false detections / study | probe: mean Dice centred / shifted (lesions with Dice > 0.1) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for run_dir in sorted((args.cohort / "runs").iterdir()):
        if not run_dir.is_dir() or (s := summarise_run(run_dir)) is None:
            continue
        results[run_dir.name] = s
        curve = ", ".join(f"{v:.2f}@{k}" for k, v in s["curve"])
        probe_text = (
            f"{s['probe_centred']:.2f} / {s['probe_shifted']:.2f} ({s['probe_found_centred']} / "
            f"{s['probe_found_shifted']} of {s['probe_n']})"
            if s["probe_n"]
            else "–"
        )
        lines.append(
            f"| {run_dir.name} | {s['steps']} | {s['seconds'] / 60:.1f} | {curve} | "
            f"{s['dice_mean']:.1f} ± {s['dice_std']:.1f} (n = {s['n_pos']}) | {s['hits']} / {s['lesions']} | "
            f"{s['fd_per_study']:.1f} | {probe_text} |"
        )
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(results, args.out.with_suffix(".png"), title=args.cohort.name)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)


def compare(args) -> None:
    """Paired per-study comparison of two groups of runs (each group: one network, several training seeds):
    per-study Dice averaged over a group's seeds, mean ± std per seed, and the bootstrap 95 % interval of
    the per-study difference A − B."""
    from h2aseg.benchmarking.comparison import average_over_seeds, read_study_dice
    from h2aseg.evaluation.statistics import mean_std, paired_bootstrap

    def run_folder(name: str) -> Path:
        """A run name under ``--cohort``/runs, or a run folder (a path with a separator, or no --cohort)."""
        if args.cohort is None or "/" in name:
            return Path(name)
        return args.cohort / "runs" / name

    def study_dice(name: str) -> dict[str, float]:
        """One run's per-study Dice in percent; exit with one line naming the file it cannot use."""
        path = run_folder(name) / "eval" / "per_case.csv"
        try:
            scores = read_study_dice(path)
        except (OSError, KeyError, ValueError) as err:
            raise SystemExit(
                f"compare: {path}: {type(err).__name__}: {err} (evaluate the run first)"
            ) from None
        if not scores:
            raise SystemExit(f"compare: {path}: no per-study Dice (empty, truncated or not h2aseg's table)")
        return {case: 100 * dice for case, dice in scores.items()}

    groups, studied = {}, []
    for side, names in (("A", args.a), ("B", args.b)):
        runs = [study_dice(name) for name in names]  # percent
        studied += [set(run) for run in runs]
        per_seed = [mean_std(list(r.values())) for r in runs]
        groups[side] = {
            "runs": names,
            "per_seed_mean_std": [[round(m, 1), round(sd, 1)] for m, sd in per_seed],
            "per_study": average_over_seeds(runs),
        }
    common = sorted(set(groups["A"]["per_study"]) & set(groups["B"]["per_study"]))
    # a run evaluated on fewer studies (a truncated table): say so rather than pair fewer silently
    left_out = set.union(*studied) - set(common)
    if left_out:
        print(
            f"compare: {len(left_out)} studies not scored by every run, left out: {sorted(left_out)[:5]}",
            file=sys.stderr,
        )
    a = [groups["A"]["per_study"][c] for c in common]
    b = [groups["B"]["per_study"][c] for c in common]
    result = paired_bootstrap(a, b, n_resamples=10_000, seed=0)
    summary = {
        "A": {k: v for k, v in groups["A"].items() if k != "per_study"},
        "B": {k: v for k, v in groups["B"].items() if k != "per_study"},
        "studies": len(common),
        "mean_A": round(float(np.mean(a)), 1),
        "mean_B": round(float(np.mean(b)), 1),
        "difference_A_minus_B": round(result.mean_difference, 1),
        "ci95": [round(result.low, 1), round(result.high, 1)],
    }
    print(json.dumps(summary, indent=1))


def _blank(ct_patch: np.ndarray, pet_patch: np.ndarray) -> np.ndarray:
    """The CT patch made one value (the median CT of its body voxels, PET > 0): no CT cue left."""
    body = pet_patch > 0
    return np.full_like(ct_patch, np.median(ct_patch[body]) if body.any() else np.median(ct_patch))


def _held_out_regions(loaded, cases: dict, split: list[str], hot_suv: float, min_voxels: int):
    """Per test lesion and per PET-avid non-lesion region (SUV >= ``hot_suv``, >= ``min_voxels``, 2 voxels
    clear of lesions) of the ``split`` studies: (padded ct, pet, the region's mask, is_lesion, its centre)."""
    from scipy import ndimage

    from h2aseg.data.preprocess import preprocess_case

    patch = np.array(loaded.patch_size)
    for case_id in split:
        data = preprocess_case(cases[case_id], loaded.preprocess)
        pad = [(0, 0)] + [(p, p) for p in patch]
        ct, pet, label = (np.pad(np.asarray(data[k], np.float32), pad) for k in ("ct", "pet", "label"))
        lesion = label[0] > 0
        hot = (pet[0] * data["meta"]["suv_scale"] >= hot_suv) & ~ndimage.binary_dilation(lesion, iterations=2)
        for mask, is_lesion in ((lesion, True), (hot, False)):
            components, n = ndimage.label(mask)
            sizes = ndimage.sum(mask, components, range(1, n + 1))
            centres = ndimage.center_of_mass(mask, components, range(1, n + 1))
            for index, (size, centre) in enumerate(zip(sizes, centres)):
                if is_lesion or size >= min_voxels:
                    yield ct, pet, components == index + 1, is_lesion, np.round(centre).astype(int)


def _patch_start(centre: np.ndarray, patch: np.ndarray, padded_shape, keep_inside: bool) -> np.ndarray:
    """Start of the patch centred on ``centre`` in a volume padded by ``patch`` on every side; with
    ``keep_inside`` moved (as little as needed) so the patch lies in the unpadded volume where it fits, as
    training crops and sliding windows do."""
    start = centre - patch // 2
    if not keep_inside:
        return start
    last_start = patch + np.maximum(np.array(padded_shape) - 3 * patch, 0)
    return np.clip(start, patch, last_start)


def _ct_probe_run(
    run_dir: Path, cases: dict, hot_suv: float, min_voxels: int, keep_inside: bool = False
) -> tuple[dict, dict]:
    """Per test lesion its Dice, per hot non-lesion region whether anything in it is called lesion; each
    with the real CT and with the patch's CT made uniform."""
    from h2aseg.inference.predictor import load_trained_model

    loaded = load_trained_model(run_dir)
    patch = np.array(loaded.patch_size)
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    dice, hot_hit = {"real": [], "blank": []}, {"real": [], "blank": []}
    for ct, pet, region, is_lesion, centre in _held_out_regions(loaded, cases, test, hot_suv, min_voxels):
        window = _window(_patch_start(centre, patch, ct.shape[1:], keep_inside), patch)
        inside = region[window[1:]]
        ct_patch, pet_patch = ct[window], pet[window]
        for kind, ct_in in (("real", ct_patch), ("blank", _blank(ct_patch, pet_patch))):
            pred = _predict_patch(loaded.model, ct_in, pet_patch)
            if is_lesion:
                dice[kind].append(2 * (pred & inside).sum() / max(pred.sum() + inside.sum(), 1))
            else:
                hot_hit[kind].append(bool((pred & inside).any()))
    return dice, hot_hit


def _hot_probe_run(run_dir: Path, cases: dict, hot_suv: float, min_voxels: int) -> dict:
    """Per hot non-lesion test region, the share of its voxels called lesion in a patch centred on it and
    in the two patches shifted by ±SHIFT (the region near the patch border). Every patch is moved inside the
    volume, as training crops and sliding windows are: most hot regions of the legacy test studies lie
    within half a patch of the volume's border, where a centred patch would reach into padding that no
    training patch showed."""
    from h2aseg.inference.predictor import load_trained_model

    loaded = load_trained_model(run_dir)
    patch = np.array(loaded.patch_size)
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    called = {"centred": [], "shifted": []}
    for ct, pet, region, is_lesion, centre in _held_out_regions(loaded, cases, test, hot_suv, min_voxels):
        if is_lesion:
            continue
        for kind, shifts in (("centred", [(0, 0, 0)]), ("shifted", [SHIFT, tuple(-s for s in SHIFT)])):
            for shift in shifts:
                window = _window(_patch_start(centre + np.array(shift), patch, ct.shape[1:], True), patch)
                inside = region[window[1:]]
                pred = _predict_patch(loaded.model, ct[window], pet[window])
                called[kind].append(float((pred & inside).sum() / max(inside.sum(), 1)))
    return called


def ct_probe(args) -> None:
    """How much a trained network leans on CT: held-out lesions and PET-avid non-lesion spots (SUV >=
    ``--hot-suv``, the decoys), each in a patch centred on it, predicted with the real CT and with the
    patch's CT made uniform. Lesion Dice and the share of decoys with a detection, both ways."""
    from h2aseg.data.layouts import discover_cases

    cases = {c.case_id: c for c in discover_cases(args.data, "autopet").cases}
    lines = [
        "| run | test lesions: Dice, real CT / uniform CT | hot non-lesion regions with a detection, "
        "real CT / uniform CT |",
        "|---|---|---|",
    ]
    failed = []

    def both(values: dict) -> str:
        return f"{np.mean(values['real']):.2f} / {np.mean(values['blank']):.2f} (n = {len(values['real'])})"

    def measure(run_dir: Path) -> tuple[dict, dict]:
        return _ct_probe_run(run_dir, cases, args.hot_suv, args.min_decoy_voxels, args.keep_inside)

    for run_dir, (dice, hot_hit) in _each_run(args.runs, measure, failed):
        lines.append(f"| {run_dir} | {both(dice)} | {both(hot_hit)} |")
        print(lines[-1], flush=True)
    _print_table(lines, failed)


def hot_probe(args) -> None:
    """Whether a trained network tells hot organs from lesions: each PET-avid non-lesion region of the test
    studies (SUV >= ``--hot-suv``) predicted in a patch centred on it and in patches shifted by ±SHIFT; the
    mean share of its voxels called lesion, both ways."""
    from h2aseg.data.layouts import discover_cases

    cases = {c.case_id: c for c in discover_cases(args.data, "autopet").cases}
    lines = [
        f"| run | hot regions (SUV >= {args.hot_suv:g}) called lesion, centred / shifted | regions |",
        "|---|---|---|",
    ]
    failed = []

    def measure(run_dir: Path) -> dict:
        return _hot_probe_run(run_dir, cases, args.hot_suv, args.min_decoy_voxels)

    for run_dir, called in _each_run(args.runs, measure, failed):
        lines.append(
            f"| {run_dir} | {np.mean(called['centred']):.2f} / {np.mean(called['shifted']):.2f} | "
            f"{len(called['centred'])} |"
        )
        print(lines[-1], flush=True)
    _print_table(lines, failed)


def _each_run(runs: list[Path], measure, failed: list[str]):
    """(run_dir, measure(run_dir)) for every run folder that can be read; a run that cannot (a missing,
    truncated or foreign file: OS, data, lookup or value errors) goes to ``failed`` with its reason."""
    from h2aseg.errors import H2ASegError

    for run_dir in runs:
        try:
            result = measure(run_dir)
        except (OSError, KeyError, ValueError, RuntimeError, H2ASegError) as err:
            failed.append(f"{run_dir}: {type(err).__name__}: {err}")
            continue
        yield run_dir, result


def _print_table(lines: list[str], failed: list[str]) -> None:
    """The table, then one line per run left out; exit status 1 when any was."""
    print("\n".join(lines))
    for line in failed:
        print(f"left out: {line}", file=sys.stderr)
    if failed:
        sys.exit(1)


def error_breakdown(run_dir: Path) -> dict:
    """Where a run's test errors lie: lesions missed, false detections in lesion-positive and lesion-free
    studies, and the false-positive / false-negative volumes (from ``eval/per_case.csv``)."""
    path = run_dir / "eval" / "per_case.csv"
    rows = list(csv.DictReader(path.open()))
    needed = {
        "dice",
        "gt_voxels",
        "pred_voxels",
        "hits",
        "lesions",
        "false_detections",
        "fp_volume_ml",
        "fn_volume_ml",
    }
    if not rows or not needed <= set(rows[0]):
        raise ValueError(
            f"{path}: no rows or not h2aseg's per-case table (needs {', '.join(sorted(needed))})"
        )

    def total(subset, key):
        return sum(float(r[key]) for r in subset if r[key] not in ("", "nan"))

    positive = [r for r in rows if float(r["gt_voxels"]) > 0]
    free = [r for r in rows if float(r["gt_voxels"]) == 0]
    return {
        "dice_positive": 100 * total(positive, "dice") / max(len(positive), 1),
        "hits": int(total(positive, "hits")),
        "lesions": int(total(positive, "lesions")),
        "fd_positive": int(total(positive, "false_detections")),
        "fd_free": int(total(free, "false_detections")),
        "free_clean": sum(float(r["pred_voxels"]) == 0 for r in free),
        "n_free": len(free),
        "fp_ml": total(rows, "fp_volume_ml"),
        "fn_ml": total(positive, "fn_volume_ml"),
    }


def errors(args) -> None:
    """Markdown table of :func:`error_breakdown` for run folders given as paths."""
    lines = [
        "| run | test Dice, positive studies | lesions hit | false detections: positive / lesion-free "
        "studies | lesion-free studies with no detection | FP ml | FN ml |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = []
    for run_dir, e in _each_run(args.runs, error_breakdown, failed):
        lines.append(
            f"| {run_dir} | {e['dice_positive']:.1f} | {e['hits']} / {e['lesions']} | {e['fd_positive']} / "
            f"{e['fd_free']} | {e['free_clean']} / {e['n_free']} | {e['fp_ml']:.1f} | {e['fn_ml']:.1f} |"
        )
    _print_table(lines, failed)


def false_uptake(run_dir: Path, cases: dict, edges: tuple[float, ...]) -> dict:
    """False-positive volume (ml) of a run's test predictions by the mean SUV of each false component
    (predicted components that touch no lesion voxel, 18-connected as ``eval``'s FP volume), binned at
    ``edges``; the bins add up to the run's ``fp_volume_ml``."""
    import SimpleITK as sitk

    from h2aseg.data.io import read_image
    from h2aseg.evaluation.metrics import labelled_components

    bins = [f"< {edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges, edges[1:])] + [f">= {edges[-1]:g}"]
    volume = np.zeros(len(bins))
    test = json.loads((run_dir / "splits.json").read_text())["test"]
    predictions = [run_dir / "pred" / f"{case_id}.nii.gz" for case_id in test]
    missing = [path.name for path in predictions if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"{run_dir / 'pred'}: no prediction for {len(missing)} test case(s): {missing[:3]}"
        )
    for case_id, pred_path in zip(test, predictions):
        case = cases[case_id]
        pred_image = read_image(pred_path)
        pred = sitk.GetArrayFromImage(pred_image) > 0
        suv = sitk.GetArrayFromImage(read_image(case.pet))
        lesion = sitk.GetArrayFromImage(read_image(case.label)) > 0
        if not pred.shape == suv.shape == lesion.shape:
            raise ValueError(f"{pred_path}: grid {pred.shape} differs from the case's PET {suv.shape}")
        labels, sizes, touched = labelled_components(pred, lesion)
        suv_sums = np.bincount(labels.ravel(), weights=suv.ravel(), minlength=len(sizes) + 1)[1:]
        where = np.searchsorted(edges, suv_sums[~touched] / sizes[~touched], side="right")
        ml_per_voxel = float(np.prod(pred_image.GetSpacing())) / 1000.0
        volume += np.bincount(where, weights=sizes[~touched], minlength=len(bins)) * ml_per_voxel
    return dict(zip(bins, volume))


def fp_uptake(args) -> None:
    """Markdown table of :func:`false_uptake` for run folders: which uptake the false positives sit on."""
    from h2aseg.data.layouts import discover_cases

    cases = {c.case_id: c for c in discover_cases(args.data, "autopet").cases}
    edges = tuple(sorted(args.suv_edges))
    lines, failed = [], []
    for run_dir, volume in _each_run(args.runs, lambda run_dir: false_uptake(run_dir, cases, edges), failed):
        if not lines:
            lines = [
                "| run | " + " | ".join(f"FP ml, mean SUV {b}" for b in volume) + " |",
                "|---|" + "---|" * len(volume),
            ]
        lines.append(f"| {run_dir} | " + " | ".join(f"{v:.1f}" for v in volume.values()) + " |")
    _print_table(lines, failed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cohort")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--cases", type=int, default=60)
    p.add_argument("--lesion-free", type=float, default=0.5)
    p.add_argument("--lesion-sizes", default="small")
    p.add_argument("--pet-shape")
    p.add_argument("--pet-spacing")
    p.add_argument("--lesion-suv", nargs=2)
    p.set_defaults(func=make_cohort)
    p = sub.add_parser("run")
    p.add_argument("--cohort", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--val-steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="after --: h2aseg train options (default --protocol cpu)"
    )
    p.set_defaults(func=run)
    p = sub.add_parser("probe")
    p.add_argument("--cohort", type=Path, required=True)
    p.add_argument("--name", required=True)
    p.set_defaults(func=probe)
    p = sub.add_parser("table")
    p.add_argument("--cohort", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=table)
    p = sub.add_parser(
        "compare",
        help="paired per-study bootstrap of two groups of runs (seeds averaged)",
        description="Each run is a name under --cohort/runs or, when it holds a '/' (or without --cohort), a "
        "run folder with eval/per_case.csv, e.g. a benchmark's OUT/runs/ID/seedN.",
    )
    p.add_argument("--cohort", type=Path, default=None, help="cohort folder whose runs/ holds the named runs")
    p.add_argument("--a", nargs="+", required=True, help="runs of group A (one network, its seeds)")
    p.add_argument("--b", nargs="+", required=True, help="runs of group B")
    p.set_defaults(func=compare)
    for name, func, hot_suv, text in (
        ("ct-probe", ct_probe, 2.5, "lesions and decoys predicted with the real CT and a uniform one"),
        ("hot-probe", hot_probe, 12.0, "hot non-lesion regions called lesion, centred and shifted"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--data", type=Path, required=True, help="the cohort's autopet-layout data folder")
        p.add_argument(
            "--hot-suv", type=float, default=hot_suv, help="region SUV threshold (default %(default)s)"
        )
        p.add_argument(
            "--min-decoy-voxels", type=int, default=8, help="smallest region in voxels (default %(default)s)"
        )
        if name == "ct-probe":  # hot-probe always keeps its patches inside the volume
            p.add_argument(
                "--keep-inside",
                action="store_true",
                help="move each patch inside the volume, as training crops are (default: centred on the "
                "region even where that reaches into padding, as the figures of small_lesions.md §8.1)",
            )
        p.add_argument("runs", nargs="+", type=Path, help="run folders (model, splits.json)")
        p.set_defaults(func=func)
    p = sub.add_parser("errors", help="where the test errors lie (misses, false detections), run folders")
    p.add_argument("runs", nargs="+", type=Path, help="run folders holding eval/per_case.csv")
    p.set_defaults(func=errors)
    p = sub.add_parser("fp-uptake", help="false-positive volume by the mean SUV of each false component")
    p.add_argument("--data", type=Path, required=True, help="the cohort's autopet-layout data folder")
    p.add_argument("--suv-edges", type=float, nargs="+", default=[6.0, 12.0], help="bin edges (SUV)")
    p.add_argument("runs", nargs="+", type=Path, help="run folders (splits.json, pred/ with every test case)")
    p.set_defaults(func=fp_uptake)
    args = parser.parse_args()
    if getattr(args, "train_args", None) and args.train_args[0] == "--":
        args.train_args = args.train_args[1:]
    from h2aseg.errors import H2ASegError

    try:
        args.func(args)
    except H2ASegError as err:  # e.g. --data that is not a dataset folder: one line, not a traceback
        raise SystemExit(f"small_lesions.py {args.command}: {err}") from None


if __name__ == "__main__":
    main()
