"""NestedFormer (Xing et al., MICCAI 2022) for two modalities, CT and PET,
written from the paper's description.

The paper: one encoder per modality, a Nested Modality-aware Feature Aggregation (NMaFA) of the
deepest features — a tri-orientated spatial-attention transformer (TSAT) for long-range dependencies
inside each modality nested in a cross-modality attention transformer (CMAT) for context between
modalities — and a single decoder whose skip connections pass through Modality-Sensitive Gating (MSG):
the fused high-level feature decides how much of each modality's shallow features to let through. ::

    CT  -> Encoder_ct  -> E_ct^1 .. E_ct^5 --+                         +-- MSG(E^k, up) -- decoder --> logits
    PET -> Encoder_pet -> E_pet^1..E_pet^5 --+-- NMaFA(E_ct^5, E_pet^5) -- D^5 --^

Simplified, and said where: the encoders' token mixer is PoolFormer's average pooling (the paper's
"Global Poolformer" encoder adds global context in the encoder stages; here global context enters
through NMaFA only); TSAT has no token learner (the 1/16 grid of a 128×128×64 patch is small) and
uses a depth-wise convolution as position encoding; MSG gates each modality with one spatial map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from h2aseg.models.baselines._common import check_channels, check_dropout, check_pair, check_positive
from h2aseg.models.registry import register_model

MODALITIES = ("ct", "pet")
_ACT = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})
_NORM = ("instance", {"affine": True})


class PoolFormerBlock(nn.Module):
    """PoolFormer block (Yu et al., CVPR 2022) in 3-D, the token mixer of NestedFormer's encoder::

        x = x + (AvgPool3(GN(x)) − GN(x));  x = x + MLP(GN(x))

    Args:
        channels: width C.
        mlp_ratio: hidden width of the channel MLP in multiples of C.
        dropout: dropout inside the MLP.

    Shapes: (B, C, H, W, D) -> (B, C, H, W, D).
    """

    def __init__(self, channels: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, channels)
        self.norm2 = nn.GroupNorm(1, channels)
        self.mlp = nn.Sequential(
            nn.Conv3d(channels, mlp_ratio * channels, 1),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv3d(mlp_ratio * channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        # Edge-replicated borders instead of PoolFormer's count_include_pad=False: the same average away
        # from the border, and it works on maps smaller than the 3×3×3 kernel (deep levels of small patches).
        pooled = F.avg_pool3d(F.pad(y, (1,) * 6, mode="replicate"), 3, stride=1)
        x = x + pooled - y
        return x + self.mlp(self.norm2(x))


class PoolFormerEncoder(nn.Module):
    """One modality's encoder: a convolutional stem at full size, then per level a 2×2×2 stride-2
    convolution (patch merging) and ``depth`` PoolFormer blocks.

    Shapes: (B, in_channels, H, W, D) -> [E^1 .. E^L], E^k (B, channels[k-1], H/2^(k-1), ...).
    """

    def __init__(
        self, in_channels: int, channels: Sequence[int], depth: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.stem = TwoConv(3, in_channels, channels[0], _ACT, _NORM, True, dropout)
        self.stages = nn.ModuleList()
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers: list[nn.Module] = [nn.Conv3d(c_in, c_out, 2, stride=2), nn.GroupNorm(1, c_out)]
            layers += [PoolFormerBlock(c_out, dropout=dropout) for _ in range(depth)]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class _Attention(nn.Module):
    """Multi-head attention of queries ``x`` on ``context`` (self-attention when context is None).

    Shapes: x (N, Lq, C), context (N, Lk, C) -> (N, Lq, C).
    """

    def __init__(self, channels: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        n, lq, c = x.shape
        h = self.num_heads
        q = self.q(x).view(n, lq, h, c // h).transpose(1, 2)
        k, v = self.kv(context).view(n, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, lq, c))


def _mlp(channels: int, ratio: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(channels),
        nn.Linear(channels, ratio * channels),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(ratio * channels, channels),
    )


class TriOrientedSpatialAttention(nn.Module):
    """TSAT (NestedFormer Sec. 2.2): self-attention of one modality's tokens within the axial (H×W),
    coronal (H×D) and sagittal (W×D) planes, the three results averaged, then an MLP; both residual.
    Attending plane by plane reaches every voxel in two layers at a fraction of full 3-D attention's cost.
    A depth-wise 3×3×3 convolution added first gives the tokens their position (no patch-sized table).

    Shapes: (B, C, H, W, D) -> (B, C, H, W, D).
    """

    def __init__(self, channels: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.position = nn.Conv3d(channels, channels, 3, padding=1, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.axial = _Attention(channels, num_heads, dropout)
        self.coronal = _Attention(channels, num_heads, dropout)
        self.sagittal = _Attention(channels, num_heads, dropout)
        self.mlp = _mlp(channels, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.position(x)
        b, c, h, w, d = x.shape
        t = x.permute(0, 2, 3, 4, 1)  # (B, H, W, D, C)
        n = self.norm(t)
        axial = n.permute(0, 3, 1, 2, 4).reshape(b * d, h * w, c)
        axial = self.axial(axial).view(b, d, h, w, c).permute(0, 2, 3, 1, 4)
        coronal = n.permute(0, 2, 1, 3, 4).reshape(b * w, h * d, c)
        coronal = self.coronal(coronal).view(b, w, h, d, c).permute(0, 2, 1, 3, 4)
        sagittal = self.sagittal(n.reshape(b * h, w * d, c)).view(b, h, w, d, c)
        t = t + (axial + coronal + sagittal) / 3
        t = t + self.mlp(t)
        return t.permute(0, 4, 1, 2, 3)


class CrossModalityAttention(nn.Module):
    """CMAT (NestedFormer Sec. 2.2): every modality's tokens attend to the tokens of all modalities
    (each marked with a learned modality embedding), then an MLP; both residual.

    Shapes: list of M tensors (B, N, C) -> list of M tensors (B, N, C).
    """

    def __init__(
        self, channels: int, num_modalities: int, num_heads: int, mlp_ratio: int = 4, dropout: float = 0.0
    ):
        super().__init__()
        self.modality_embedding = nn.Parameter(torch.zeros(num_modalities, channels))
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.attention = _Attention(channels, num_heads, dropout)
        self.mlp = _mlp(channels, mlp_ratio, dropout)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        tokens = [t + e for t, e in zip(tokens, self.modality_embedding)]
        context = self.norm_kv(torch.cat(tokens, dim=1))
        out = []
        for t in tokens:
            t = t + self.attention(self.norm_q(t), context)
            out.append(t + self.mlp(t))
        return out


class NMaFA(nn.Module):
    """Nested Modality-aware Feature Aggregation: ``depth`` rounds of TSAT per modality (weights shared
    across modalities, the attention never mixes them) followed by CMAT across modalities, then a
    1×1×1 convolution of the concatenated modalities into one fused map.

    Shapes: list of M tensors (B, C, h, w, d) -> (B, C, h, w, d).
    """

    def __init__(
        self, channels: int, num_modalities: int, num_heads: int, depth: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.tsat = nn.ModuleList(
            TriOrientedSpatialAttention(channels, num_heads, dropout=dropout) for _ in range(depth)
        )
        self.cmat = nn.ModuleList(
            CrossModalityAttention(channels, num_modalities, num_heads, dropout=dropout) for _ in range(depth)
        )
        self.fuse = nn.Sequential(
            nn.Conv3d(num_modalities * channels, channels, 1),
            nn.InstanceNorm3d(channels, affine=True),
            nn.LeakyReLU(0.1, inplace=True),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        m = len(features)
        b, c, h, w, d = features[0].shape
        x = torch.cat(features, dim=0)  # (M·B, C, h, w, d): TSAT runs on each modality alone
        for tsat, cmat in zip(self.tsat, self.cmat):
            x = tsat(x)
            tokens = [t.flatten(2).transpose(1, 2) for t in x.chunk(m, dim=0)]
            tokens = cmat(tokens)
            x = torch.cat([t.transpose(1, 2).reshape(b, c, h, w, d) for t in tokens], dim=0)
        return self.fuse(torch.cat(x.chunk(m, dim=0), dim=1))


class ModalitySensitiveGate(nn.Module):
    """MSG (NestedFormer Sec. 2.3): the up-sampled fused decoder feature gives one sigmoid map per
    modality, which weights that modality's skip feature; the gated skips are concatenated.

    Shapes: guide (B, C_g, H, W, D), skips M × (B, C, H, W, D) -> (B, M·C, H, W, D).
    """

    def __init__(self, guide_channels: int, num_modalities: int) -> None:
        super().__init__()
        self.gate = nn.Conv3d(guide_channels, num_modalities, 1)

    def forward(self, guide: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        gates = torch.sigmoid(self.gate(guide))
        return torch.cat([gates[:, i : i + 1] * skip for i, skip in enumerate(skips)], dim=1)


class NestedFormer(nn.Module):
    """NestedFormer (Xing et al. 2022) for CT and PET: two PoolFormer encoders, NMaFA fusion of the
    deepest level, a single decoder with modality-sensitive gating of the skips (see the module
    docstring for what follows the paper and what is simplified). No deep supervision.

    Args:
        in_channels: channels per modality (1).
        num_classes: output channels (logits).
        channels: widths of the levels (each level after the first halves the size); the deepest
            width is the transformer's width. Default (16, 16, 32, 64, 128), the widths of the authors'
            release.
        dropout: dropout in the encoders' MLPs, the transformer and the decoder blocks.
        num_heads: attention heads in TSAT and CMAT (must divide ``channels[-1]``).
        fusion_depth: rounds of TSAT + CMAT in NMaFA.
        encoder_depth: PoolFormer blocks per encoder level.

    Shapes: ``forward(ct, pet)`` (B, in_channels, H, W, D), sides divisible by 2^(levels-1) -> logits
    (B, num_classes, H, W, D).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (16, 16, 32, 64, 128),
        dropout: float = 0.0,
        num_heads: int = 4,
        fusion_depth: int = 1,
        encoder_depth: int = 1,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_positive("num_heads", num_heads)
        check_positive("fusion_depth", fusion_depth)
        check_positive("encoder_depth", encoder_depth)
        check_dropout(dropout)
        channels = check_channels(channels)
        if channels[-1] % num_heads:
            raise ValueError(
                "NestedFormer needs num_heads to divide the deepest width; "
                f"got {num_heads} and {channels[-1]}"
            )
        m = len(MODALITIES)
        self.encoders = nn.ModuleDict(
            {name: PoolFormerEncoder(in_channels, channels, encoder_depth, dropout) for name in MODALITIES}
        )
        self.fusion = NMaFA(channels[-1], m, num_heads, fusion_depth, dropout)
        self.ups = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for k in range(len(channels) - 2, -1, -1):
            self.ups.append(nn.ConvTranspose3d(channels[k + 1], channels[k], 2, stride=2))
            self.gates.append(ModalitySensitiveGate(channels[k], m))
            self.blocks.append(TwoConv(3, (m + 1) * channels[k], channels[k], _ACT, _NORM, True, dropout))
        self.head = nn.Conv3d(channels[0], num_classes, 1)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        """ct, pet: (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D)."""
        check_pair(ct, pet)
        features = [self.encoders["ct"](ct), self.encoders["pet"](pet)]
        x = self.fusion([f[-1] for f in features])
        for level, (up, gate, block) in enumerate(zip(self.ups, self.gates, self.blocks)):
            k = len(features[0]) - 2 - level
            x = up(x)
            x = block(torch.cat([x, gate(x, [f[k] for f in features])], dim=1))
        return self.head(x)


@register_model(
    "nestedformer",
    description="NestedFormer (Xing et al. 2022): per-modality encoders, NMaFA fusion, MSG skips",
)
def nestedformer(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = (16, 16, 32, 64, 128),
    dropout: float = 0.0,
    num_heads: int = 4,
    fusion_depth: int = 1,
    encoder_depth: int = 1,
) -> nn.Module:
    return NestedFormer(in_channels, num_classes, channels, dropout, num_heads, fusion_depth, encoder_depth)
