"""MONAI dictionary pipelines for training and evaluation (keys ``"ct"``, ``"pet"``, ``"label"``).

Input: the dict of :meth:`h2aseg.data.preprocess.PreprocessedCache.load` — channel-first numpy
arrays (1, X, Y, Z), already on one grid, scaled, and cropped to the body (the paper's foreground
crop is done once in preprocessing, so predictions map back to the source grid through ``meta``).

Training (the released H2ASeg code's strategy):
    1. zero padding up to ``patch_size`` where the volume is smaller (0 = air on CT, no uptake on
       PET, background on the label — see the intensity scaling in :mod:`h2aseg.data.preprocess`);
    2. ``RandCropByPosNegLabeld`` with pos 1, neg 1, ``samples_per_volume`` patches (default 2);
       negative centres are drawn inside the body (PET > 0); a lesion-free case gives negatives only;
    3. ``RandRotated`` about the axial (Z) axis, ±``rotate_degrees`` (45°), probability
       ``rotate_prob`` (0.8); bilinear for images, nearest for the label;
    4. torch tensors: ct/pet float32, label float32 (class values), shape (1, *patch_size); the
       ``meta`` entry is dropped (batches collate cleanly), ``case_id`` is kept.

Evaluation/test: whole volumes as float32 tensors (label float32), ``meta`` kept for
:func:`h2aseg.data.preprocess.restore_to_original`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    Lambdad,
    RandCropByPosNegLabeld,
    RandRotated,
    SpatialPadd,
)

__all__ = ["train_transforms", "eval_transforms", "IMAGE_KEYS", "ALL_KEYS"]

IMAGE_KEYS = ("ct", "pet")
ALL_KEYS = ("ct", "pet", "label")


def _to_float(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.as_tensor(x).float()


def train_transforms(
    patch_size: Sequence[int],
    samples_per_volume: int = 2,
    rotate_prob: float = 0.8,
    rotate_degrees: float = 45.0,
) -> Compose:
    """The paper's training pipeline.

    Args:
        patch_size: patch (X, Y, Z) in voxels, e.g. (128, 128, 64) in the paper, (48, 48, 32) on CPU.
        samples_per_volume: patches drawn per volume (half centred on lesion voxels, half not).
        rotate_prob: probability of the axial rotation.
        rotate_degrees: largest rotation angle about the axial axis, degrees.

    Returns:
        A Compose that maps one case dict to a list of ``samples_per_volume`` dicts with tensors
        ``ct``, ``pet``, ``label`` of shape (1, *patch_size).
    """
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch_size must be three positive voxel counts, got {patch_size}")
    angle = math.radians(rotate_degrees)
    return Compose(
        [
            DeleteItemsd(keys="meta"),
            Lambdad(keys=ALL_KEYS, func=_to_float, allow_missing_keys=True),
            SpatialPadd(keys=ALL_KEYS, spatial_size=patch, mode="constant", allow_missing_keys=True),
            RandCropByPosNegLabeld(
                keys=ALL_KEYS,
                label_key="label",
                spatial_size=patch,
                pos=1,
                neg=1,
                num_samples=samples_per_volume,
                image_key="pet",
                image_threshold=0.0,
                allow_smaller=False,
            ),
            RandRotated(
                keys=ALL_KEYS,
                range_x=0.0,
                range_y=0.0,
                range_z=angle,
                prob=rotate_prob,
                keep_size=True,
                mode=("bilinear", "bilinear", "nearest"),
                padding_mode="zeros",
            ),
            EnsureTyped(keys=ALL_KEYS, data_type="tensor", dtype=torch.float32, track_meta=False),
        ]
    )


def eval_transforms() -> Compose:
    """Whole-volume pipeline for validation and test: numpy (1, X, Y, Z) → float32 tensors, meta kept."""
    return Compose(
        [
            Lambdad(keys=ALL_KEYS, func=_to_float, allow_missing_keys=True),
            EnsureTyped(keys=ALL_KEYS, data_type="tensor", dtype=torch.float32, track_meta=False,
                        allow_missing_keys=True),
        ]
    )
