"""Helpers shared by the Table 1 baselines: argument checks and the CT/PET input contract.

Every baseline is called as ``model(ct, pet)`` with two tensors of shape (B, in_channels, H, W, D),
D the axial axis. Networks that read both modalities through one input layer (early fusion) stack them
as channels in the order (CT, PET), the channel order of the nnU-Net raw layout (``_0000`` CT,
``_0001`` PET).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Size3 = tuple[int, int, int]


def check_pair(ct: torch.Tensor, pet: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``ct`` and ``pet`` are 5-D tensors of one shape."""
    if ct.dim() != 5 or ct.shape != pet.shape:
        raise ValueError(
            "ct and pet must be tensors of one shape (B, C, H, W, D); "
            f"got {tuple(ct.shape)} and {tuple(pet.shape)}"
        )


def early_fusion(ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W, D) twice -> (B, 2C, H, W, D) with CT channels first."""
    check_pair(ct, pet)
    return torch.cat([ct, pet], dim=1)


def check_positive(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_dropout(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {value!r}")


def check_common(in_channels: int, num_classes: int, dropout: float) -> None:
    """The checks every baseline factory starts with: positive channel counts, dropout in [0, 1)."""
    check_positive("in_channels", in_channels)
    check_positive("num_classes", num_classes)
    check_dropout(dropout)


def check_channels(channels: Sequence[int], levels: int | None = None) -> tuple[int, ...]:
    """Validate a per-level channel tuple (positive integers, ``levels`` of them when given)."""
    channels = tuple(channels)
    if levels is not None and len(channels) != levels:
        raise ValueError(f"channels must give {levels} widths, one per level, got {channels}")
    if len(channels) < 2 or any(int(c) != c or c < 1 for c in channels):
        raise ValueError(f"channels must be at least two positive integers, got {channels}")
    return tuple(int(c) for c in channels)


def as_size3(patch_size: Sequence[int] | int, name: str = "patch_size") -> Size3:
    """(H, W, D) from an int or a sequence of three positive ints."""
    if isinstance(patch_size, int):
        patch_size = (patch_size,) * 3
    size = tuple(int(s) for s in patch_size)
    if len(size) != 3 or any(s < 1 for s in size):
        raise ValueError(f"{name} must be three positive sizes (H, W, D), got {patch_size!r}")
    return size  # type: ignore[return-value]


def check_divisible(patch_size: Size3, divisor: int, network: str) -> None:
    """Raise ``ValueError`` unless every side of ``patch_size`` is a multiple of ``divisor``."""
    if any(s % divisor for s in patch_size):
        raise ValueError(
            f"{network} needs every side of the patch to be a multiple of {divisor}; "
            f"got patch_size={patch_size}"
        )
