"""H2ASeg: Hierarchical Adaptive Interaction and Weighting Network (Lu et al., MICCAI 2024, Fig. 1).

::

    CT  -> ResUNet-3D encoder level k -> E_ct^k  --+                      +--> F_ct^k  -> next CT level
                                                   +-- MCSA (k in levels) -+
    PET -> ResUNet-3D encoder level k -> E_pet^k --+                      +--> F_pet^k -> next PET level

    D^5 = concat(F_pet^5, F_ct^5);                         P^5 = head_5(D^5)
    D^k = ResBlock(TAMW(concat(F_pet^k, F_ct^k, up(D^{k+1})), σ(up(P^{k+1}))));   P^k = head_k(D^k),  k = 4..1

MCSA outputs feed both the next encoder level and the decoder skip, so the interaction is hierarchical.
The loss of Eq. 5 uses P^1..P^5; P^1 is the prediction at test time.

Parameter count: at the paper's setting (channels 8–128, window (8, 8, 4), patch 128×128×64) this
implementation has 11,118,135 parameters at one output class (11.12 M; ``h2aseg info --model h2aseg``);
the authors' release has about 7.2 M. The backbone alone (MCSA and TAMW off) has 4,906,511 (4.91 M); TAMW
adds 197,640 (0.20 M) and MCSA 6,013,984 (6.01 M). Most of
the difference is MCSA at level 4, which the paper's rule (MCSA at every level, window pooling by a
convolution whose kernel equals the (8, 8, 4) window) makes a windowed level at this patch: its two pooling
convolutions (64·64·256 weights each, 2.10 M together) and its inter-window BDSA (0.49 M). The release
applies MCSA at levels 2–3 only, with cubic 4×4×4 pooling kernels, and plain global attention at levels
4–5. ``mcsa_levels`` and ``window_size`` (one triple per level) reproduce lighter variants.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from h2aseg.errors import ConfigError
from h2aseg.models.blocks import ResidualBlock, ResidualEncoder
from h2aseg.models.mcsa import MCSA, check_window_tiling
from h2aseg.models.registry import register_model
from h2aseg.models.tamw import TAMW

Size3 = tuple[int, int, int]
PAPER_PATCH: Size3 = (128, 128, 64)


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """P̃ from logits (B, K, ...): sigmoid for one channel, 1 − softmax(background) for K > 1
    -> (B, 1, ...)."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return 1.0 - torch.softmax(logits, dim=1)[:, :1]


class H2ASeg(nn.Module):
    """Dual-branch ResUNet-3D with MCSA in the encoder and TAMW in the decoder.

    Args:
        in_channels: channels of each modality's input (1 for CT, 1 for PET).
        num_classes: 1 = binary (one sigmoid channel, the paper's BCE + Dice); K > 1 = softmax over K
            classes including background (e.g. 3 for HECKTOR background/GTVp/GTVn).
        channels: C^1..C^5 of each encoder; the paper's (8, 16, 32, 64, 128).
        window_size: MCSA window (Hw, Ww, Dw) for every level, or one window per level (5 triples).
        mcsa_levels: encoder levels (1-based) that get MCSA; any of 1..5. The paper says "at each level";
            the default (2, 3, 4, 5) leaves level 1 out because the release (the network behind the paper's
            numbers) has no attention there, and because level 1 is the costliest place for it: at
            128×128×64 it is 4,096 windows per patch and modality. Measured: +48,368 parameters and about
            1.3× the training-step time at 64×64×32 on 2 CPU cores. ``mcsa_levels=(1, 2, 3, 4, 5)`` gives
            the paper's wording; :mod:`h2aseg.models.h2aseg_release` gives the release (levels 2–5,
            4–5 global).
        use_mcsa: switch MCSA off for the Table 2 ablation (then F^k = E^k).
        use_tamw: switch TAMW off for the Table 2 ablation (then plain concatenated skips).
        patch_size: training patch (H, W, D); decides which MCSA levels need inter-window pooling and
            is checked against the windows. Inference may use any size the windows tile.
        dropout: ``Dropout3d`` inside every residual block (the paper gives no value).
        attention_dropout: dropout on attention probabilities.
        tamw_reduction: hidden-width reduction of the TAMW MLPs.
        mcsa_residual: residual connections around the MCSA steps (see :mod:`h2aseg.models.mcsa`).
        mcsa_gate_init: learnable gates on MCSA's residual branches starting at this value (0: MCSA starts
            as the identity); None (default, the paper): no gates. See :mod:`h2aseg.models.mcsa`.
        mcsa_norm: None (default), ``"pre"`` (attend on instance-normalised features) or ``"post"`` (the
            release's IN-PReLU after each MCSA residual); see :mod:`h2aseg.models.mcsa`.
        mcsa_feeds_encoder: True (default, the paper and the release): MCSA's outputs F^k go on into the
            next encoder block, so from the first MCSA level on each encoder works on both modalities.
            False (not in the paper): F^k go to the decoder only and each encoder stays modality-pure
            (E^(k+1) = block(E^k)), so the CT encoder has to learn CT cues itself — a test of the
            reading that cross-modal mixing lets the CT stream lean on PET (``small_lesions.md`` §8.1).
        foreground_prior: binary output only: start every head's bias at logit(prior), so an untrained
            network predicts a foreground probability of ``prior`` everywhere instead of 0.5 (the prior
            initialisation of Lin et al., "Focal Loss", 2017; not specified by the paper). Tumour is a
            small fraction of a PET/CT patch, so training does not spend its first steps unlearning
            foreground everywhere, and TAMW's P̃ starts near background. None keeps PyTorch's default.

    ``forward(ct, pet)`` takes two tensors (B, in_channels, H, W, D), with H, W, D divisible by 16 and
    tiled by the windows. It returns the five deep-supervision logits [P^1, …, P^5] (P^k at 1/2^(k-1)
    of the input size) in training mode and only P^1 (B, num_classes, H, W, D) in eval mode;
    ``deep_supervision=True/False`` overrides that choice.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: Sequence[int] = (8, 16, 32, 64, 128),
        window_size: Sequence[int] | Sequence[Sequence[int]] = (8, 8, 4),
        mcsa_levels: Sequence[int] = (2, 3, 4, 5),
        use_mcsa: bool = True,
        use_tamw: bool = True,
        patch_size: Sequence[int] = PAPER_PATCH,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        tamw_reduction: int = 4,
        mcsa_residual: bool = True,
        foreground_prior: float | None = 0.01,
        mcsa_gate_init: float | None = None,
        mcsa_norm: str | None = None,
        mcsa_feeds_encoder: bool = True,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 5:
            raise ValueError(f"channels must give 5 levels, got {channels}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not set(mcsa_levels) <= {1, 2, 3, 4, 5}:
            raise ValueError(f"mcsa_levels must be within 1..5, got {tuple(mcsa_levels)}")
        self.channels = channels
        self.num_classes = num_classes
        self.windows = self._per_level_windows(window_size)
        self.use_mcsa, self.use_tamw = use_mcsa, use_tamw
        self.mcsa_feeds_encoder = mcsa_feeds_encoder
        # set before check_patch, which only asks the levels that get MCSA to tile their maps
        self.mcsa_levels = tuple(sorted(mcsa_levels)) if use_mcsa else ()
        self.patch_size = self.check_patch(patch_size)

        self.encoder_ct = ResidualEncoder(in_channels, channels, dropout)
        self.encoder_pet = ResidualEncoder(in_channels, channels, dropout)
        self.mcsa = nn.ModuleDict(
            {
                str(k): MCSA(
                    channels[k - 1],
                    self.windows[k - 1],
                    self._map_size(k),
                    attention_dropout,
                    mcsa_residual,
                    mcsa_gate_init,
                    mcsa_norm,
                )
                for k in self.mcsa_levels
            }
        )
        # Decoder levels 4..1 (index k-1); level 5 is the concatenated bottleneck.
        self.upsample = nn.ModuleDict()
        self.tamw = nn.ModuleDict()
        self.decode = nn.ModuleDict()
        for k in (4, 3, 2, 1):
            below, here = 2 * channels[k], 2 * channels[k - 1]
            self.upsample[str(k)] = nn.ConvTranspose3d(below, below, kernel_size=2, stride=2)
            if use_tamw:
                self.tamw[str(k)] = TAMW(here + below, tamw_reduction)
            self.decode[str(k)] = ResidualBlock(here + below, here, dropout=dropout)
        self.heads = nn.ModuleDict(
            {str(k): nn.Conv3d(2 * channels[k - 1], num_classes, 1) for k in range(1, 6)}
        )
        if foreground_prior is not None and num_classes == 1:
            if not 0.0 < foreground_prior < 1.0:
                raise ValueError(f"foreground_prior must lie in (0, 1), got {foreground_prior}")
            for head in self.heads.values():
                nn.init.constant_(head.bias, math.log(foreground_prior / (1.0 - foreground_prior)))

    # ----------------------------------------------------------------------------------------- checks
    def _per_level_windows(self, window_size) -> tuple[Size3, ...]:
        window_size = tuple(window_size)
        if len(window_size) == 3 and all(isinstance(w, int) for w in window_size):
            return (tuple(window_size),) * 5  # type: ignore[return-value]
        if len(window_size) == 5 and all(len(w) == 3 for w in window_size):
            return tuple(tuple(int(v) for v in w) for w in window_size)  # type: ignore[return-value]
        raise ValueError(f"window_size must be one (h, w, d) triple or five of them, got {window_size}")

    def _map_size(self, level: int) -> Size3:
        return tuple(s // 2 ** (level - 1) for s in self.patch_size)  # type: ignore[return-value]

    def check_patch(self, patch_size: Sequence[int]) -> Size3:
        """Validate a patch (H, W, D) for this network; ConfigError saying what must hold otherwise."""
        patch = tuple(int(s) for s in patch_size)
        if len(patch) != 3 or any(s < 16 or s % 16 for s in patch):
            raise ConfigError(f"patch {patch} is not usable: H2ASeg needs three sides, each a multiple of 16")
        levels = getattr(self, "mcsa_levels", (1, 2, 3, 4, 5))
        for k in levels:
            size = tuple(s // 2 ** (k - 1) for s in patch)
            check_window_tiling(size, self.windows[k - 1], where=f"patch {patch}: level {k} map")
        return patch  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------------- forward
    def encode(self, ct: torch.Tensor, pet: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(B, in, H, W, D) each -> [(F_ct^k, F_pet^k) for k = 1..5].

        The next encoder block takes F^k (default) or, with ``mcsa_feeds_encoder=False``, E^k."""
        features = []
        x_ct, x_pet = ct, pet
        for k, (block_ct, block_pet) in enumerate(
            zip(self.encoder_ct.blocks, self.encoder_pet.blocks), start=1
        ):
            x_ct, x_pet = block_ct(x_ct), block_pet(x_pet)  # E_ct^k, E_pet^k
            f_ct, f_pet = self.mcsa[str(k)](x_ct, x_pet) if str(k) in self.mcsa else (x_ct, x_pet)
            features.append((f_ct, f_pet))
            if self.mcsa_feeds_encoder:
                x_ct, x_pet = f_ct, f_pet
        return features

    def decode_levels(self, features: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Encoder features -> logits [P^1, …, P^5]."""
        f_ct, f_pet = features[4]
        d = torch.cat((f_pet, f_ct), dim=1)
        logits = {5: self.heads["5"](d)}
        for k in (4, 3, 2, 1):
            f_ct, f_pet = features[k - 1]
            fused = torch.cat((f_pet, f_ct, self.upsample[str(k)](d)), dim=1)
            if self.use_tamw:
                coarse = F.interpolate(
                    logits[k + 1], size=fused.shape[2:], mode="trilinear", align_corners=False
                )
                fused = self.tamw[str(k)](fused, foreground_probability(coarse))
            d = self.decode[str(k)](fused)
            logits[k] = self.heads[str(k)](d)
        return [logits[k] for k in range(1, 6)]

    def forward(
        self, ct: torch.Tensor, pet: torch.Tensor, deep_supervision: bool | None = None
    ) -> torch.Tensor | list[torch.Tensor]:
        """ct, pet: (B, in_channels, H, W, D) -> P^1 (B, num_classes, H, W, D), or [P^1..P^5]
        (see class doc)."""
        if ct.shape != pet.shape:
            raise ValueError(f"CT {tuple(ct.shape)} and PET {tuple(pet.shape)} must have one shape")
        if any(s % 16 for s in ct.shape[2:]):
            raise ConfigError(
                f"input of spatial size {tuple(ct.shape[2:])} is not usable: each side must divide by 16"
            )
        outputs = self.decode_levels(self.encode(ct, pet))
        if deep_supervision if deep_supervision is not None else self.training:
            return outputs
        return outputs[0]


def _h2aseg_factory(**fixed):
    def factory(**options) -> H2ASeg:
        return H2ASeg(**{**options, **fixed})

    return factory


#: The paper's network and its Table 2 ablations, all one class with flags.
VARIANTS: dict[str, tuple[dict, str]] = {
    "h2aseg": ({}, "H2ASeg (MCSA + TAMW on a dual ResUNet-3D), the paper's network"),
    "h2aseg_no_mcsa": ({"use_mcsa": False}, "Table 2 ablation: dual ResUNet-3D + TAMW (MCSA off)"),
    "h2aseg_no_tamw": ({"use_tamw": False}, "Table 2 ablation: dual ResUNet-3D + MCSA (TAMW off)"),
    "dual_resunet3d": (
        {"use_mcsa": False, "use_tamw": False},
        "Table 2 baseline: dual-branch ResUNet-3D with concatenated skips (MCSA and TAMW off)",
    ),
}
for _name, (_fixed, _description) in VARIANTS.items():
    register_model(_name, description=_description, uses_patch_size=True, deep_supervision=True)(
        _h2aseg_factory(**_fixed)
    )
