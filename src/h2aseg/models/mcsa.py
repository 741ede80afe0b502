"""Modality-Cooperative Spatial Attention (MCSA), Lu et al., "H2ASeg", MICCAI 2024, Sec. 2.1, Fig. 2(a).

MCSA turns the encoder features E_ct^k, E_pet^k (C×H×W×D) into F_ct^k, F_pet^k in two steps::

    E --pool window->token (conv, kernel = stride = window)--> C×(H/Hw)×(W/Ww)×(D/Dw)
      --BDSA over the token grid (inter-window, long range)--> --trilinear up-sampling--> Ê
    Ê --window partition (N_h·N_w·N_d windows of Hw×Ww×Dw)--> BDSA inside every window (intra-window,
      local detail) --window reconstruction--> F

Where a map is not larger than one window, inter-window attention has nothing to do and intra-window
attention becomes global attention over the whole map (the paper's level 5 at its 128×128×64 patch).

Choice where the paper is silent: each step adds its input back (``residual=True``):
Ê = E + up(BDSA(pool(E))) and F = Ê + windows⁻¹(BDSA(windows(Ê))). Without it the trilinear up-sampling
of the token grid would replace the encoder features by a blurred copy before the intra-window step.
``residual=False`` gives the literal composition.

Option (not in the paper): ``gate_init`` scales each residual branch by a learnable per-channel gate γ
(one per step and modality) that starts at ``gate_init``: Ê = E + γ₁·up(BDSA(pool(E))),
F = Ê + γ₂·windows⁻¹(BDSA(windows(Ê))).
With 0 the module starts as the identity, so the encoder begins as the plain dual-branch backbone and learns
how much attention to mix in (ReZero/LayerScale-style); None (default) leaves the branches unscaled.

Option (where the paper is silent): ``norm`` normalises around the two steps. The encoder's residual stream is
not normalised (pre-activation ResUNet blocks), so by default BDSA's 1×1×1 projections, and with them the
attention logits QᵀK/√C, see features whose scale grows with depth and training.
``"pre"`` (the transformer habit): each step attends on instance-normalised inputs and adds to the raw stream,
Ê = E + up(BDSA(pool(IN(E)))), F = Ê + windows⁻¹(BDSA(windows(IN(Ê)))).
``"post"`` (the authors' release, ``model/Attention.py``): Ê = IN-PReLU(E + up(·)),
F = IN-PReLU(Ê + windows⁻¹(·)).
None (default): neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from h2aseg.errors import ConfigError
from h2aseg.models.bdsa import BDSA
from h2aseg.models.blocks import norm_act

MCSA_NORMS = (None, "pre", "post")

Size3 = tuple[int, int, int]


def effective_window(size: Size3, window: Size3) -> Size3:
    """Per axis, the window side clipped to the map side (a map no larger than a window is one window)."""
    return tuple(min(s, w) for s, w in zip(size, window))  # type: ignore[return-value]


def check_window_tiling(size: Size3, window: Size3, where: str = "feature map") -> Size3:
    """The effective window for ``size``; ConfigError when the windows cannot tile the map."""
    eff = effective_window(size, window)
    if any(s % w for s, w in zip(size, eff)):
        raise ConfigError(
            f"{where} of size {tuple(size)} cannot be tiled by MCSA windows {tuple(window)}: "
            "choose a patch whose sides divide by 16 and by the window on every level where MCSA applies"
        )
    return eff


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """(B, C, H, W, D) -> (B·N_h·N_w·N_d, C, Hw, Ww, Dw), windows in row-major order of (N_h, N_w, N_d)."""
    b, c, h, w, d = x.shape
    wh, ww, wd = window
    x = x.reshape(b, c, h // wh, wh, w // ww, ww, d // wd, wd)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(-1, c, wh, ww, wd)


def window_reverse(windows: torch.Tensor, size: Size3) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B·N_h·N_w·N_d, C, Hw, Ww, Dw) -> (B, C, H, W, D)."""
    n, c, wh, ww, wd = windows.shape
    h, w, d = size
    nh, nw, nd = h // wh, w // ww, d // wd
    x = windows.reshape(n // (nh * nw * nd), nh, nw, nd, c, wh, ww, wd)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(-1, c, h, w, d)


class MCSA(nn.Module):
    """Inter-window then intra-window BDSA between CT and PET features of one encoder level.

    Args:
        channels: C^k, channels of each modality at this level.
        window_size: (Hw, Ww, Dw), the paper's (8, 8, 4).
        map_size: (H^k, W^k, D^k) of this level at the training patch. It decides whether the level needs
            inter-window attention (map larger than one window on some axis) and so whether the pooling
            convolutions exist; a map no larger than one window gets global attention only.
        attention_dropout: dropout on attention probabilities.
        residual: add each step's input back (see the module docstring).
        gate_init: start value of learnable per-channel gates on the residual branches; None: no gates.
        norm: None, ``"pre"`` or ``"post"``: instance normalisation around the steps (module docstring).

    Shapes: ``forward(ct, pet)``: (B, C, H, W, D) each -> ``(F_ct, F_pet)`` of the same shape. Any map
    size tiled by the window works at run time (sliding-window inference uses the training patch).
    """

    def __init__(
        self,
        channels: int,
        window_size: Size3,
        map_size: Size3,
        attention_dropout: float = 0.0,
        residual: bool = True,
        gate_init: float | None = None,
        norm: str | None = None,
    ) -> None:
        super().__init__()
        if gate_init is not None and not residual:
            raise ConfigError("MCSA gates scale the residual branches: gate_init needs residual=True")
        if norm not in MCSA_NORMS:
            raise ConfigError(f"MCSA norm must be one of {MCSA_NORMS}, got {norm!r}")
        if norm is not None and not residual:
            raise ConfigError("MCSA norm acts around the residual steps: it needs residual=True")
        self.window_size = tuple(window_size)
        self.residual = residual
        eff = check_window_tiling(tuple(map_size), self.window_size)
        self.has_inter_window = tuple(eff) != tuple(map_size)
        if self.has_inter_window:
            # One token per window: a convolution whose kernel and stride equal the window (per modality).
            self.pool_ct = nn.Conv3d(channels, channels, kernel_size=eff, stride=eff)
            self.pool_pet = nn.Conv3d(channels, channels, kernel_size=eff, stride=eff)
            self.inter = BDSA(channels, attention_dropout)
        self.intra = BDSA(channels, attention_dropout)
        # gates (steps × modalities = inter ct, inter pet, intra ct, intra pet; each (1, C, 1, 1, 1))
        shape = (4, 1, channels, 1, 1, 1)
        self.gates = None if gate_init is None else nn.Parameter(torch.full(shape, float(gate_init)))
        # norms in the gates' order (inter ct, inter pet, intra ct, intra pet); identity where unused
        self.norm = norm
        steps = 4 if self.has_inter_window else 2
        make = {None: lambda: nn.Identity(), "pre": lambda: nn.InstanceNorm3d(channels, affine=True)}
        make["post"] = lambda: norm_act(channels)
        self.norms = nn.ModuleList([nn.Identity()] * (4 - steps) + [make[norm]() for _ in range(steps)])

    def _pre(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The input a step attends on: IN(x) with ``norm="pre"``, x otherwise."""
        return self.norms[index](x) if self.norm == "pre" else x

    def _post(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """A step's output: IN-PReLU(x) with ``norm="post"``, x otherwise."""
        return self.norms[index](x) if self.norm == "post" else x

    def _gated(self, x: torch.Tensor, branch: torch.Tensor, index: int) -> torch.Tensor:
        """x + γ_index · branch (x + branch without gates), then IN-PReLU with ``norm="post"``."""
        return self._post(x + (branch if self.gates is None else self.gates[index] * branch), index)

    def _inter_window(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = ct.shape[2:]
        tokens_ct, tokens_pet = self.inter(self.pool_ct(self._pre(ct, 0)), self.pool_pet(self._pre(pet, 1)))
        up_ct = F.interpolate(tokens_ct, size=size, mode="trilinear", align_corners=False)
        up_pet = F.interpolate(tokens_pet, size=size, mode="trilinear", align_corners=False)
        if self.residual:
            return self._gated(ct, up_ct, 0), self._gated(pet, up_pet, 1)
        return up_ct, up_pet

    def _intra_window(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = tuple(ct.shape[2:])
        window = check_window_tiling(size, self.window_size)
        out_ct, out_pet = self.intra(
            window_partition(self._pre(ct, 2), window), window_partition(self._pre(pet, 3), window)
        )
        out_ct, out_pet = window_reverse(out_ct, size), window_reverse(out_pet, size)
        if self.residual:
            return self._gated(ct, out_ct, 2), self._gated(pet, out_pet, 3)
        return out_ct, out_pet

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ct, pet: (B, C, H, W, D) -> (F_ct, F_pet), each (B, C, H, W, D)."""
        if self.has_inter_window:
            ct, pet = self._inter_window(ct, pet)
        return self._intra_window(ct, pet)
