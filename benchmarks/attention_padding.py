"""BDSA's zero-padded narrow attention heads against unpadded ones, side by side in one process (not a test).

``h2aseg.models.bdsa.attention`` pads heads narrower than 16 channels to 16 on AVX-512 CPUs. This times
(1) the attention alone at the shape of the cpu recipe's level-2 MCSA (32 windows × 4 heads × 256 tokens ×
8 channels, forward + backward) and (2) whole training steps of the cpu recipe's H2ASeg, padding on and off
in alternating rounds so machine drift hits both, and prints one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/attention_padding.py --rounds 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from speed import training_step  # benchmarks/speed.py: the network as `h2aseg train` steps it

from h2aseg.models import bdsa
from h2aseg.training.protocols import protocol_model_options

PATCH = (32, 32, 32)


def attention_step(padded: bool, shape=(32, 4, 256, 8)) -> float:
    """Seconds for one forward + backward of ``bdsa.attention`` at ``shape`` (B, heads, N, C)."""
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    bdsa.AVX512_CPU = padded
    start = time.perf_counter()
    bdsa.attention(q, k, v, 0.0).sum().backward()
    return time.perf_counter() - start


def training_steps(rounds: int, warmup: int) -> dict[str, list[float]]:
    """Per padding setting, the seconds of each timed H2ASeg training step (32³, batch 2, channels-last)."""
    options = protocol_model_options("cpu", "h2aseg")
    _, step = training_step("h2aseg", PATCH, 2, "cpu", channels_last=True, options=options)
    times: dict[str, list[float]] = {"padded": [], "unpadded": []}
    for round_index in range(warmup + rounds):
        for setting in ("padded", "unpadded"):
            bdsa.AVX512_CPU = setting == "padded"
            start = time.perf_counter()
            step()
            if round_index >= warmup:
                times[setting].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=12, help="timed rounds per setting (default %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default %(default)s)")
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()
    detected = bdsa.AVX512_CPU
    try:  # both settings forced on whatever CPU this is, then the detected one restored
        attention = {
            setting: 1000 * statistics.median(attention_step(setting == "padded") for _ in range(args.rounds))
            for setting in ("unpadded", "padded")
        }
        steps = training_steps(args.rounds, args.warmup)
    finally:
        bdsa.AVX512_CPU = detected
    step_ms = {setting: 1000 * statistics.median(values) for setting, values in steps.items()}
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "cpu_capability": capability,
                "threads": torch.get_num_threads(),
                "rounds": args.rounds,
                "attention_level2_ms": {k: round(v, 1) for k, v in attention.items()},
                "attention_ratio_padded_over_unpadded": round(attention["padded"] / attention["unpadded"], 3),
                "h2aseg_step_ms": {k: round(v, 1) for k, v in step_ms.items()},
                "h2aseg_step_ratio_padded_over_unpadded": round(step_ms["padded"] / step_ms["unpadded"], 3),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
