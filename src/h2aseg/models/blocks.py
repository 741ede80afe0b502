"""Small convolutional building blocks shared by H2ASeg and the ResUNet-based baselines.

All blocks take and return tensors of shape (B, C, H, W, D).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def norm_act(channels: int, affine: bool = True) -> nn.Sequential:
    """InstanceNorm3d followed by PReLU: the pre-activation of the ResUNet-3D blocks.

    ``affine=False`` (no learned scale and shift) is the authors' release, see
    :mod:`h2aseg.models.h2aseg_release`.
    """
    return nn.Sequential(nn.InstanceNorm3d(channels, affine=affine), nn.PReLU())


class ResidualBlock(nn.Module):
    """Pre-activation residual block (ResUNet-3D, Bhalerao & Thakur 2019; as in the H2ASeg release)::

        x --+-- IN-PReLU-conv3(stride)-Dropout3d-IN-PReLU-conv3 --(+)--> y
            +------------------ conv skip ------------------------+

    The skip is a 1×1×1 convolution with the block's stride when the shape changes, the identity otherwise
    (the release uses a 3×3×3 convolution there; a 1×1×1 one keeps the skip's job, matching shapes,
    at a ninth of its cost).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        stride: stride of the first convolution and of the skip (2 halves every side).
        dropout: probability of ``Dropout3d`` between the two convolutions (0 disables it).
        preactivate_input: apply IN-PReLU before the first convolution; the first block of an encoder
            reads raw intensities and skips it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        dropout: float = 0.0,
        preactivate_input: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        layers: list[nn.Module] = [norm_act(in_channels)] if preactivate_input else []
        layers.append(nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1))
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout))
        layers += [norm_act(out_channels), nn.Conv3d(out_channels, out_channels, 3, padding=1)]
        self.body = nn.Sequential(*layers)
        if stride == 1 and in_channels == out_channels:
            self.skip: nn.Module = nn.Identity()
        else:
            self.skip = nn.Conv3d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W, D) -> (B, out_channels, H/stride, W/stride, D/stride)."""
        return self.body(x) + self.skip(x)


class ResidualEncoder(nn.Module):
    """Five-level ResUNet-3D encoder: level 1 keeps the input size, levels 2–5 halve it.

    Args:
        in_channels: input channels (1 per modality in H2ASeg, 2 for the early-fusion ResUNet baseline).
        channels: output channels of levels 1..5, e.g. (8, 16, 32, 64, 128).
        dropout: ``Dropout3d`` probability inside every block.
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...], dropout: float = 0.0) -> None:
        super().__init__()
        blocks = [ResidualBlock(in_channels, channels[0], dropout=dropout, preactivate_input=False)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks.append(ResidualBlock(c_in, c_out, stride=2, dropout=dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, in_channels, H, W, D) -> [E^1 .. E^L], E^k: (B, channels[k-1], H/2^(k-1), ...)."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class ResidualDecoder(nn.Module):
    """U-Net decoder of residual blocks: up-sample, concatenate the skip, one ``ResidualBlock`` per level::

        D^L = E^L;  D^k = ResBlock(concat(ConvT(D^{k+1}), S^k)),  k = L-1 .. 1

    Args:
        channels: decoder widths of levels 1..L (``D^k`` has ``channels[k-1]``); level L is the input.
        skip_channels: channels of the skips ``S^1 .. S^{L-1}``; defaults to ``channels[:-1]``
            (a plain U-Net); a dual encoder that concatenates its two skips passes twice that.
        dropout: ``Dropout3d`` probability inside every block.
    """

    def __init__(
        self,
        channels: Sequence[int],
        skip_channels: Sequence[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels must be at least two positive widths, got {channels}")
        skips = tuple(channels[:-1]) if skip_channels is None else tuple(skip_channels)
        if len(skips) != len(channels) - 1:
            raise ValueError(f"skip_channels must give {len(channels) - 1} widths, got {skips}")
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for k in range(len(channels) - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(channels[k + 1], channels[k], 2, stride=2))
            self.blocks.append(ResidualBlock(channels[k] + skips[k], channels[k], dropout=dropout))

    def forward(self, bottom: torch.Tensor, skips: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """bottom: D^L (B, channels[-1], ...); skips: [S^1 .. S^{L-1}] -> [D^1 .. D^L], finest first."""
        x = bottom
        out = [x]
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
            out.append(x)
        return out[::-1]
