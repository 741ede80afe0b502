"""ResUNet-3D (Table 1): one residual encoder reading CT and PET as channels, and its single-modality pair.

The single-modality networks (``resunet3d_pet``, ``resunet3d_ct``) are not rows of the paper's Table 1;
they are the same network fed one modality, so that a table shows how much the fusion of PET and CT
is worth on a given cohort (docs/architecture.md §6).
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
from h2aseg.models.blocks import ResidualDecoder, ResidualEncoder
from h2aseg.models.registry import register_model

RESUNET_CHANNELS: tuple[int, ...] = (8, 16, 32, 64, 128)
MODALITIES: tuple[str, ...] = ("ct", "pet")


class ResUNet3D(nn.Module):
    """ResUNet-3D (Bhalerao & Thakur 2019, ref. [3] of the H2ASeg paper) on the chosen modalities.

    Follows the reference: a five-level U-Net whose encoder and decoder blocks are pre-activation
    residual blocks (IN-PReLU-conv), stride-2 convolutions for down-sampling and transposed
    convolutions for up-sampling. Widths and block design are those of the H2ASeg authors' release,
    whose backbone is this network (:class:`~h2aseg.models.blocks.ResidualEncoder`), so the Table 1 row
    differs from H2ASeg's dual-branch backbone only in reading PET and CT through one encoder. No deep
    supervision (the reference has none). ::

        concat(CT, PET) -> ResidualEncoder -> E^1..E^5 -> ResidualDecoder -> D^1 -> 1×1×1 conv -> logits

    Args:
        in_channels: channels per modality (1).
        num_classes: output channels (logits).
        channels: widths of levels 1..5 (any number ≥ 2 of levels works; each level halves the size).
        dropout: ``Dropout3d`` probability inside every residual block.
        modalities: which inputs the network reads: ``("ct", "pet")`` (early fusion, the Table 1 row),
            ``("pet",)`` or ``("ct",)`` (single-modality references; the other input is ignored).

    Shapes: ``forward(ct, pet)`` with both (B, in_channels, H, W, D), every side divisible by
    2^(levels-1) -> logits (B, num_classes, H, W, D).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = RESUNET_CHANNELS,
        dropout: float = 0.0,
        modalities: Sequence[str] = MODALITIES,
    ) -> None:
        super().__init__()
        check_common(in_channels, num_classes, dropout)
        channels = check_channels(channels)
        modalities = tuple(modalities)
        if (
            not modalities
            or len(set(modalities)) != len(modalities)
            or not set(modalities) <= set(MODALITIES)
        ):
            raise ValueError(f"modalities must be distinct names among {MODALITIES}, got {modalities}")
        self.modalities = modalities
        self.encoder = ResidualEncoder(in_channels * len(modalities), channels, dropout=dropout)
        self.decoder = ResidualDecoder(channels, dropout=dropout)
        self.head = nn.Conv3d(channels[0], num_classes, 1)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        """ct, pet: (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D)."""
        check_pair(ct, pet)
        inputs = {"ct": ct, "pet": pet}
        x = torch.cat([inputs[m] for m in self.modalities], dim=1)
        features = self.encoder(x)
        return self.head(self.decoder(features[-1], features[:-1])[0])


@register_model(
    "resunet3d", description="ResUNet-3D (Table 1): one residual encoder, CT and PET as two channels"
)
def resunet3d(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = RESUNET_CHANNELS,
    dropout: float = 0.0,
) -> nn.Module:
    return ResUNet3D(in_channels, num_classes, channels, dropout, modalities=("ct", "pet"))


@register_model("resunet3d_pet", description="ResUNet-3D on PET only (reference for how much CT adds)")
def resunet3d_pet(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = RESUNET_CHANNELS,
    dropout: float = 0.0,
) -> nn.Module:
    return ResUNet3D(in_channels, num_classes, channels, dropout, modalities=("pet",))


@register_model("resunet3d_ct", description="ResUNet-3D on CT only (reference for how much PET adds)")
def resunet3d_ct(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = RESUNET_CHANNELS,
    dropout: float = 0.0,
) -> nn.Module:
    return ResUNet3D(in_channels, num_classes, channels, dropout, modalities=("ct",))
