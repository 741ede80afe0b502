"""SDB: the multi-modal co-learning network of Xue et al. (IEEE TMI 2021),
written from the paper's description.

The paper: a dual encoder (PET and CT) whose down-sampling blocks are *shared* between the two branches,
so that features interact across modalities at every change of scale; two separate decoding
("refactoring") branches; feature maps of several resolutions combined into spatially varying fusion
maps that weight the modalities voxel by voxel (after Kumar et al.'s co-learned fusion maps); a
similarity loss that keeps the branches' predictions consistent. ::

    level 1:   CT -> Block_ct -> E_ct^1          PET -> Block_pet -> E_pet^1
    level k:   concat(E_ct^{k-1}, E_pet^{k-1}) -> SharedDown_k -> split -> Block_ct / Block_pet
               -> E_ct^k, E_pet^k
    decoders:  Dec_ct(E_ct) -> D_ct^1..5        Dec_pet(E_pet) -> D_pet^1..5
    fusion:    w = softmax_m( Σ_k up(Conv1(concat(D_ct^k, D_pet^k))) )   (2 maps, one per modality)
               P = head(Block(w_ct·D_ct^1 + w_pet·D_pet^1))

How "shared" is read here: one block per scale reads both branches' features (concatenated) and returns
both branches' next-scale features (split), so its weights serve both encoders and its convolution mixes
PET and CT channels — the interaction the paper attributes to sharing. Simplified: the blocks are the
ResUNet-3D blocks of this package; the similarity loss between branch predictions is not part of the
shared trainer's loss, so the branches' predictions are instead supervised by the ground truth like the
fused one (training-mode outputs), which also keeps them consistent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from h2aseg.models.baselines._common import (
    check_channels,
    check_common,
    check_pair,
)
from h2aseg.models.blocks import ResidualBlock, ResidualDecoder, norm_act
from h2aseg.models.registry import register_model

MODALITIES = ("ct", "pet")


class SharedDownsampling(nn.Module):
    """One down-sampling block serving both encoders: concat -> IN-PReLU -> 3×3×3 stride-2 conv -> split.

    The convolution sees both modalities' channels, so each branch's next-scale features mix PET and CT.

    Shapes: ct, pet (B, C_in, H, W, D) -> ct', pet' (B, C_out, H/2, W/2, D/2).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            norm_act(2 * in_channels),
            nn.Conv3d(2 * in_channels, 2 * out_channels, 3, stride=2, padding=1),
        )

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ct, pet = self.block(torch.cat([ct, pet], dim=1)).chunk(2, dim=1)
        return ct, pet


class SDB(nn.Module):
    """Dual encoder with shared down-sampling blocks, two decoders and multi-resolution fusion maps
    (Xue et al. 2021; see the module docstring for what follows the paper and what is simplified).

    Args:
        in_channels: channels per modality (1).
        num_classes: output channels (logits).
        channels: widths of each branch's levels (each level after the first halves the size).
        dropout: ``Dropout3d`` probability inside every residual block.

    Shapes: ``forward(ct, pet)`` (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D) in eval
    mode; in training mode the list [P, P_ct, P_pet] (fused, then each decoding branch), all at full
    resolution.
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
        self.stems = nn.ModuleDict(
            {m: ResidualBlock(in_channels, c, dropout=dropout, preactivate_input=False) for m in MODALITIES}
        )
        self.downs = nn.ModuleList(SharedDownsampling(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.blocks = nn.ModuleDict(
            {m: nn.ModuleList(ResidualBlock(b, b, dropout=dropout) for b in channels[1:]) for m in MODALITIES}
        )
        self.decoders = nn.ModuleDict({m: ResidualDecoder(channels, dropout=dropout) for m in MODALITIES})
        self.fusion_maps = nn.ModuleList(nn.Conv3d(2 * ch, len(MODALITIES), 1) for ch in channels)
        self.fused_block = ResidualBlock(c, c, dropout=dropout)
        self.head = nn.Conv3d(c, num_classes, 1)
        self.branch_heads = nn.ModuleDict({m: nn.Conv3d(c, num_classes, 1) for m in MODALITIES})

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_pair(ct, pet)
        enc = {"ct": [self.stems["ct"](ct)], "pet": [self.stems["pet"](pet)]}
        for level, down in enumerate(self.downs):
            x_ct, x_pet = down(enc["ct"][-1], enc["pet"][-1])
            enc["ct"].append(self.blocks["ct"][level](x_ct))
            enc["pet"].append(self.blocks["pet"][level](x_pet))
        dec = {m: self.decoders[m](enc[m][-1], enc[m][:-1]) for m in MODALITIES}
        size = ct.shape[2:]
        logits = 0
        for conv, d_ct, d_pet in zip(self.fusion_maps, dec["ct"], dec["pet"]):
            level_logits = conv(torch.cat([d_ct, d_pet], dim=1))
            if level_logits.shape[2:] != size:
                level_logits = F.interpolate(level_logits, size=size, mode="trilinear", align_corners=False)
            logits = logits + level_logits
        w = torch.softmax(logits, dim=1)
        fused = w[:, 0:1] * dec["ct"][0] + w[:, 1:2] * dec["pet"][0]
        out = self.head(self.fused_block(fused))
        if not self.training:
            return out
        return [out, *(self.branch_heads[m](dec[m][0]) for m in MODALITIES)]


@register_model(
    "sdb",
    description="SDB (Xue et al. 2021): dual encoder with shared down-sampling blocks, fusion maps",
    deep_supervision=True,
)
def sdb(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    dropout: float = 0.0,
) -> nn.Module:
    return SDB(in_channels, num_classes, channels, dropout)
