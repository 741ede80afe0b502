"""Whole-body prediction speed and memory, and agreement of the fast path with the exhaustive one
(not a test).

``speed``: makes (once) a synthetic whole-body study at the AutoPET PET grid, 400×400×326 voxels at
2.04×2.04×3 mm, and a paper-width H2ASeg checkpoint (channels 8–128, 128×128×64 windows; random
weights: the time does not depend on them), then runs, one after the other in child processes (each
its own peak RSS), on the same study:

- ``new``: ``h2aseg predict`` with its default settings (``--timings`` prints the stages);
- ``new-*``: the same with one step turned off (``--no-skip``, ``--precision fp32``, ``--overlap 0.5``);
- ``old``: the prediction path before the inference core (MONAI ``sliding_window_inference``, Gaussian
  blending, overlap 0.5 as the CLI had it, 2 windows a call, fp32, float32 accumulation), reproduced here;
- ``monai``: MONAI's plain ``sliding_window_inference`` as a user would write it (its defaults:
  overlap 0.25, constant blending, one window a call, fp32), with the same reading and writing.

``windows``: when the machine is too busy for whole runs of the slow paths, the per-window network
seconds of each path's setting measured round-robin on one window of the study (so every path sees the
same load), times the windows each path runs on the study.

``train-step``: seconds per training step with and without bf16 autocast, alternating.

``agreement``: on a trained run, predicts cases with the new default, with each step turned off and
with the old path, and reports the label Dice between them and the lesions each finds.

Both print one JSON object (with ``lscpu`` model, bf16 flags and the load average before and after).

    python benchmarks/inference.py speed --work /tmp/wb [--modes new old monai]
    python benchmarks/inference.py agreement --run RUN_DIR --data COHORT --cases 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SHAPE, SPACING = (400, 400, 326), (2.04, 2.04, 3.0)
PATCH = (128, 128, 64)
NEW_VARIANTS = {
    "new": [],
    "new-no-skip": ["--no-skip"],
    "new-fp32": ["--precision", "fp32"],
    "new-overlap0.25": ["--overlap", "0.25"],
    "new-compiled": ["--compile"],
    "new-compiled-overlap0.25": ["--compile", "--overlap", "0.25"],
}


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )
    flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    return {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "load_average": os.getloadavg(),
    }


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return machine()["cpu"]


# ---------------------------------------------------------------------------------------- study and model
def make_study(work: Path, shape: tuple[int, int, int] = SHAPE) -> Path:
    from h2aseg.data.synthetic import generate_cohort

    root = work / ("study" if tuple(shape) == SHAPE else "study_{}x{}x{}".format(*shape))
    if not any(root.glob("*/*/SUV.nii.gz")):
        generate_cohort(
            "autopet",
            root,
            1,
            seed=7,
            pet_shape=tuple(shape),
            pet_spacing=SPACING,
            ct_spacing=SPACING,
            lesion_free_fraction=0.0,
            multi_study_fraction=0.0,
        )
    return root


def make_checkpoint(work: Path) -> Path:
    from h2aseg.checkpoint import save_checkpoint
    from h2aseg.config import RunConfig
    from h2aseg.models.registry import build_network

    path = work / "paper_width" / "best.pt"
    if not path.exists():
        config = RunConfig()
        config.train.patch = list(PATCH)
        torch.manual_seed(0)
        save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict()}, path)
    return path


# ------------------------------------------------------------------------------------------- old paths
def reference_probabilities(model, ct, pet, patch, how: str, device: str = "cpu") -> torch.Tensor:
    """(K, X, Y, Z) float32 probabilities by MONAI's sliding window: ``old``
    (the former ``predict``) or ``monai``."""
    from monai.inferers import sliding_window_inference

    from h2aseg.inference.core import class_probabilities

    volume = torch.cat(
        (
            torch.as_tensor(ct).reshape(1, 1, *ct.shape[-3:]),
            torch.as_tensor(pet).reshape(1, 1, *pet.shape[-3:]),
        ),
        dim=1,
    )
    with torch.no_grad():
        if how == "old":
            out = sliding_window_inference(
                volume,
                tuple(patch),
                2,
                lambda x: class_probabilities(model(x[:, :1], x[:, 1:]).float()),
                overlap=0.5,
                mode="gaussian",
                progress=False,
                sw_device=device,
                device="cpu",
            )
        else:  # what a user writes: the defaults, logits blended, activation after
            out = class_probabilities(
                sliding_window_inference(
                    volume,
                    tuple(patch),
                    1,
                    lambda x: model(x[:, :1], x[:, 1:]),
                    sw_device=device,
                    device="cpu",
                )
            )
    return out[0]


def run_reference(checkpoint: Path, study: Path, out: Path, how: str, device: str = "cpu") -> dict:
    """Read, preprocess, predict with :func:`reference_probabilities`, restore and write: timed by stage."""
    from h2aseg.data.io import write_image
    from h2aseg.data.layouts import discover_cases
    from h2aseg.data.preprocess import preprocess_case, restore_to_original
    from h2aseg.inference.core import probabilities_to_label
    from h2aseg.inference.predictor import load_trained_model

    loaded = load_trained_model(checkpoint, device=device)
    case = discover_cases(study, "autopet", require_labels=False).cases[0]
    stages, clock = {}, time.perf_counter()
    data = preprocess_case(case, loaded.preprocess)
    stages["read+preprocess"], clock = time.perf_counter() - clock, time.perf_counter()
    probabilities = reference_probabilities(
        loaded.model, data["ct"], data["pet"], loaded.patch_size, how, device
    )
    stages["network+blend"], clock = time.perf_counter() - clock, time.perf_counter()
    image = restore_to_original(probabilities_to_label(probabilities).numpy(), data["meta"], is_label=True)
    stages["restore"], clock = time.perf_counter() - clock, time.perf_counter()
    write_image(image, out / f"{case.case_id}.nii.gz")
    stages["write"] = time.perf_counter() - clock
    return {k: round(v, 1) for k, v in stages.items()}


def child(args) -> None:
    """One measured run in this (child) process; prints its JSON line."""
    start = time.perf_counter()
    stages = run_reference(Path(args.checkpoint), Path(args.study), Path(args.out), args.how, args.device)
    print(json.dumps({"stages": stages, "wall_s": round(time.perf_counter() - start, 1)}))


def measure(command: list[str], work: Path) -> dict:
    """Wall time and peak RSS of one child process: a small Python wrapper runs the command and reads
    its own ``RUSAGE_CHILDREN`` high-water mark, i.e. the command's alone (as GNU ``time -f %M`` would,
    without needing ``/usr/bin/time``, which GPU images often lack)."""
    report = work / "peak_rss_kib.txt"
    wrapper = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[2:]); "
        "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
        "sys.exit(done.returncode)"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", wrapper, str(report), *command], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak_kib = int(report.read_text().split()[-1])
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak_kib / 1024**2, 2),
        "stdout": done.stdout.strip().splitlines()[-3:],
    }


def speed(args) -> None:
    work = Path(args.work)
    study = make_study(work, tuple(args.shape))
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(work)
    results = {
        "machine_before": machine(),
        "checkpoint": str(checkpoint),
        "device": device_name(args.device),
        "study": str(study),
        "grid": tuple(args.shape),
        "spacing": SPACING,
        "network": "h2aseg 8-128, 128x128x64" if not args.checkpoint else "see checkpoint",
        "runs": {},
    }
    for mode in args.modes:
        out = work / "out" / (mode if not args.checkpoint else f"{mode}-{Path(args.checkpoint).name}")
        if mode in NEW_VARIANTS:
            command = [
                sys.executable,
                "-m",
                "h2aseg",
                "predict",
                "--model",
                str(checkpoint),
                "--input",
                str(study),
                "--layout",
                "autopet",
                "--out",
                str(out),
                "--timings",
                "--no-progress",
                "--device",
                args.device,
                *NEW_VARIANTS[mode],
            ]
        else:
            command = [
                sys.executable,
                __file__,
                "child",
                "--how",
                mode,
                "--checkpoint",
                str(checkpoint),
                "--study",
                str(study),
                "--out",
                str(out),
                "--device",
                args.device,
            ]
        try:
            results["runs"][mode] = measure(command, work)
        except RuntimeError as err:  # one failing path is reported; the others are still measured
            results["runs"][mode] = {"error": str(err)[-600:]}
        results["runs"][mode]["load_average_after"] = os.getloadavg()
        print(json.dumps({mode: results["runs"][mode]}), file=sys.stderr, flush=True)
    timed = {m: run["wall_s"] for m, run in results["runs"].items() if "wall_s" in run}
    if "new" in timed:
        results["speedup_vs"] = {m: round(t / timed["new"], 2) for m, t in timed.items() if m != "new"}
    results["machine_after"] = machine()
    print(json.dumps(results, indent=1))


# ----------------------------------------------------------------------------- per-window costs, interleaved
#: Network configurations of the paths: (autocast dtype, windows per call, channels-last).
#: Windows per call 0: the core's default for the patch.
PATH_NETWORKS = {
    "new": (torch.bfloat16, 0, False),
    "new-fp32": (None, 0, False),
    "new-channels-last": (torch.bfloat16, 0, True),
    "old": (None, 2, False),
    "monai": (None, 1, False),
}
#: On CUDA also fp16, and cuDNN's autotuner (``torch.backends.cudnn.benchmark``, off in h2aseg) on the two
#: precisions of the default path.
CUDA_PATH_NETWORKS = {
    "new-fp16": (torch.float16, 0, False),
    "new+cudnn-benchmark": (torch.bfloat16, 0, False),
    "new-fp32+cudnn-benchmark": (None, 0, False),
}


def window_counts(pet: np.ndarray, patch, suv_scale: float) -> dict:
    """Windows each path runs on this study (the core's placement = MONAI's; skipping at the default SUV)."""
    from h2aseg.inference.core import DEFAULT_OVERLAP, DEFAULT_SKIP_SUV, window_starts

    counts = {}
    for name, overlap, skip in (
        ("new", DEFAULT_OVERLAP, True),
        ("new-no-skip", DEFAULT_OVERLAP, False),
        ("new-overlap0.25", 0.25, True),
        ("old", 0.5, False),
        ("monai", 0.25, False),
    ):
        starts = [window_starts(n, p, overlap) for n, p in zip(pet.shape, patch)]
        total = run = 0
        for x in starts[0]:
            for y in starts[1]:
                for z in starts[2]:
                    total += 1
                    window = pet[x : x + patch[0], y : y + patch[1], z : z + patch[2]]
                    run += (not skip) or float(window.max()) * suv_scale >= DEFAULT_SKIP_SUV
        counts[name] = {"windows": total, "run": int(run)}
    return counts


def _timed_calls(model, inputs: torch.Tensor, repeat: int, dtype, device: str) -> float:
    """Seconds for ``repeat`` calls of ``model`` on ``inputs`` (CUDA: synchronised before and after)."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    clock = time.perf_counter()
    with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
        for _ in range(repeat):
            model(inputs[:, :1], inputs[:, 1:])
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - clock


def windows(args) -> None:
    """Per-window network seconds of each path, measured round-robin (same load for all),
    and window counts."""
    from h2aseg.data.layouts import discover_cases
    from h2aseg.data.preprocess import preprocess_case
    from h2aseg.inference.core import InferenceSettings
    from h2aseg.inference.predictor import load_trained_model

    work = Path(args.work)
    study = make_study(work, tuple(args.shape))
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(work)
    results = {"machine_before": machine(), "threads": torch.get_num_threads(), "checkpoint": str(checkpoint)}
    results["device"] = device_name(args.device)
    loaded = load_trained_model(checkpoint, device=args.device)
    patch = loaded.patch_size
    results["network"] = f"{loaded.config.model.name} {loaded.config.model.options}, windows {patch}"
    clock = time.perf_counter()
    data = preprocess_case(discover_cases(study, "autopet", require_labels=False).cases[0], loaded.preprocess)
    results["read+preprocess_s"] = round(time.perf_counter() - clock, 1)
    ct, pet = data["ct"][0], data["pet"][0]
    results["grid_after_crop"] = list(pet.shape)
    results["counts"] = window_counts(pet, patch, loaded.preprocess.suv_scale)
    short = [(0, max(0, p - n)) for n, p in zip(pet.shape, patch)]  # a small study: padded to one window
    ct, pet = np.pad(ct, short, mode="edge"), np.pad(pet, short, mode="edge")
    # a body window in the middle of the study (what the network sees most)
    x, y, z = ((n - p) // 2 for n, p in zip(pet.shape, patch))
    window = torch.stack(
        [torch.from_numpy(a[x : x + patch[0], y : y + patch[1], z : z + patch[2]].copy()) for a in (ct, pet)]
    )[None].to(args.device)
    model = loaded.model
    paths = dict(PATH_NETWORKS)
    if args.device.startswith("cuda"):
        paths.update(CUDA_PATH_NETWORKS)
    seconds = {name: [] for name in paths}
    with torch.inference_mode():
        _timed_calls(model, window, 1, None, args.device)  # first call: allocations, kernel loading
        repeat = max(1, int(args.min_seconds / max(_timed_calls(model, window, 1, None, args.device), 1e-3)))
        results["calls_per_measurement"] = repeat
        for round_ in range(args.rounds + 1):
            for name, (dtype, batch, channels_last) in paths.items():
                torch.backends.cudnn.benchmark = name.endswith("+cudnn-benchmark")
                # the core's default number of windows a call for this patch on this device
                batch = batch or InferenceSettings(patch, device=args.device).windows_per_call
                layout = torch.channels_last_3d if channels_last else torch.contiguous_format
                model = model.to(memory_format=layout)
                inputs = window.expand(batch, -1, -1, -1, -1).contiguous(memory_format=layout)
                elapsed = _timed_calls(model, inputs, repeat, dtype, args.device)
                if round_:  # round 0 warms every configuration up
                    seconds[name].append(elapsed / batch / repeat)
    per_window = {name: round(float(np.median(v)), 4) for name, v in seconds.items()}
    results["seconds_per_window_median"] = per_window
    results["seconds_per_window_all"] = {k: [round(t, 4) for t in v] for k, v in seconds.items()}
    counts = results["counts"]
    network = {
        "new": counts["new"]["run"] * per_window["new"],
        "new-no-skip": counts["new-no-skip"]["run"] * per_window["new"],
        "new-overlap0.25": counts["new-overlap0.25"]["run"] * per_window["new"],
        "new-fp32": counts["new"]["run"] * per_window["new-fp32"],
        "old": counts["old"]["run"] * per_window["old"],
        "monai": counts["monai"]["run"] * per_window["monai"],
    }
    results["network_seconds_projected"] = {k: round(v, 1) for k, v in network.items()}
    results["network_ratio_vs_new"] = {k: round(v / network["new"], 2) for k, v in network.items()}
    results["machine_after"] = machine()
    print(json.dumps(results, indent=1))


# ------------------------------------------------------------------------------------ training precision
def train_step(args) -> None:
    """Seconds per training step (forward, deep-supervision loss, backward, fused Adam) with and without
    bf16 autocast (what ``h2aseg train --amp on`` does on this CPU), alternating step by step."""
    from h2aseg.inference.precision import training_autocast_dtype
    from h2aseg.models.registry import build_model, model_options_for
    from h2aseg.training.losses import DeepSupervisionLoss
    from h2aseg.training.trainer import build_optimizer

    patch, channels = tuple(args.patch), list(args.channels)
    dtype = training_autocast_dtype("on", "cpu")
    setups = {}
    for name, autocast in (("fp32", None), ("amp", dtype)):
        torch.manual_seed(0)
        model = build_model("h2aseg", **model_options_for("h2aseg", {"channels": channels}, patch)).train()
        scaler = torch.amp.GradScaler(
            "cpu", enabled=autocast is not None
        )  # as the trainer: skips non-finite steps
        setups[name] = (model, build_optimizer(model, 1e-3, 1e-5), autocast, scaler)
    loss_fn = DeepSupervisionLoss(1)
    generator = torch.Generator().manual_seed(0)
    ct, pet = (torch.rand(args.batch, 1, *patch, generator=generator) for _ in range(2))
    label = (torch.rand(args.batch, 1, *patch, generator=generator) > 0.9).float()
    seconds: dict[str, list[float]] = {name: [] for name in setups}
    losses: dict[str, list[float]] = {name: [] for name in setups}
    for step in range(args.steps + 2):
        for name, (model, optimizer, autocast, scaler) in setups.items():
            clock = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=autocast or torch.float32, enabled=autocast is not None):
                outputs = model(ct, pet)
            loss = loss_fn([o.float() for o in outputs], label)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if step >= 2:  # two warm-up steps each
                seconds[name].append(time.perf_counter() - clock)
                losses[name].append(round(loss.item(), 4))
    median = {k: round(float(np.median(v)), 3) for k, v in seconds.items()}
    print(
        json.dumps(
            {
                "machine": machine(),
                "threads": torch.get_num_threads(),
                "patch": patch,
                "channels": channels,
                "batch": args.batch,
                "amp_dtype": str(dtype),
                "seconds_per_step_median": median,
                "fp32_over_amp": round(median["fp32"] / median["amp"], 2),
                "losses": losses,
            },
            indent=1,
        )
    )


# ------------------------------------------------------------------------------------------ agreement
def lesions_found(reference: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(components of ``reference`` touched by ``other``, components of ``reference``), 26-connected."""
    from scipy import ndimage

    components, n = ndimage.label(reference, structure=np.ones((3, 3, 3)))
    hit = np.unique(components[(components > 0) & other])
    return len(hit), n


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def agreement(args) -> None:
    import dataclasses

    from h2aseg.data.layouts import discover_cases
    from h2aseg.data.preprocess import preprocess_case
    from h2aseg.inference.core import InferenceStats, predict_probabilities, probabilities_to_label
    from h2aseg.inference.predictor import PredictOptions, inference_settings, load_trained_model

    loaded = load_trained_model(Path(args.run))
    plain = load_trained_model(Path(args.run), channels_last=False)
    base = inference_settings(loaded, PredictOptions())
    if args.overlap is not None:  # compare the fast path's precision and skipping at another overlap
        base = dataclasses.replace(base, overlap=args.overlap)
    variants = {
        "new": base,
        "no-skip": dataclasses.replace(base, skip_suv=None),
        "fp32": dataclasses.replace(base, precision="fp32"),
        "exhaustive-fp32": dataclasses.replace(base, precision="fp32", skip_suv=None),
        "overlap0.5": dataclasses.replace(base, overlap=0.5),
    }
    variants = {k: v for k, v in variants.items() if k == "new" or k in args.variants}
    splits_file = Path(args.run) / "splits.json"
    cases = {c.case_id: c for c in discover_cases(Path(args.data), "auto", require_labels=True).cases}
    ids = json.loads(splits_file.read_text())["test"] if splits_file.exists() else sorted(cases)
    ids = ([i for i in ids if i in cases] or sorted(cases))[: args.cases]  # another cohort: all its cases
    rows, seconds = [], {name: 0.0 for name in [*variants, "old"]}
    for case_id in ids:
        data = preprocess_case(cases[case_id], loaded.preprocess)
        labels, windows = {}, {}
        for name, settings in variants.items():
            stats, clock = InferenceStats(), time.perf_counter()
            labels[name] = (
                probabilities_to_label(
                    predict_probabilities(loaded.model, data["ct"], data["pet"], settings, stats)
                ).numpy()
                > 0
            )
            seconds[name] += time.perf_counter() - clock
            windows[name] = f"{stats.windows_run}/{stats.windows}"
        if "old" in args.variants:
            clock = time.perf_counter()
            labels["old"] = (
                probabilities_to_label(
                    reference_probabilities(plain.model, data["ct"], data["pet"], loaded.patch_size, "old")
                ).numpy()
                > 0
            )
            seconds["old"] += time.perf_counter() - clock
        truth = data["label"][0] > 0
        row = {
            "case": case_id,
            "truth_voxels": int(truth.sum()),
            "windows_run": windows["new"],
            "windows_run_all": dict(windows),
        }
        for name in labels:
            if name != "new":
                row[f"dice_new_vs_{name}"] = round(dice(labels["new"], labels[name]), 4)
            found, total = lesions_found(labels[name], labels["new"])
            row[f"{name}_lesions_found_by_new"] = f"{found}/{total}"
            row[f"dice_truth_{name}"] = round(dice(labels[name], truth), 4)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k.startswith("dice")}
    positive = [r for r in rows if r["truth_voxels"] > 0]
    summary_positive = (
        {k: round(float(np.mean([r[k] for r in positive])), 4) for k in rows[0] if k.startswith("dice_truth")}
        if positive
        else {}
    )
    print(
        json.dumps(
            {
                "machine": machine(),
                "run": args.run,
                "data": args.data,
                "cases": len(rows),
                "settings": dataclasses.asdict(base),
                "mean": summary,
                "mean_lesion_positive": summary_positive,
                "lesion_positive_cases": len(positive),
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
                "per_case": rows,
            },
            indent=1,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument(
        "--work", default="/tmp/h2aseg_inference_bench", help="study, checkpoint and outputs go here"
    )
    p.add_argument(
        "--modes", nargs="+", default=["new", "old", "monai"], choices=[*NEW_VARIANTS, "old", "monai"]
    )
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (every path on it; probabilities gathered on the CPU)"
    )
    p.add_argument(
        "--checkpoint", help="a trained run or checkpoint (default: paper-width H2ASeg, random weights)"
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=list(SHAPE),
        help="PET grid of the synthetic study (default: the AutoPET grid 400 400 326; smaller for a dry run)",
    )
    p.set_defaults(func=speed)
    p = sub.add_parser("windows")
    p.add_argument("--work", default="/tmp/h2aseg_inference_bench")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--shape", type=int, nargs=3, default=list(SHAPE), help="PET grid of the synthetic study")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--checkpoint", help="a trained run or checkpoint (default: paper-width H2ASeg, random weights)"
    )
    p.add_argument(
        "--min-seconds", type=float, default=2.0, help="repeat small networks' calls to about this long"
    )
    p.set_defaults(func=windows)
    p = sub.add_parser("train-step")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 32, 32])
    p.add_argument("--channels", type=int, nargs=5, default=[4, 8, 16, 32, 64])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=8)
    p.set_defaults(func=train_step)
    p = sub.add_parser("agreement")
    p.add_argument("--run", required=True, help="trained run folder (best.pt or last.pt)")
    p.add_argument("--data", required=True, help="its cohort; the run's test split is used when it has one")
    p.add_argument("--cases", type=int, default=8)
    p.add_argument(
        "--overlap", type=float, default=None, help="overlap of 'new' (default: the core's default)"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["no-skip", "fp32", "exhaustive-fp32", "overlap0.5", "old"],
        help="compared with the new default",
    )
    p.set_defaults(func=agreement)
    p = sub.add_parser("child")
    for name in ("--how", "--checkpoint", "--study", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=child)
    args = parser.parse_args()
    from h2aseg.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI does
    args.func(args)


if __name__ == "__main__":
    main()
