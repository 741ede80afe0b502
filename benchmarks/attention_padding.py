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
import torch.nn.functional as F

from h2aseg.models import bdsa
from h2aseg.models.registry import build_model, model_options_for
from h2aseg.training.losses import DeepSupervisionLoss
from h2aseg.training.protocols import protocol_model_options
from h2aseg.training.trainer import build_optimizer

PATCH = (32, 32, 32)


def attention_step(padded: bool, shape=(32, 4, 256, 8)) -> float:
    """Seconds for one forward + backward of the attention at ``shape`` (B, heads, N, C)."""
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    start = time.perf_counter()
    out = bdsa.attention(q, k, v, 0.0) if padded else F.scaled_dot_product_attention(q, k, v)
    out.sum().backward()
    return time.perf_counter() - start


def training_steps(rounds: int, warmup: int) -> dict[str, list[float]]:
    """Per padding setting, the seconds of each timed H2ASeg training step (32³, batch 2, channels-last)."""
    torch.manual_seed(0)
    model = build_model(
        "h2aseg", **model_options_for("h2aseg", protocol_model_options("cpu", "h2aseg"), PATCH)
    )
    model = model.train().to(memory_format=torch.channels_last_3d)
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=1e-5)
    loss_fn = DeepSupervisionLoss(1)
    ct, pet = (torch.randn(2, 1, *PATCH).contiguous(memory_format=torch.channels_last_3d) for _ in range(2))
    label = (torch.rand(2, 1, *PATCH) > 0.95).float()
    times: dict[str, list[float]] = {"padded": [], "unpadded": []}
    for round_index in range(warmup + rounds):
        for setting in ("padded", "unpadded"):
            bdsa.AVX512_CPU = setting == "padded"
            start = time.perf_counter()
            loss = loss_fn(model(ct, pet), label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
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
    attention = {
        setting: 1000 * statistics.median(attention_step(setting == "padded") for _ in range(args.rounds))
        for setting in ("unpadded", "padded")
    }
    steps = training_steps(args.rounds, args.warmup)
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
