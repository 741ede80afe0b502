"""A2FSeg (Wang & Hong, MICCAI 2023) for CT and PET, written from the paper's description.

The paper: one encoder-decoder per modality yields modality-specific features and predictions; fusion
comes in two stages, an *average fusion* (the mean of the modality-specific features, refined and
segmented) and an *adaptive fusion* (attention maps computed from each modality's feature together with
the averaged one, normalised across modalities by a softmax, weight the modality features voxel by
voxel). Every prediction is supervised. ::

    CT  -> Enc_ct  -> Dec_ct  -> F_ct  --+-- head_ct -------------------------------> P_ct
    PET -> Enc_pet -> Dec_pet -> F_pet --+-- head_pet ------------------------------> P_pet
                                         +-- mean -> A ---- head_avg ---------------> P_avg
                                         +-- softmax_m(att(F_m, A)) · F_m -> head --> P (the output)

Simplified: each branch is the ResUNet-3D of this package (the paper's branches are nnU-Nets, with their
own multi-scale deep supervision, which is not kept); missing-modality training (the paper's main
setting) is left out, PET/CT studies always have both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from h2aseg.models.baselines._common import (
    check_channels,
    check_common,
    check_pair,
)
from h2aseg.models.blocks import ResidualBlock, ResidualDecoder, ResidualEncoder
from h2aseg.models.registry import register_model

MODALITIES = ("ct", "pet")


class A2FSeg(nn.Module):
    """A2FSeg's average and adaptive fusion over two ResUNet-3D branches (see the module docstring).

    Args:
        in_channels: channels per modality (1).
        num_classes: output channels (logits).
        channels: widths of each branch's levels (each level after the first halves the size).
        dropout: ``Dropout3d`` probability inside every residual block.

    Shapes: ``forward(ct, pet)`` (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D) in eval
    mode (the adaptive fusion's prediction); in training mode the list [P, P_avg, P_ct, P_pet], all at
    full resolution, so the shared deep-supervision loss supervises each (weights 5, 4, 3, 2).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_common(in_channels, num_classes, dropout)
        channels = check_channels(channels)
        c = channels[0]
        self.encoders = nn.ModuleDict(
            {m: ResidualEncoder(in_channels, channels, dropout) for m in MODALITIES}
        )
        self.decoders = nn.ModuleDict({m: ResidualDecoder(channels, dropout=dropout) for m in MODALITIES})
        self.modality_heads = nn.ModuleDict({m: nn.Conv3d(c, num_classes, 1) for m in MODALITIES})
        self.average_block = ResidualBlock(c, c, dropout=dropout)
        self.average_head = nn.Conv3d(c, num_classes, 1)
        # One attention scorer shared by the modalities, as the number of modalities is free in the paper.
        self.attention = nn.Sequential(
            nn.Conv3d(2 * c, c, 3, padding=1),
            nn.InstanceNorm3d(c, affine=True),
            nn.PReLU(),
            nn.Conv3d(c, 1, 1),
        )
        self.adaptive_block = ResidualBlock(c, c, dropout=dropout)
        self.head = nn.Conv3d(c, num_classes, 1)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_pair(ct, pet)
        features = {}
        for name, x in (("ct", ct), ("pet", pet)):
            enc = self.encoders[name](x)
            features[name] = self.decoders[name](enc[-1], enc[:-1])[0]
        stack = torch.stack([features[m] for m in MODALITIES], dim=0)  # (M, B, C, H, W, D)
        average = self.average_block(stack.mean(dim=0))
        scores = torch.stack([self.attention(torch.cat([f, average], dim=1)) for f in stack], dim=0)
        weights = torch.softmax(scores, dim=0)  # (M, B, 1, H, W, D), sums to 1 over modalities
        out = self.head(self.adaptive_block((weights * stack).sum(dim=0)))
        if not self.training:
            return out
        return [out, self.average_head(average), *(self.modality_heads[m](features[m]) for m in MODALITIES)]


@register_model(
    "a2fseg",
    description="A2FSeg (Wang & Hong 2023): per-modality ResUNet branches, average then adaptive fusion",
    deep_supervision=True,
)
def a2fseg(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float = 0.0,
) -> nn.Module:
    return A2FSeg(in_channels, num_classes, channels, dropout)
