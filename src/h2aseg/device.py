"""Which torch device a run uses: one rule for training, inference and the benchmark runner."""

from __future__ import annotations

import torch

__all__ = ["pick_device"]


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """The device for ``requested`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    ``"auto"`` is ``cuda:<local_rank>`` when CUDA is available and the CPU otherwise; a bare ``"cuda"``
    gets the index ``local_rank`` (the process's GPU under torchrun; 0 in a plain run).
    """
    if requested == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device
