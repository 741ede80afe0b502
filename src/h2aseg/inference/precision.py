"""Reduced precision for inference and training: which autocast dtype a device runs fast.

``precision`` values (``h2aseg predict --precision``, :class:`h2aseg.inference.core.InferenceSettings`):

- ``auto``: bf16 autocast on CPUs with native bf16 instructions (AVX512-BF16 or AMX-BF16 in the
  kernel's CPU flags; 0.99 s a paper-width 128×128×64 window against 1.68 s in fp32 on a 2-core EPYC);
  fp32 everywhere else, CUDA included: on an H100 (PyTorch 2.11, cuDNN's default TF32 convolutions) the
  paper-width H2ASeg took 11.8 ms a window in fp32, 14.6 ms with bf16 autocast and 11.4 ms with fp16
  (``benchmarks/results/gpu.md``), so autocast buys nothing there; ask for ``bf16``/``fp16`` explicitly.
- ``fp32``: no autocast.
- ``bf16`` / ``fp16``: that autocast dtype (fp16 only on CUDA; bf16 on a CPU without native bf16 is
  emulated by oneDNN and usually slower than fp32, so ``auto`` does not choose it there).

Autocast runs convolutions and matrix products in the reduced dtype and keeps reductions, softmax and
normalisation statistics in fp32; the networks' logits are cast to fp32 before the sigmoid/softmax.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch

from h2aseg.errors import ConfigError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU flags list AVX512-BF16 or AMX-BF16
    (Linux ``/proc/cpuinfo``; elsewhere oneDNN's check)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(checker()) if checker is not None else False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means fp32 (no autocast)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    kind = torch.device(device).type
    if precision == "fp32":
        return None
    if precision == "auto":  # measured: see the module docstring
        return torch.bfloat16 if kind == "cpu" and cpu_has_native_bf16() else None
    if precision == "fp16" and kind != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return _DTYPES[precision]


def training_autocast_dtype(amp: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype of ``h2aseg train --amp``: on CUDA fp16 (with the gradient scaler) for ``auto``/``on``;
    on the CPU bf16 for ``on`` where the CPU has native bf16 (else fp32, with a warning); None when off."""
    kind = torch.device(device).type
    if amp == "off" or (amp == "auto" and kind != "cuda"):
        return None
    if kind == "cuda":
        return torch.float16
    if kind == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    logger.warning("--amp on: this %s has no native bf16 instructions; training in fp32", kind)
    return None
