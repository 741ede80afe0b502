"""``h2aseg_release``: the network the authors released (GitHub JinPLu/H2ASeg, ``model/``),
which produced Table 1.

It computes what the release's ``H2ASeg(patch_size, in_channels, n_classes)`` computes (same layers, same
order, same parameter shapes: 7,164,869 parameters at channels 8–128 with 1 input channel and 2 classes),
written anew; weights trained with the release's ``train.py`` load into it through
:mod:`h2aseg.models.release_import`. Where it departs from the paper's text and from
:mod:`h2aseg.models.h2aseg` is listed in ``docs/fidelity.md``; in short::

    CT, PET -> stem (conv3-IN-PReLU-Dropout3d-conv3, + conv3 skip)                      level 1, no attention
            -> pre-activated residual block, stride 2 (3×3×3 pre-activated skip)       levels 2..5, each then
               level 2, 3: ReleaseMCSA   (pool 4×4×4 -> BDSA -> up, + E, IN-PReLU;
                                          windows -> BDSA -> back, + Ê, IN-PReLU)
               level 4, 5: ReleaseBDSA over the whole map, + input (global attention)
    D^5 = concat(F_ct^5, F_pet^5);  P^5 = head(D^5)                                    head = IN-PReLU-conv3
    D^k = ResBlock(TAMW(concat(F_ct^k, F_pet^k, up(D^{k+1})), softmax(up(P^{k+1}))));  P^k = head(D^k)
    every P^k up-sampled (trilinear, align_corners=True) to the input size

BDSA of the release (``ReleaseBDSA``, one unit per target modality)::

    A_intra = softmax(Q_t K_tᵀ / √(C/r)) V_t,   A_cross = softmax(Q_c K_sᵀ / √(C/r)) V_s
    E'_t    = Dropout(Conv1×1×1((A_intra + A_cross) / 2))  [+ E_t at levels 4–5]

with Q, K of C/r channels (r = 4 inside MCSA, 1 at levels 4–5), no biases, dropout on both attention maps.
TAMW of the release masks only the CT and PET features (not the up-sampled decoder features), adds the
foreground term and subtracts the background term, and uses tanh inside its MLP as well.

Layers are called in the release's order, so dropout draws the same random numbers: with the same seed and
weights the training-mode outputs agree too (``benchmarks/release_equivalence.py``). Instance norms carry no
affine parameters and the global average pool of TAMW is a mean over the whole map (the release pools with a
kernel of the level's size at the training patch, the same thing at that patch and undefined at any other).
Blocks shared with :mod:`h2aseg.models.h2aseg`: :func:`~h2aseg.models.blocks.norm_act`, the window
partition of :mod:`h2aseg.models.mcsa` and :class:`~h2aseg.models.tamw.ChannelWeights`; the residual blocks
and BDSA differ in what they compute and are defined here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from h2aseg.errors import ConfigError
from h2aseg.models.blocks import norm_act
from h2aseg.models.mcsa import window_partition, window_reverse
from h2aseg.models.registry import register_model
from h2aseg.models.tamw import ChannelWeights

Size3 = tuple[int, int, int]
#: Encoder levels with windowed MCSA, and those with global BDSA plus a residual, in the release.
MCSA_LEVELS: tuple[int, ...] = (2, 3)
GLOBAL_LEVELS: tuple[int, ...] = (4, 5)
#: The release's channel reduction of queries and keys in MCSA (``channel_scale=4``); 1 at the global levels.
MCSA_QK_REDUCTION = 4


def _upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Trilinear up-sampling with ``align_corners=True``, the release's choice everywhere."""
    return F.interpolate(x, size=tuple(size), mode="trilinear", align_corners=True)


class ReleaseStem(nn.Module):
    """Level-1 residual block of the release (``ResidualConv_Firstlayer``)::

        x --+-- conv3 - IN - PReLU - Dropout3d - conv3 --(+)--> y
            +--------------- conv3 -------------------+

    Args:
        in_channels: channels of the image (1).
        out_channels: C^1.
        dropout: ``Dropout3d`` probability.

    Shapes: (B, in_channels, H, W, D) -> (B, out_channels, H, W, D).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            *norm_act(out_channels, affine=False),
            nn.Dropout3d(dropout),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class ReleaseResidualBlock(nn.Module):
    """Pre-activated residual block of the release (``ResidualConv``), with a pre-activated 3×3×3 skip::

        x --+-- IN - PReLU - conv3(stride) - Dropout3d - IN - PReLU - conv3 --(+)--> y
            +------------------- IN - PReLU - conv3(stride) ----------------+

    Unlike :class:`~h2aseg.models.blocks.ResidualBlock` (1×1×1 skip, affine norms) the skip has its own
    norm, activation and 3×3×3 convolution, always, also where shapes do not change.

    Args:
        in_channels, out_channels: channels in and out.
        stride: 2 in the encoder (halves each side), 1 in the decoder.
        dropout: ``Dropout3d`` probability between the two convolutions.

    Shapes: (B, in_channels, H, W, D) -> (B, out_channels, H/stride, W/stride, D/stride).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *norm_act(in_channels, affine=False),
            nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.Dropout3d(dropout),
            *norm_act(out_channels, affine=False),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Sequential(
            *norm_act(in_channels, affine=False),
            nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class ReleaseAttentionUnit(nn.Module):
    """One direction of the release's BDSA (``UniBidirectional_Spatial_Attention``): the target reads itself
    and the source, the two results are averaged and projected.

    Args:
        channels: C of source and target.
        qk_reduction: r; queries and keys have C // r channels and scores are divided by √(C // r).
        dropout: dropout on both attention maps and on the output.
        residual: add the target to the output (the release's levels 4–5).

    Shapes: ``forward(source, target)``: (B, C, h, w, d) each -> (B, C, h, w, d).
    """

    def __init__(self, channels: int, qk_reduction: int, dropout: float, residual: bool) -> None:
        super().__init__()
        qk = channels // qk_reduction
        if qk < 1:
            raise ValueError(f"{channels} channels leave no query/key channel at reduction {qk_reduction}")
        self.scale = math.sqrt(qk)
        self.residual = residual
        for name in ("q_intra", "q_cross", "k_intra", "k_cross"):
            setattr(self, name, nn.Conv3d(channels, qk, 1, bias=False))
        for name in ("v_intra", "v_cross", "out"):
            setattr(self, name, nn.Conv3d(channels, channels, 1, bias=False))
        self.drop_intra, self.drop_cross, self.drop_out = (
            nn.Dropout(dropout),
            nn.Dropout(dropout),
            nn.Dropout(dropout),
        )

    @staticmethod
    def _tokens(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2)  # (B, C, N)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        shape = target.shape
        q_intra = self._tokens(self.q_intra(target)).transpose(1, 2)  # (B, N, C/r)
        q_cross = self._tokens(self.q_cross(target)).transpose(1, 2)
        k_intra, k_cross = (
            self._tokens(self.k_intra(target)),
            self._tokens(self.k_cross(source)),
        )  # (B, C/r, N)
        v_intra, v_cross = self._tokens(self.v_intra(target)), self._tokens(self.v_cross(source))  # (B, C, N)
        # Dropout order as in the release (intra map, cross map, output), so masks match under one seed.
        w_intra = self.drop_intra(
            torch.softmax(torch.bmm(q_intra, k_intra) / self.scale, dim=-1)
        )  # (B, N, N)
        w_cross = self.drop_cross(torch.softmax(torch.bmm(q_cross, k_cross) / self.scale, dim=-1))
        # (B, N, C) viewed as (B, C, h, w, d): channels-last in memory like the release's, so the output
        # dropout below draws its mask in the same element order.
        a_intra = torch.bmm(w_intra, v_intra.transpose(1, 2)).transpose(1, 2).reshape(shape)
        a_cross = torch.bmm(w_cross, v_cross.transpose(1, 2)).transpose(1, 2).reshape(shape)
        out = self.drop_out(self.out((a_intra + a_cross) / 2))
        return out + target if self.residual else out


class ReleaseBDSA(nn.Module):
    """The release's bi-directional attention: one :class:`ReleaseAttentionUnit` per target modality.

    Shapes: ``forward(ct, pet)``: (B, C, h, w, d) each -> (ct', pet'); CT's unit runs first,
    as in the release.
    """

    def __init__(self, channels: int, qk_reduction: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.to_ct = ReleaseAttentionUnit(channels, qk_reduction, dropout, residual)
        self.to_pet = ReleaseAttentionUnit(channels, qk_reduction, dropout, residual)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_ct(pet, ct), self.to_pet(ct, pet)


class ReleaseMCSA(nn.Module):
    """MCSA as released (levels 2 and 3)::

        Ê = IN-PReLU(E + up(BDSA(pool(E))))            pool: conv, cubic kernel = stride = min(window)
        F = IN-PReLU(Ê + windows⁻¹(BDSA(windows(Ê))))  windows of ``window_size``

    Args:
        channels: C^k.
        window_size: (Hw, Ww, Dw) of the intra-window step; the inter-window pool is min(window) on every
            axis.
        dropout: attention dropout.

    Shapes: ``forward(ct, pet)``: (B, C, H, W, D) each, sides divisible by the window and the pool -> same.
    """

    def __init__(self, channels: int, window_size: Size3, dropout: float) -> None:
        super().__init__()
        self.window_size = tuple(int(w) for w in window_size)
        self.pool = min(self.window_size)
        self.pool_ct = nn.Conv3d(channels, channels, self.pool, stride=self.pool)
        self.pool_pet = nn.Conv3d(channels, channels, self.pool, stride=self.pool)
        self.inter = ReleaseBDSA(channels, MCSA_QK_REDUCTION, dropout, residual=False)
        self.intra = ReleaseBDSA(channels, MCSA_QK_REDUCTION, dropout, residual=False)
        self.norm_ct1, self.norm_ct2 = norm_act(channels, affine=False), norm_act(channels, affine=False)
        self.norm_pet1, self.norm_pet2 = norm_act(channels, affine=False), norm_act(channels, affine=False)

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = ct.shape[2:]
        tokens_ct, tokens_pet = self.inter(self.pool_ct(ct), self.pool_pet(pet))
        ct = self.norm_ct1(_upsample(tokens_ct, size) + ct)
        pet = self.norm_pet1(_upsample(tokens_pet, size) + pet)
        out_ct, out_pet = self.intra(
            window_partition(ct, self.window_size), window_partition(pet, self.window_size)
        )
        out_ct, out_pet = window_reverse(out_ct, tuple(size)), window_reverse(out_pet, tuple(size))
        return self.norm_ct2(out_ct + ct), self.norm_pet2(out_pet + pet)


class ReleaseTAMW(nn.Module):
    """TAMW as released (``TAMW`` with two ``Adaptive_Weighting``)::

        F      = concat(F_ct, F_pet, D̃)                 (CT first; D̃ the up-sampled decoder features)
        M_fore = concat(p_fore ⊙ F_ct, p_fore ⊙ F_pet, D̃),  M_back likewise with p_back
        F_enh  = F + W_fore ⊙ M_fore − W_back ⊙ M_back,   W = tanh(FC(tanh(FC(GAP(M)))))

    ``modalities`` and ``back_sign`` tell the Table 3 analysis the channel order and that the background
    term is subtracted (:mod:`h2aseg.benchmarking.tamw_analysis`).

    Args:
        skip_channels: 2C^k, the CT and PET channels at the front of F (the masked ones).
        channels: 2(C^k + C^{k+1}), all channels of F.

    Shapes: ``forward(features, fore, back)``: F (B, channels, H, W, D), p_fore and p_back (B, 1, H, W, D)
    (softmax channels 1 and 0 of the coarser prediction) -> F_enh (B, channels, H, W, D).
    """

    modalities: tuple[str, str] = ("ct", "pet")
    back_sign: float = -1.0

    def __init__(self, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.skip_channels = skip_channels
        self.fore_weights = ChannelWeights(channels, 4, activation=nn.Tanh, min_hidden=1)
        self.back_weights = ChannelWeights(channels, 4, activation=nn.Tanh, min_hidden=1)

    def _masked(self, features: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
        skips, decoder = features[:, : self.skip_channels], features[:, self.skip_channels :]
        return torch.cat((skips * probability, decoder), dim=1)

    def forward(self, features: torch.Tensor, fore: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
        masked_fore, masked_back = self._masked(features, fore), self._masked(features, back)
        w_fore = self.fore_weights(masked_fore)[:, :, None, None, None]
        w_back = self.back_weights(masked_back)[:, :, None, None, None]
        return features + w_fore * masked_fore - w_back * masked_back


def check_release_patch(patch: Sequence[int], window: Size3) -> Size3:
    """A patch (H, W, D) the release's network can take; ConfigError saying what must hold otherwise."""
    patch = tuple(int(s) for s in patch)
    pool = min(window)
    ok = len(patch) == 3 and all(s >= 16 and s % 16 == 0 for s in patch)
    for k in MCSA_LEVELS:
        size = [s // 2 ** (k - 1) for s in patch] if ok else []
        ok = ok and all(s % w == 0 and s % pool == 0 for s, w in zip(size, window))
    if not ok:
        raise ConfigError(
            f"patch {patch} is not usable for h2aseg_release with window {tuple(window)}: each side must be "
            "a multiple of 16, and at levels 2 and 3 (patch / 2, patch / 4) a multiple of the window and of "
            f"{pool}, e.g. 128 128 64, 64 64 32 or 32 32 16"
        )
    return patch  # type: ignore[return-value]


class H2ASegRelease(nn.Module):
    """The released H2ASeg (see the module docstring for the data path).

    Args:
        in_channels: channels of each modality's input (1).
        num_classes: output channels, background included (softmax); 1 (binary data in h2aseg's convention)
            builds the release's 2-class network, since the release always predicts a background channel.
        channels: C^1..C^5 of each encoder, the release's (8, 16, 32, 64, 128).
        window_size: MCSA window (8, 8, 4) of levels 2 and 3.
        patch_size: training patch; checked against the windows.
        dropout: ``Dropout3d`` in every encoder and decoder block (release 0.5).
        attention_dropout: dropout of the attention maps and outputs (release 0.5).

    ``forward(ct, pet)``: (B, in_channels, H, W, D) each -> P^1 (B, num_classes, H, W, D) in eval mode, or
    [P^1, …, P^5], all up-sampled to (H, W, D) as in the release, in training mode (``deep_supervision``
    overrides the choice).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        window_size: Sequence[int] = (8, 8, 4),
        patch_size: Sequence[int] = (128, 128, 64),
        dropout: float = 0.5,
        attention_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5:
            raise ValueError(f"channels must give 5 levels, got {channels}")
        window = tuple(int(w) for w in window_size)
        if len(window) != 3:
            raise ValueError(f"window_size must be one (h, w, d) triple, got {tuple(window_size)}")
        self.channels, self.window_size = channels, window
        self.num_classes = max(int(num_classes), 2)
        self.patch_size = check_release_patch(patch_size, window)  # type: ignore[arg-type]
        self.encoder_ct, self.encoder_pet = (self._encoder(in_channels, dropout) for _ in range(2))
        self.attention = nn.ModuleDict()
        for k in MCSA_LEVELS:
            self.attention[str(k)] = ReleaseMCSA(channels[k - 1], window, attention_dropout)
        for k in GLOBAL_LEVELS:
            self.attention[str(k)] = ReleaseBDSA(channels[k - 1], 1, attention_dropout, residual=True)
        # Modules in the release's order (decoder blocks, TAMWs, heads from level 5),
        # so state dicts list alike.
        self.decode = nn.ModuleDict(
            {
                str(k): ReleaseResidualBlock(
                    2 * (channels[k - 1] + channels[k]), 2 * channels[k - 1], 1, dropout
                )
                for k in (4, 3, 2, 1)
            }
        )
        self.tamw = nn.ModuleDict(
            {
                str(k): ReleaseTAMW(2 * channels[k - 1], 2 * (channels[k - 1] + channels[k]))
                for k in (4, 3, 2, 1)
            }
        )
        self.heads = nn.ModuleDict(
            {
                str(k): nn.Sequential(
                    *norm_act(2 * channels[k - 1], affine=False),
                    nn.Conv3d(2 * channels[k - 1], self.num_classes, 3, padding=1),
                )
                for k in (5, 4, 3, 2, 1)
            }
        )

    def _encoder(self, in_channels: int, dropout: float) -> nn.ModuleDict:
        c = self.channels
        blocks = {"1": ReleaseStem(in_channels, c[0], dropout)}
        blocks.update({str(k): ReleaseResidualBlock(c[k - 2], c[k - 1], 2, dropout) for k in range(2, 6)})
        return nn.ModuleDict(blocks)

    def encode(self, ct: torch.Tensor, pet: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, in, H, W, D) each -> [(F_ct^k, F_pet^k) for k = 1..5]."""
        features = []
        for k in range(1, 6):
            ct, pet = self.encoder_ct[str(k)](ct), self.encoder_pet[str(k)](pet)
            if str(k) in self.attention:
                ct, pet = self.attention[str(k)](ct, pet)
            features.append((ct, pet))
        return features

    def decode_levels(self, features: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Encoder features -> logits [P^1, …, P^5] at their own resolutions."""
        d = torch.cat(features[4], dim=1)
        logits = {5: self.heads["5"](d)}
        for k in (4, 3, 2, 1):
            f_ct, f_pet = features[k - 1]
            size = f_ct.shape[2:]
            fused = torch.cat((f_ct, f_pet, _upsample(d, size)), dim=1)
            probabilities = torch.softmax(_upsample(logits[k + 1], size), dim=1)
            fused = self.tamw[str(k)](fused, probabilities[:, 1:2], probabilities[:, 0:1])
            d = self.decode[str(k)](fused)
            logits[k] = self.heads[str(k)](d)
        return [logits[k] for k in range(1, 6)]

    def forward(
        self, ct: torch.Tensor, pet: torch.Tensor, deep_supervision: bool | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """ct, pet: (B, in_channels, H, W, D) -> P^1, or [P^1..P^5] at (H, W, D) (see the class docstring)."""
        if (
            not torch.jit.is_tracing()
        ):  # traced (ONNX/TorchScript export), shapes are fixed by the example input
            if ct.shape != pet.shape:
                raise ValueError(f"CT {tuple(ct.shape)} and PET {tuple(pet.shape)} must have one shape")
            check_release_patch(ct.shape[2:], self.window_size)
        outputs = self.decode_levels(self.encode(ct, pet))
        if not (deep_supervision if deep_supervision is not None else self.training):
            return outputs[0]
        size = ct.shape[2:]
        return [o if o.shape[2:] == size else _upsample(o, size) for o in outputs]


register_model(
    "h2aseg_release",
    description="H2ASeg as the authors released it (the network behind Table 1; 7,164,869 parameters at 2 "
    "classes)",
    uses_patch_size=True,
    deep_supervision=True,
)(H2ASegRelease)
