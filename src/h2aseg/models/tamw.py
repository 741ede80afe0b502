"""Target-Aware Modality Weighting (TAMW), Lu et al., "H2ASeg", MICCAI 2024, Sec. 2.2, Eqs. 2–4.

At decoder level k::

    F      = concat(F_pet^k, F_ct^k, up(D^{k+1}))            2(C^k + C^{k+1}) channels
    F_fore = P̃ ⊙ F,   F_back = (1 − P̃) ⊙ F                  (Eq. 2, P̃ = up-sampled foreground probability)
    W_fore = tanh(MLP_fore(GAP(F_fore)))                      (Eq. 3, one weight per channel)
    W_back = tanh(MLP_back(GAP(F_back)))
    F_enh  = F + W_fore ⊙ F_fore + W_back ⊙ F_back           (Eq. 4)

The MLP's hidden width (channels / ``reduction``, at least 4) is not given in the paper; 4 follows the
authors' release. Unlike the release, which subtracts the background term, we add it as Eq. 4 writes.
Each weighting is its own sub-module (:class:`ChannelWeights`) so the Table 3 analysis can read W_fore
and W_back with forward hooks.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelWeights(nn.Module):
    """tanh(MLP(global average pool(x))): one weight in (−1, 1) per channel (Eq. 3).

    Args:
        channels: channels of x.
        reduction: hidden width of the two-layer MLP is ``max(channels // reduction, min_hidden)``.
        activation: the MLP's hidden activation (ReLU here; the authors' release uses tanh).
        min_hidden: smallest hidden width (4 here; 1 in the release, which has no floor).

    Shapes: x (B, C, H, W, D) -> weights (B, C).
    """

    def __init__(
        self, channels: int, reduction: int = 4, activation: type[nn.Module] = nn.ReLU, min_hidden: int = 4
    ) -> None:
        super().__init__()
        hidden = max(channels // reduction, min_hidden)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), activation(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(x.mean(dim=(2, 3, 4))))


class TAMW(nn.Module):
    """Foreground/background channel re-weighting guided by the coarser level's prediction (Eqs. 2–4).

    Args:
        channels: channels of F, i.e. 2(C^k + C^{k+1}).
        reduction: MLP reduction of :class:`ChannelWeights`.

    Shapes: ``forward(features, probability)``: features F (B, channels, H, W, D), probability P̃
    (B, 1, H, W, D) in [0, 1] -> F_enh (B, channels, H, W, D).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fore_weights = ChannelWeights(channels, reduction)
        self.back_weights = ChannelWeights(channels, reduction)

    def forward(self, features: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
        fore = probability * features
        back = features - fore  # (1 − P̃) ⊙ F
        w_fore = self.fore_weights(fore)[:, :, None, None, None]
        w_back = self.back_weights(back)[:, :, None, None, None]
        return features + w_fore * fore + w_back * back
