"""Statistics that let a reader judge a difference between two methods scored on the same studies.

- :func:`mean_std`: mean ± standard deviation over studies (population std, as
  :func:`h2aseg.evaluation.report.summarise`), NaN values skipped.
- :func:`over_seeds`: mean ± standard deviation over seeds of the per-seed means (how much a result moves
  when only the training seed changes).
- :func:`paired_bootstrap`: the mean of the per-study differences ``a_i - b_i`` and its percentile
  bootstrap interval: resample the studies with replacement ``n_resamples`` times (seeded), take the mean
  difference of each resample, and report the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
  quantiles. The study is the unit that is resampled, so the interval reflects how the difference varies
  from study to study; it does not include the seed-to-seed variation of training (average each study's
  score over seeds first to fold that in).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BootstrapResult", "mean_std", "over_seeds", "paired_bootstrap", "spread"]


@dataclass(frozen=True)
class BootstrapResult:
    """A paired mean difference ``mean(a - b)`` with its bootstrap interval ``[low, high]`` over ``n``
    studies."""

    mean_difference: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    n_resamples: int = 10_000

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is outside its noise)."""
        return self.n > 0 and (self.low > 0.0 or self.high < 0.0)

    def scaled(self, factor: float) -> BootstrapResult:
        """The same result in other units (e.g. ``factor`` 100 for Dice points)."""
        return BootstrapResult(
            self.mean_difference * factor,
            self.low * factor,
            self.high * factor,
            self.n,
            self.confidence,
            self.n_resamples,
        )


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation of the finite ``values`` (NaN, NaN when there is none)."""
    finite = _finite(values)
    if finite.size == 0:
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std())


def over_seeds(per_seed: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean ± std over seeds of each seed's mean over studies.

    Args:
        per_seed: one sequence of per-study values for each seed.

    Returns:
        (mean of the per-seed means, population std of the per-seed means); the std is NaN with fewer
        than two seeds.
    """
    means = [mean_std(values)[0] for values in per_seed]
    return mean_std(means)[0], spread(means)


def spread(values: Sequence[float]) -> float:
    """Population standard deviation of the finite ``values``; NaN with fewer than two (one seed has no
    spread)."""
    finite = _finite(values)
    return float(finite.std()) if finite.size > 1 else math.nan


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Mean of ``a_i - b_i`` over studies and its percentile bootstrap interval (see the module docstring).

    Args:
        a, b: per-study scores of two methods, in the same study order; pairs with a NaN are left out.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (same inputs and seed, same interval).
        confidence: interval coverage, e.g. 0.95.

    Returns:
        A :class:`BootstrapResult`; every number NaN when no pair is left.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, ``n_resamples`` < 1, or ``confidence`` not in (0, 1).
    """
    a_arr, b_arr = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"paired scores need one value per study on both sides, got {a_arr.size} and {b_arr.size}"
        )
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    differences = (a_arr - b_arr)[np.isfinite(a_arr) & np.isfinite(b_arr)]
    n = int(differences.size)
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, confidence, n_resamples)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n)  # bounded memory: at most ~2M drawn indices at a time
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        means[start:stop] = differences[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return BootstrapResult(float(differences.mean()), float(low), float(high), n, confidence, n_resamples)
