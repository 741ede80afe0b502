"""Table 3 of the paper: which PET and CT channels TAMW emphasises at each decoder depth.

TAMW at decoder level k (Eqs. 2–4) re-weights F^k = concat(F_pet^k, F_ct^k, up(D^{k+1})) with one
weight per channel, W_fore^k and W_back^k in (−1, 1). Channels ``[0, C^k)`` of F^k are PET and
``[C^k, 2C^k)`` are CT (C^k = ``model.channels[k-1]``); the up-sampled decoder channels are not counted.
The authors' release (``h2aseg_release``) puts CT first; a TAMW module's ``modalities`` attribute gives
the order (PET, CT when it has none).

Sign convention. The paper calls a channel *emphasised* when its weight is > 0 (Sec. 2.2), reading
Eq. 4, F_enh = F + W_fore ⊙ F_fore + W_back ⊙ F_back, where a positive weight adds the term. The release
computes F_enh = F + W_fore ⊙ F_fore − W_back ⊙ F_back, so there a positive W_back *removes* the background
term and "W_back > 0" means the opposite. Here a channel is emphasised when the coefficient of its term in
F_enh is positive: W_fore > 0 for the foreground, and ``back_sign`` · W_back > 0 for the background, with
``back_sign`` = +1 for ``h2aseg`` (Eq. 4) and −1 for ``h2aseg_release`` (the TAMW module's ``back_sign``
attribute; +1 when it has none). For the release, the share of channels with a raw W_back > 0, which is
what "W_back > 0" in its own code counts, is therefore 100 − the background share reported here (weights
of exactly 0 aside). The foreground columns mean the same for both networks.

Definition implemented here (the paper does not spell out how weights of one case are pooled):

1. During sliding-window inference of a test case every patch p gives W_fore^k(p) and back_sign · W_back^k(p)
   (read with forward hooks on ``model.tamw[str(k)].fore_weights`` / ``.back_weights``) and the mean
   foreground probability m_p = mean(P̃^k(p)) that TAMW received (a forward pre-hook on
   ``model.tamw[str(k)]``).
2. The case's weight of channel c is the patch average weighted by how much of the patch each term
   acts on: W̄_fore,c = Σ_p m_p W_fore,c(p) / Σ_p m_p and W̄_back,c = Σ_p (1 − m_p) W_back,c(p) /
   Σ_p (1 − m_p). A patch without predicted foreground multiplies W_fore by zero in Eq. 4, so it does not
   vote on foreground emphasis. When a case has no foreground mass at all (Σ_p m_p = 0) the plain
   patch mean is used.
3. The case's share for a modality is 100 · |{c in that modality's channels : W̄_c > 0}| / C^k.
4. Table 3 reports, per depth, mean ± std (population) of the shares over the test cases of one seed,
   then both averaged over seeds (:mod:`h2aseg.benchmarking.tables`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from torch import nn

__all__ = ["TAMW_COLUMNS", "TAMWRecorder", "has_tamw", "shares_from_weights"]

#: Per-case columns of ``tamw/per_case.csv`` (besides ``case_id``, ``depth``, ``patches``), in %.
TAMW_COLUMNS: tuple[str, ...] = ("fore_pet", "fore_ct", "back_pet", "back_ct")


def has_tamw(model: nn.Module) -> bool:
    """True for a network with TAMW modules (H2ASeg, its ``h2aseg_no_mcsa`` ablation, ``h2aseg_release``)."""
    tamw = getattr(model, "tamw", None)
    return isinstance(tamw, nn.ModuleDict) and len(tamw) > 0 and hasattr(model, "channels")


def _weighted_mean(weights: np.ndarray, mass: np.ndarray) -> np.ndarray:
    total = float(mass.sum())
    if total <= 0.0:
        return weights.mean(axis=0)
    return (mass[:, None] * weights).sum(axis=0) / total


def shares_from_weights(
    fore: np.ndarray,
    back: np.ndarray,
    foreground_mass: np.ndarray,
    channels: int,
    modalities: tuple[str, str] = ("pet", "ct"),
) -> dict[str, float]:
    """Shares (%) of PET and CT channels emphasised (weight > 0) for one case at one depth.

    Args:
        fore, back: (patches, 2(C^k + C^{k+1})) W_fore^k and back_sign · W_back^k of every patch of the case
            (the coefficients of the two terms in F_enh; see the module docstring).
        foreground_mass: (patches,) mean foreground probability m_p of each patch.
        channels: C^k, the channels of each modality at this depth.
        modalities: which modality the first and the second C^k channels of F^k hold.

    Returns:
        ``{"fore_pet", "fore_ct", "back_pet", "back_ct"}`` in [0, 100] (see the module docstring).
    """
    fore, back = np.asarray(fore, float), np.asarray(back, float)
    mass = np.clip(np.asarray(foreground_mass, float), 0.0, 1.0)
    if (
        fore.ndim != 2
        or fore.shape != back.shape
        or fore.shape[0] != mass.shape[0]
        or fore.shape[1] < 2 * channels
    ):
        raise ValueError(
            f"TAMW weights {fore.shape}/{back.shape} do not fit {mass.shape[0]} patches of ≥ {2 * channels} "
            "channels"
        )
    w_fore = _weighted_mean(fore, mass)
    w_back = _weighted_mean(back, 1.0 - mass)
    if sorted(modalities) != ["ct", "pet"]:
        raise ValueError(f"modalities must name 'pet' and 'ct' once each, got {modalities}")
    first, second = slice(0, channels), slice(channels, 2 * channels)
    pet, ct = (first, second) if modalities[0] == "pet" else (second, first)
    return {
        "fore_pet": 100.0 * float((w_fore[pet] > 0).mean()),
        "fore_ct": 100.0 * float((w_fore[ct] > 0).mean()),
        "back_pet": 100.0 * float((w_back[pet] > 0).mean()),
        "back_ct": 100.0 * float((w_back[ct] > 0).mean()),
    }


class TAMWRecorder:
    """Forward hooks that collect every TAMW weight vector of a network while it predicts.

    Use :meth:`attached` around inference; call :meth:`reset` before each case and
    :meth:`case_rows` after it.

    Args:
        model: a network with ``model.tamw`` (ModuleDict keyed by decoder level) and ``model.channels``.
    """

    def __init__(self, model: nn.Module) -> None:
        if not has_tamw(model):
            raise ValueError(f"{type(model).__name__} has no TAMW modules to record")
        self.model = model
        self.levels = sorted(int(k) for k in model.tamw)
        self.channels = {k: int(model.channels[k - 1]) for k in self.levels}
        self.modalities = {
            k: tuple(getattr(model.tamw[str(k)], "modalities", ("pet", "ct"))) for k in self.levels
        }
        self.back_sign = {k: float(getattr(model.tamw[str(k)], "back_sign", 1.0)) for k in self.levels}
        self.reset()

    def reset(self) -> None:
        self._mass: dict[int, list[np.ndarray]] = {k: [] for k in self.levels}
        self._fore: dict[int, list[np.ndarray]] = {k: [] for k in self.levels}
        self._back: dict[int, list[np.ndarray]] = {k: [] for k in self.levels}

    def _hooks(self, level: int):
        def pre(_module, args):
            probability = args[1]
            self._mass[level].append(
                probability.detach().float().mean(dim=tuple(range(1, probability.ndim))).cpu().numpy()
            )

        def fore(_module, _args, output):
            self._fore[level].append(output.detach().float().cpu().numpy())

        def back(_module, _args, output):
            self._back[level].append(self.back_sign[level] * output.detach().float().cpu().numpy())

        return pre, fore, back

    @contextmanager
    def attached(self) -> Iterator[TAMWRecorder]:
        """Register the hooks for the duration of the ``with`` block."""
        handles = []
        try:
            for k in self.levels:
                module = self.model.tamw[str(k)]
                pre, fore, back = self._hooks(k)
                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.fore_weights.register_forward_hook(fore))
                handles.append(module.back_weights.register_forward_hook(back))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def case_rows(self, case_id: str) -> list[dict]:
        """One row per depth for the patches recorded since :meth:`reset`
        (see :func:`shares_from_weights`)."""
        rows = []
        for k in self.levels:
            if not self._fore[k]:
                continue
            fore, back = np.concatenate(self._fore[k]), np.concatenate(self._back[k])
            mass = np.concatenate(self._mass[k])
            shares = shares_from_weights(fore, back, mass, self.channels[k], self.modalities[k])
            rows.append({"case_id": case_id, "depth": k, **shares, "patches": int(fore.shape[0])})
        return rows
