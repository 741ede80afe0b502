"""Table 1 baselines taken from MONAI as they are: UNet-3D, VNet, UNETR, SwinUNETR and nnU-Net (DynUNet).

Each reads CT and PET as two input channels (early fusion, CT first) through :class:`EarlyFusion`.
Only nnU-Net has deep supervision. The sizes by default are those of the methods' papers (or MONAI's
defaults, which follow them); every factory has keywords to build a tiny version for tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import UNETR, DynUNet, SwinUNETR, UNet
from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition
from torch import nn

from h2aseg.models.baselines._common import (
    Size3,
    as_size3,
    check_channels,
    check_common,
    check_divisible,
    check_dropout,
    check_positive,
    early_fusion,
)
from h2aseg.models.registry import register_model

PAPER_PATCH: Size3 = (128, 128, 64)


class EarlyFusion(nn.Module):
    """Run a single-input network on CT and PET stacked as channels (CT first).

    Args:
        net: a network taking (B, 2·in_channels, H, W, D) and returning logits (B, K, H, W, D).

    Shapes: ``forward(ct, pet)`` with both (B, in_channels, H, W, D) -> ``net``'s output.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, ct: torch.Tensor, pet: torch.Tensor):
        return self.net(early_fusion(ct, pet))


# --------------------------------------------------------------------------------------------- UNet-3D
@register_model("unet3d", description="UNet-3D (Çiçek et al. 2016; MONAI UNet), CT and PET as two channels")
def unet3d(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = (32, 64, 128, 256),
    dropout: float = 0.0,
    num_res_units: int = 2,
) -> nn.Module:
    """MONAI ``UNet`` with the depth and widths of Çiçek et al. (four levels, 32 to 256 channels, three
    stride-2 down-samplings). MONAI builds each level from ``num_res_units`` residual units of
    convolutions (two convolutions per level, as in the paper, with ``num_res_units=2``; MONAI adds the
    residual connection and uses instance norm where the paper used batch norm).

    Args:
        channels: widths of the levels (≥ 2 levels; patch sides divisible by 2^(levels-1)).
        dropout: dropout probability after every convolution.
        num_res_units: residual units per level (0 gives one plain convolution per level).
    """
    check_common(in_channels, num_classes, dropout)
    channels = check_channels(channels)
    if num_res_units < 0:
        raise ValueError(f"num_res_units must be ≥ 0, got {num_res_units}")
    net = UNet(
        spatial_dims=3,
        in_channels=2 * in_channels,
        out_channels=num_classes,
        channels=channels,
        strides=(2,) * (len(channels) - 1),
        num_res_units=num_res_units,
        dropout=dropout,
    )
    return EarlyFusion(net)


# ------------------------------------------------------------------------------------------------ VNet
class VNet(nn.Module):
    """V-Net (Milletari et al. 2016) assembled from MONAI's V-Net transitions with a chosen base width.

    With ``channels=16`` (the default) this is exactly MONAI's ``VNet`` (same modules, same parameter
    count); MONAI's class fixes the width at 16, so this class exists only to build small versions. Five
    levels of 5×5×5 convolutions with residual additions, 2×2×2 stride-2 convolutions down and
    transposed convolutions up, batch norm, ELU; widths ``channels·(1, 2, 4, 8, 16)``.

    Args:
        in_channels: input channels (2 for CT and PET); ``channels`` must be a multiple of it (the input
            transition adds the input repeated to the output width).
        num_classes: output channels (logits).
        channels: width of the first level (MONAI and the paper: 16).
        dropout: ``Dropout3d`` probability in the two deepest down transitions and on the decoder's
            inputs and skips (MONAI's default 0.5; 0 disables it).

    Shapes: (B, in_channels, H, W, D), sides divisible by 16 -> logits (B, num_classes, H, W, D).
    """

    def __init__(
        self, in_channels: int = 2, num_classes: int = 1, channels: int = 16, dropout: float = 0.5
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_positive("channels", channels)
        check_dropout(dropout)
        if channels % in_channels:
            raise ValueError(
                "VNet needs channels to be a multiple of its input channels; "
                f"got {channels} and {in_channels}"
            )
        act = ("elu", {"inplace": True})
        c = channels
        p = dropout if dropout > 0 else None
        self.in_tr = InputTransition(3, in_channels, c, act)
        self.down_tr32 = DownTransition(3, c, 1, act)
        self.down_tr64 = DownTransition(3, 2 * c, 2, act)
        self.down_tr128 = DownTransition(3, 4 * c, 3, act, dropout_prob=p)
        self.down_tr256 = DownTransition(3, 8 * c, 2, act, dropout_prob=p)
        self.up_tr256 = UpTransition(3, 16 * c, 16 * c, 2, act, dropout_prob=(p, dropout))
        self.up_tr128 = UpTransition(3, 16 * c, 8 * c, 2, act, dropout_prob=(p, dropout))
        self.up_tr64 = UpTransition(3, 8 * c, 4 * c, 1, act, dropout_prob=(None, dropout))
        self.up_tr32 = UpTransition(3, 4 * c, 2 * c, 1, act, dropout_prob=(None, dropout))
        self.out_tr = OutputTransition(3, 2 * c, num_classes, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D)."""
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        x = self.up_tr256(out256, out128)
        x = self.up_tr128(x, out64)
        x = self.up_tr64(x, out32)
        x = self.up_tr32(x, out16)
        return self.out_tr(x)


@register_model(
    "vnet", description="VNet (Milletari et al. 2016; MONAI's transitions), CT and PET as two channels"
)
def vnet(in_channels: int = 1, num_classes: int = 1, channels: int = 16, dropout: float = 0.5) -> nn.Module:
    """:class:`VNet` on (CT, PET) channels; patch sides must be multiples of 16."""
    return EarlyFusion(VNet(2 * in_channels, num_classes, channels, dropout))


# ----------------------------------------------------------------------------------------------- UNETR
@register_model(
    "unetr",
    description="UNETR (Hatamizadeh et al. 2022; MONAI), CT and PET as two channels",
    uses_patch_size=True,
)
def unetr(
    in_channels: int = 1,
    num_classes: int = 1,
    patch_size: Sequence[int] = PAPER_PATCH,
    feature_size: int = 16,
    hidden_size: int = 768,
    mlp_dim: int = 3072,
    num_heads: int = 12,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ``UNETR`` (ViT-B encoder on 16³ patches, the paper's defaults).

    Args:
        patch_size: training patch (H, W, D), every side a multiple of 16; fixes the token grid.
        feature_size: width of the convolutional decoder's first level.
        hidden_size, mlp_dim, num_heads: transformer width, MLP width and heads (hidden_size divisible
            by num_heads).
        dropout: dropout in the transformer.
    """
    check_common(in_channels, num_classes, dropout)
    size = as_size3(patch_size)
    check_divisible(size, 16, "UNETR")
    for name, value in (("feature_size", feature_size), ("hidden_size", hidden_size), ("mlp_dim", mlp_dim)):
        check_positive(name, value)
    check_positive("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"UNETR needs hidden_size divisible by num_heads; got {hidden_size} and {num_heads}")
    net = UNETR(
        in_channels=2 * in_channels,
        out_channels=num_classes,
        img_size=size,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        dropout_rate=dropout,
    )
    # MONAI keeps an unused cross-attention LayerNorm in every ViT block (checkpoint compatibility); frozen,
    # it stays in the state dict but no longer looks like a parameter that DDP waits for a gradient on.
    for block in net.vit.blocks:
        if not block.with_cross_attention:
            block.norm_cross_attn.requires_grad_(False)
    return EarlyFusion(net)


# ------------------------------------------------------------------------------------------- SwinUNETR
@register_model(
    "swinunetr",
    description="SwinUNETR (Hatamizadeh et al. 2022; MONAI), CT and PET as two channels",
    uses_patch_size=True,
)
def swinunetr(
    in_channels: int = 1,
    num_classes: int = 1,
    patch_size: Sequence[int] = PAPER_PATCH,
    feature_size: int = 48,
    depths: Sequence[int] = (2, 2, 2, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int = 7,
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ``SwinUNETR`` (the paper's BraTS setting: feature size 48, window 7).

    MONAI 1.6 no longer takes ``img_size``: the network adapts to the input, which must have every side a
    multiple of 32 (patch embedding of 2 and four merges). ``patch_size`` is checked against that here
    so a bad patch fails when the model is built, not at the first batch. The deepest feature map
    (patch / 32) must hold more than one voxel: MONAI's instance norm there cannot train on 1×1×1 (so a
    32×32×32 patch is too small; 64×32×32 is the smallest).

    Args:
        patch_size: training patch (H, W, D), every side a multiple of 32.
        feature_size: embedding width (a multiple of 12).
        depths, num_heads: Swin blocks and attention heads of the four stages.
        window_size: attention window side (clipped by MONAI to small feature maps).
        dropout: dropout in the transformer.
    """
    check_common(in_channels, num_classes, dropout)
    size = as_size3(patch_size)
    check_divisible(size, 32, "SwinUNETR")
    if math.prod(s // 32 for s in size) < 2:
        raise ValueError(
            f"SwinUNETR cannot train on patch {size}: its 1/32 feature map must have more than one voxel "
            "(instance norm); use at least one side of 64"
        )
    if feature_size < 12 or feature_size % 12:
        raise ValueError(f"SwinUNETR needs feature_size to be a positive multiple of 12, got {feature_size}")
    depths, num_heads = tuple(depths), tuple(num_heads)
    if len(depths) != 4 or len(num_heads) != 4:
        raise ValueError(f"SwinUNETR needs four depths and four head counts, got {depths} and {num_heads}")
    for stage, heads in enumerate(num_heads):
        check_positive("num_heads", heads)
        if (feature_size * 2**stage) % heads:
            raise ValueError(
                f"SwinUNETR stage {stage + 1} has {feature_size * 2**stage} channels, "
                f"not divisible by {heads} heads"
            )
    net = SwinUNETR(
        in_channels=2 * in_channels,
        out_channels=num_classes,
        feature_size=feature_size,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        drop_rate=dropout,
    )
    return EarlyFusion(net)


# ----------------------------------------------------------------------------------- nnU-Net (DynUNet)
def plan_nnunet_topology(
    patch_size: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_feature_map_size: int = 4,
    max_pools: int = 5,
) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Kernel sizes and strides per stage as nnU-Net's planner derives them from patch and spacing.

    The rule follows nnU-Net's ``get_pool_and_conv_props`` (Isensee et al. 2021), re-stated:

    * stage 1 has stride 1; each further stage halves the axes that are still at least
      ``2·min_feature_map_size`` voxels long *and* whose current spacing is less than twice the
      smallest current spacing among those axes (so anisotropic axes are pooled only once the others
      have caught up); planning stops when no axis qualifies or after ``max_pools`` poolings
      (nnU-Net's 3D plans reach 5 on the paper's 128×128×64 patch);
    * an axis gets a 3-wide kernel once its current spacing is less than twice the smallest current
      spacing, 1 before that (thick-slice axes start with in-plane 3×3×1 kernels).

    Returns:
        (kernels, strides): one 3-tuple per stage each, stage 1 first.

    Raises:
        ValueError: when the patch is not divisible by the planned total stride on every axis
            (nnU-Net would enlarge the patch; here the caller chooses a divisible one).
    """
    size = list(as_size3(tuple(patch_size)))
    current = [float(s) for s in spacing]
    if len(current) != 3 or any(not s > 0 for s in current):
        raise ValueError(f"spacing must be three positive numbers (mm), got {tuple(spacing)!r}")
    if min_feature_map_size < 1 or max_pools < 1:
        raise ValueError("min_feature_map_size and max_pools must be positive")

    def kernel_for(sp: list[float], previous: tuple[int, ...] | None) -> tuple[int, ...]:
        smallest = min(sp)
        return tuple(
            3 if (previous is not None and previous[i] == 3) or sp[i] / smallest < 2 else 1 for i in range(3)
        )

    strides: list[tuple[int, ...]] = [(1, 1, 1)]
    kernels: list[tuple[int, ...]] = [kernel_for(current, None)]
    while len(strides) - 1 < max_pools:
        candidates = [i for i in range(3) if size[i] >= 2 * min_feature_map_size]
        if not candidates:
            break
        smallest = min(current[i] for i in candidates)
        pooled = [i for i in candidates if current[i] / smallest < 2]
        stride = tuple(2 if i in pooled else 1 for i in range(3))
        size = [s // st for s, st in zip(size, stride)]
        current = [sp * st for sp, st in zip(current, stride)]
        strides.append(stride)
        kernels.append(kernel_for(current, kernels[-1]))
    total = [math.prod(s[i] for s in strides) for i in range(3)]
    if any(p % t for p, t in zip(as_size3(tuple(patch_size)), total)):
        raise ValueError(
            f"nnU-Net's plan for patch {tuple(patch_size)} pools each axis by {tuple(total)}; choose a patch "
            "whose sides are multiples of these"
        )
    return kernels, strides


class NNUNet(nn.Module):
    """nnU-Net (Isensee et al. 2021) as MONAI's ``DynUNet`` with the topology nnU-Net plans.

    Follows nnU-Net's 3D full-resolution configuration: kernels and strides from
    :func:`plan_nnunet_topology`, widths 32·2^k capped at 320, two conv-IN-LeakyReLU per stage, deep
    supervision on every decoder stage but the coarsest. Simplified: nnU-Net's own preprocessing,
    patch/batch planning against GPU memory, augmentation and five-fold ensembling belong to the
    pipeline, not the network, and are not reproduced; the ``(6 − k)`` loss weights of the shared
    trainer replace nnU-Net's halving weights. At most 5 outputs are returned (the loss has 5 weights).

    Args:
        in_channels: channels per modality (the network reads 2·in_channels).
        num_classes: output channels (logits).
        patch_size: training patch (H, W, D).
        spacing: voxel spacing (mm) along (H, W, D) of the preprocessed data; defaults to isotropic.
        channels: width of stage 1 (nnU-Net: 32), doubled per stage.
        max_channels: cap on the width (nnU-Net 3D: 320).
        dropout: dropout probability in the conv blocks (nnU-Net: 0).
        deep_supervision: return the coarser heads too in training mode.

    Shapes: ``forward(ct, pet)`` (B, in_channels, H, W, D) -> logits (B, num_classes, H, W, D) in eval
    mode; in training mode a list, full resolution first, then each deeper decoder stage's logits at
    that stage's own resolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        patch_size: Sequence[int] = PAPER_PATCH,
        spacing: Sequence[float] | None = None,
        channels: int = 32,
        max_channels: int = 320,
        dropout: float = 0.0,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        check_positive("num_classes", num_classes)
        check_positive("channels", channels)
        check_positive("max_channels", max_channels)
        check_dropout(dropout)
        kernels, strides = plan_nnunet_topology(
            patch_size, spacing if spacing is not None else (1.0, 1.0, 1.0)
        )
        if len(strides) < 3:
            raise ValueError(
                f"nnU-Net needs a patch that allows at least two poolings; patch {tuple(patch_size)} allows "
                f"{len(strides) - 1}"
            )
        self.kernels, self.strides = kernels, strides
        self.filters = [min(channels * 2**k, max_channels) for k in range(len(strides))]
        self.deep_supervision = deep_supervision
        self.net = DynUNet(
            spatial_dims=3,
            in_channels=2 * in_channels,
            out_channels=num_classes,
            kernel_size=kernels,
            strides=strides,
            upsample_kernel_size=strides[1:],
            filters=self.filters,
            dropout=dropout if dropout > 0 else None,
            deep_supervision=deep_supervision,
            deep_supr_num=min(len(strides) - 2, 4),
        )

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        # DynUNet's own forward interpolates every deep-supervision head to full resolution (nearest) and
        # stacks them; the shared loss up-samples trilinearly itself, so the heads are taken as they are.
        out = self.net.output_block(self.net.skip_layers(early_fusion(ct, pet)))
        if self.training and self.deep_supervision:
            return [out, *self.net.heads]
        return out


@register_model(
    "nnunet",
    description="nnU-Net (MONAI DynUNet, topology planned from patch and spacing), "
    "CT and PET as two channels",
    uses_patch_size=True,
    deep_supervision=True,
)
def nnunet(
    in_channels: int = 1,
    num_classes: int = 1,
    patch_size: Sequence[int] = PAPER_PATCH,
    spacing: Sequence[float] | None = None,
    channels: int = 32,
    max_channels: int = 320,
    dropout: float = 0.0,
) -> nn.Module:
    return NNUNet(in_channels, num_classes, patch_size, spacing, channels, max_channels, dropout)


# ------------------------------------------------------------------------------------------ BasicUNet
@register_model(
    "basicunet", description="MONAI BasicUNet, CT and PET as two channels (a quick CPU reference)"
)
def basicunet(
    in_channels: int = 1,
    num_classes: int = 1,
    channels: Sequence[int] = (8, 8, 16, 32, 64, 8),
    dropout: float = 0.0,
) -> nn.Module:
    """MONAI ``BasicUNet`` (two convolutions per level, four down-samplings) on stacked CT and PET.

    Not one of the paper's baselines: the small, fast U-Net the demo compares against on the CPU.

    Args:
        channels: MONAI's six ``features`` (five encoder widths and the last decoder width).
        dropout: dropout probability.
    """
    from monai.networks.nets import BasicUNet

    check_common(in_channels, num_classes, dropout)
    channels = tuple(int(c) for c in channels)
    if len(channels) != 6:
        raise ValueError(f"basicunet needs six channel widths (MONAI's features), got {channels}")
    net = BasicUNet(
        spatial_dims=3,
        in_channels=2 * in_channels,
        out_channels=num_classes,
        features=channels,
        dropout=dropout,
    )
    return EarlyFusion(net)
