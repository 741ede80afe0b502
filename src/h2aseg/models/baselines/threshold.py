"""Reference rows that need no training: fixed SUV thresholds, as used in clinical practice.

* ``suv2.5`` — every voxel with SUV ≥ 2.5 (the common "SUV 2.5" rule for FDG).
* ``suv41`` — the 41 % of SUVmax isocontour (EANM guideline habit), applied per lesion: the seed mask is
  SUV ≥ ``seed_threshold``; each 26-connected component R of it is one candidate lesion, and
  inside R the voxels with SUV ≥ ``fraction`` · max_R(SUV) are kept. Formally

      M = ∪_R { x ∈ R : SUV(x) ≥ f · max_{y∈R} SUV(y) },  R ∈ components₂₆({SUV ≥ s})

  The contour never leaves its seed component, so a region whose SUVmax is below s / f (6.1 for
  2.5 / 0.41) is kept whole. Optionally, components smaller than ``min_volume_ml`` are dropped first
  (needs ``spacing``).

Both show on a benchmark table what PET alone, without learning, gives: they segment brain, heart,
kidneys and bladder as readily as tumours. Arrays are (X, Y, Z) SUV volumes; results are uint8 masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from h2aseg.constants import MM3_PER_ML

_STRUCTURE_26 = np.ones((3, 3, 3), dtype=bool)


def _check_volume(pet_suv: np.ndarray) -> np.ndarray:
    pet_suv = np.asarray(pet_suv)
    if pet_suv.ndim != 3:
        raise ValueError(f"pet_suv must be a 3-D (X, Y, Z) SUV volume, got shape {pet_suv.shape}")
    return pet_suv


def suv_threshold(
    pet_suv: np.ndarray, threshold: float = 2.5, spacing: Sequence[float] | None = None
) -> np.ndarray:
    """Mask of voxels with SUV ≥ ``threshold`` (NaN counts as below).

    Args:
        pet_suv: (X, Y, Z) SUV volume.
        threshold: SUV cut-off (must be positive).
        spacing: accepted so that every entry of :data:`THRESHOLD_METHODS` is called alike; unused.

    Returns:
        (X, Y, Z) uint8 mask, 1 inside.
    """
    pet_suv = _check_volume(pet_suv)
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive SUV, got {threshold!r}")
    return (pet_suv >= threshold).astype(np.uint8)


def suv_max_fraction(
    pet_suv: np.ndarray,
    fraction: float = 0.41,
    seed_threshold: float = 2.5,
    spacing: Sequence[float] | None = None,
    min_volume_ml: float = 0.0,
) -> np.ndarray:
    """Per-region ``fraction`` of SUVmax isocontour inside the components of SUV ≥ ``seed_threshold``.

    The exact rule is in the module docstring.

    Args:
        pet_suv: (X, Y, Z) SUV volume.
        fraction: share of each region's SUVmax a voxel must reach, in (0, 1].
        seed_threshold: SUV that defines the candidate regions (must be positive).
        spacing: voxel size (mm) along (X, Y, Z); needed only with ``min_volume_ml``.
        min_volume_ml: seed components smaller than this (ml) are discarded before the contour.

    Returns:
        (X, Y, Z) uint8 mask, 1 inside.
    """
    pet_suv = _check_volume(pet_suv)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if not seed_threshold > 0:
        raise ValueError(f"seed_threshold must be a positive SUV, got {seed_threshold!r}")
    if min_volume_ml < 0:
        raise ValueError(f"min_volume_ml must be ≥ 0, got {min_volume_ml!r}")
    seeds = pet_suv >= seed_threshold
    labels, count = ndimage.label(seeds, structure=_STRUCTURE_26)
    if count == 0:
        return np.zeros(pet_suv.shape, dtype=np.uint8)
    index = np.arange(1, count + 1)
    cut = fraction * np.asarray(ndimage.maximum(pet_suv, labels, index), dtype=np.float64)
    if min_volume_ml > 0:
        if spacing is None or len(spacing) != 3:
            raise ValueError("min_volume_ml needs spacing, the voxel size (mm) along (X, Y, Z)")
        voxel_ml = float(np.prod(spacing)) / MM3_PER_ML
        small = np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_ml < min_volume_ml
        cut[small] = np.inf
    per_voxel_cut = np.concatenate([[np.inf], cut])[labels]
    return (seeds & (pet_suv >= per_voxel_cut)).astype(np.uint8)


#: Name -> function ``fn(pet_suv, spacing=None) -> uint8 mask`` for the training-free reference rows.
THRESHOLD_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "suv2.5": suv_threshold,
    "suv41": suv_max_fraction,
}
