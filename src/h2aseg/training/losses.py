"""Losses: BCE + Dice (binary) or CE + Dice (multi-class), and the deep-supervision sum of Eq. 5.

Eq. 5 of the paper: L = Σ_{k=1..5} (6 − k)·(L_bce(P^k, GT) + L_dice(P^k, GT)), every P^k up-sampled
(trilinear, on logits) to the label size. :class:`DeepSupervisionLoss` is a thin wrapper that weights one
loss over several outputs (nnU-Net's pattern); the weights are (5, 4, 3, 2, 1) for the five levels and
the first ``len(outputs)`` are used when a network has fewer outputs. A single tensor is treated as
one output with weight 1.

The Dice term is MONAI's ``DiceLoss`` with ``batch=True``: intersections and sums are pooled over the
batch before the ratio, so a patch without foreground (RandCropByPosNegLabel's negative samples) does
not contribute an undefined ratio of its own.

``kind`` picks the per-output loss (:data:`LOSS_KINDS`; ``TrainConfig.loss``):

- ``paper`` (default): the above; Eq. 5's BCE for one sigmoid channel, CE + Dice over the foreground
  classes for K > 1; outputs up-sampled with ``align_corners=False``.
- ``release``: what the authors' ``train.py`` optimises: softmax cross-entropy + MONAI ``DiceLoss(softmax,
  to_onehot_y, include_background=True)`` with the Dice ratio per patch and class (``batch=False``), on a
  network with a background channel (K ≥ 2); outputs up-sampled with ``align_corners=True`` as the
  release's network does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from h2aseg.errors import ConfigError

PAPER_WEIGHTS: tuple[float, ...] = (5.0, 4.0, 3.0, 2.0, 1.0)
#: Per-output loss kinds (see the module docstring).
LOSS_KINDS: tuple[str, ...] = ("paper", "release")


class SegmentationLoss(nn.Module):
    """BCE + Dice on one sigmoid channel, or CE + Dice on softmax for num_classes > 1 (``kind="paper"``);
    softmax CE + per-patch Dice including background (``kind="release"``, any K ≥ 2).

    Shapes: logits (B, K, H, W, D), target (B, 1, H, W, D) with values in 0..K-1 (0/1 when K = 1).
    """

    def __init__(self, num_classes: int = 1, kind: str = "paper") -> None:
        super().__init__()
        if kind not in LOSS_KINDS:
            raise ConfigError(f"unknown loss {kind!r}: choose one of {', '.join(LOSS_KINDS)}")
        self.num_classes, self.kind = num_classes, kind
        if kind == "release":
            self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=True)
        elif num_classes == 1:
            self.dice = DiceLoss(sigmoid=True, batch=True)
        else:
            self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=False, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.to(logits.dtype)
        softmax = self.kind == "release" or self.num_classes > 1
        if self.kind == "release" and logits.shape[1] < 2:
            raise ConfigError("loss 'release' needs a network with a background channel: set num_classes 2")
        if not softmax and logits.shape[1] != 1:
            raise ConfigError(
                f"the network gives {logits.shape[1]} output channels, the binary loss needs 1: "
                "train h2aseg_release with --protocol release (or --loss release)"
            )
        if softmax:
            overlap = F.cross_entropy(logits, target[:, 0].long())
        else:
            overlap = F.binary_cross_entropy_with_logits(logits, target)
        return overlap + self.dice(logits, target)


class DeepSupervisionLoss(nn.Module):
    """Σ_k w_k · loss(up(P^k), GT) over the outputs, full resolution first (Eq. 5 with w = 5, 4, 3, 2, 1)."""

    def __init__(
        self, num_classes: int = 1, weights: Sequence[float] = PAPER_WEIGHTS, kind: str = "paper"
    ) -> None:
        super().__init__()
        self.loss = SegmentationLoss(num_classes, kind)
        self.align_corners = kind == "release"
        self.weights = tuple(float(w) for w in weights)

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        if len(outputs) > len(self.weights):
            raise ValueError(f"{len(outputs)} outputs but only {len(self.weights)} deep-supervision weights")
        total = outputs[0].new_zeros(())
        for weight, logits in zip(self.weights, outputs):
            if logits.shape[2:] != target.shape[2:]:
                logits = F.interpolate(
                    logits, size=target.shape[2:], mode="trilinear", align_corners=self.align_corners
                )
            total = total + weight * self.loss(logits, target)
        return total
