"""Training-step speed and peak memory of a registered network (not a test).

Prints one JSON object: per patch size, the median time of forward + backward + Adam step over
``--repeats`` steps after ``--warmup`` steps, peak memory (CUDA: max allocated; CPU: growth of the
process's peak RSS during the run), and the parameter count.

    python benchmarks/speed.py --model h2aseg --patches 64,64,32 128,128,64 --batch 2
    # the CPU recipe's network (channels 4-64, MCSA gates) and a variant of it, one thread
    OMP_NUM_THREADS=1 python benchmarks/speed.py --model h2aseg --protocol cpu --patches 32,32,32 \
        --channels-last --model-options '{"mcsa_levels": [3, 4, 5]}'
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import resource
import statistics
import sys
import time

import torch

from h2aseg.models.registry import build_model, get_entry, model_options_for
from h2aseg.runtime import keep_freed_memory
from h2aseg.training.losses import DeepSupervisionLoss
from h2aseg.training.protocols import PROTOCOLS, protocol_model_options
from h2aseg.training.trainer import build_optimizer


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def training_step(
    name: str,
    patch: tuple[int, int, int],
    batch: int,
    device: str,
    channels_last: bool = False,
    compile_backend: str = "",
    compile_options: dict | None = None,
    options: dict | None = None,
):
    """(model, step): a registered network as ``h2aseg train`` steps it (fused Adam, the Eq. 5 loss) and a
    function running one forward + backward + optimizer step on a fixed random batch of ``batch`` patches."""
    torch.manual_seed(0)
    model = build_model(name, **model_options_for(name, options or {}, patch)).to(device).train()
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=1e-5)  # what `h2aseg train` steps with
    loss_fn = DeepSupervisionLoss(1)
    network = (
        torch.compile(model, backend=compile_backend, options=compile_options or None)
        if compile_backend
        else model
    )
    ct = torch.randn(batch, 1, *patch, device=device).contiguous(memory_format=layout)
    pet = torch.randn(batch, 1, *patch, device=device).contiguous(memory_format=layout)
    label = (torch.rand(batch, 1, *patch, device=device) > 0.9).float()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(network(ct, pet), label)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return model, step


def time_steps(
    name: str,
    patch: tuple[int, int, int],
    batch: int,
    warmup: int,
    repeats: int,
    device: str,
    channels_last: bool = False,
    compile_backend: str = "",
    compile_options: dict | None = None,
    options: dict | None = None,
    profile_rows: int = 0,
) -> dict:
    model, train_step = training_step(
        name, patch, batch, device, channels_last, compile_backend, compile_options, options
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_rss_mib()
    times, first_step_s = [], None
    for step in range(warmup + repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_step()
        if step == 0:
            first_step_s = time.perf_counter() - start  # includes compilation when compiling
        if step >= warmup:
            times.append(time.perf_counter() - start)
    if profile_rows:
        print_profile(train_step, repeats, profile_rows)
    result = {
        "patch": list(patch),
        "channels_last": channels_last,
        "compile": compile_backend or None,
        "compile_options": compile_options or None,
        "first_step_s": round(first_step_s, 1),
        "batch": batch,
        "median_step_s": round(statistics.median(times), 4),
        "min_step_s": round(min(times), 4),
        "steps_timed": repeats,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if device == "cuda":
        result["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        result["peak_rss_mib"] = round(peak_rss_mib(), 1)
        result["peak_rss_growth_mib"] = round(peak_rss_mib() - rss_before, 1)
    return result


def print_profile(train_step, repeats: int, rows: int) -> None:
    """Run ``repeats`` more steps under torch.profiler; print the ``rows`` operators with the most own time
    (milliseconds per step) to stderr, so stdout stays JSON."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            train_step()
    averages = prof.key_averages()
    total_ms = averages.self_cpu_time_total / repeats / 1000
    print(f"profile: {total_ms:.1f} ms a step (CPU time, profiler on); most own time:", file=sys.stderr)
    for row in sorted(averages, key=lambda r: -r.self_cpu_time_total)[:rows]:
        ms = row.self_cpu_time_total / repeats / 1000
        print(f"  {row.key[:60]:60s} {ms:7.1f} ms  {row.count // repeats:4d} calls", file=sys.stderr)


def parse_option(text: str) -> tuple[str, object]:
    """'key=value' -> (key, value), the value read as a Python literal where it is one (True, 4, 0.5)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--compile-option wants KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="h2aseg")
    parser.add_argument("--patches", nargs="+", default=["64,64,32", "128,128,64"])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory layout")
    parser.add_argument(
        "--compile",
        default="",
        metavar="BACKEND",
        help="torch.compile the network with this backend, e.g. inductor (default: eager PyTorch)",
    )
    parser.add_argument(
        "--compile-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an inductor option for torch.compile, e.g. aggressive_fusion=True (repeatable)",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's malloc as it is (default: h2aseg.runtime.keep_freed_memory, as the CLI does)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="build the network with the options this training protocol gives it (default: its own)",
    )
    parser.add_argument(
        "--model-options",
        default="{}",
        metavar="JSON",
        help="network keywords as a JSON object, over the protocol's, e.g. '{\"mcsa_levels\": [3, 4, 5]}'",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="profile --repeats more steps after timing; print the ROWS costliest operators (0: off)",
    )
    args = parser.parse_args()
    get_entry(args.model)
    try:
        extra = json.loads(args.model_options)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--model-options is not JSON: {err}") from None
    if not isinstance(extra, dict):
        raise SystemExit(f"--model-options must be a JSON object, got {args.model_options!r}")
    options = {**protocol_model_options(args.protocol, args.model), **extra}  # {} without --protocol
    compile_options = dict(parse_option(text) for text in args.compile_option)
    kept = False if args.system_malloc else keep_freed_memory()
    report = {
        "model": args.model,
        "model_options": options,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "keep_freed_memory": kept,
        "results": [],
    }
    for text in args.patches:
        patch = tuple(int(v) for v in text.split(","))
        report["results"].append(
            time_steps(
                args.model,
                patch,
                args.batch,
                args.warmup,
                args.repeats,
                args.device,
                args.channels_last,
                args.compile,
                compile_options,
                options,
                args.profile,
            )
        )
        print(json.dumps(report["results"][-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
