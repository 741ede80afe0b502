"""MONAI dictionary pipelines for training and evaluation (keys ``"ct"``, ``"pet"``, ``"label"``).

Input: the dict of :meth:`h2aseg.data.preprocess.PreprocessedCache.load` — channel-first numpy
arrays (1, X, Y, Z), already on one grid, scaled, and cropped to the body (the paper's foreground
crop is done once in preprocessing, so predictions map back to the source grid through ``meta``).

Training (the released H2ASeg code's strategy, plus a random lesion position):
    1. zero padding up to the crop size where the volume is smaller (0 = air on CT, no uptake on
       PET, background on the label — see the intensity scaling in :mod:`h2aseg.data.preprocess`);
    2. ``RandCropByPosNegLabeld`` with pos 1, neg 1, ``samples_per_volume`` crops (default 2);
       negative centres are drawn inside the body (PET > 0); a lesion-free case gives negatives only;
       with ``lesion_offset`` > 0 these crops are larger by 2·m voxels per axis and a random
       ``patch_size`` crop inside each (``RandSpatialCropd``) moves the chosen voxel anywhere within ±m
       of the patch centre, m = ⌊lesion_offset · (patch/2 − 1)⌋. With ``lesion_offset`` = 0 (the
       release) every positive patch has a lesion voxel at its centre, and a network that can tell
       where in the patch a feature lies (MCSA's fixed window grid) learns "lesion = centre" and then
       finds nothing in a sliding window (``benchmarks/results/small_lesions.md``);
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
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    Lambdad,
    MapTransform,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    Randomizable,
    RandRotated,
    RandSpatialCropd,
    SpatialPadd,
)

__all__ = ["train_transforms", "eval_transforms", "IMAGE_KEYS", "ALL_KEYS"]

IMAGE_KEYS = ("ct", "pet")
ALL_KEYS = ("ct", "pet", "label")


def _to_float(x):
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return torch.as_tensor(x).float()


SAMPLING_KEY = "sampling"


@contextmanager
def plain_tensors():
    """MONAI transforms return plain tensors inside (no MetaTensor bookkeeping), restored afterwards.

    The training pipeline drops all metadata at the end anyway; without the tracking, a 32³ crop and
    rotation of three keys costs about half (24 → 13 ms per patch for the rotation on 2 CPU cores).
    """
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


class PlainTensorCompose(Compose):
    """A :class:`~monai.transforms.Compose` that runs under :func:`plain_tensors`."""

    def __call__(self, input_, *args, **kwargs):
        with plain_tensors():
            return super().__call__(input_, *args, **kwargs)


def _sampling_classes(data: dict, hot_threshold: float) -> dict:
    """Add ``sampling``: 1 = lesion, 2 = PET-avid tissue outside the lesion (PET ≥ hot_threshold),
    0 = rest."""
    label = np.asarray(data["label"]) > 0
    hot = (np.asarray(data["pet"]) >= hot_threshold) & ~label
    classes = label.astype(np.uint8)
    classes[hot] = 2
    return {**data, SAMPLING_KEY: classes}


def _crop(patch: tuple[int, ...], samples_per_volume: int, hot_negative_threshold: float | None):
    """The paper's pos 1 / neg 1 crop, or lesion 2 : body 1 : PET-avid non-lesion 1 (hot negatives)."""
    if hot_negative_threshold is None:
        return [
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
            )
        ]
    return [
        RandCropByLabelClassesd(
            keys=ALL_KEYS,
            label_key=SAMPLING_KEY,
            spatial_size=patch,
            ratios=(1, 2, 1),
            num_classes=3,
            num_samples=samples_per_volume,
            image_key="pet",
            image_threshold=0.0,
            warn=False,
        ),
        DeleteItemsd(keys=SAMPLING_KEY),
    ]


class LesionKeepingCropd(Randomizable, MapTransform):
    """A random ``patch`` crop inside a crop larger by 2·m per axis that keeps the chosen lesion whole.

    The input crop is centred on a lesion voxel (positive crops) or a body voxel (negative ones). Per axis
    the patch start ``s`` in [0, 2m] is drawn uniformly from the starts whose patch still holds the whole
    bounding box of the lesion under the crop centre (its 26-connected component); where no start does
    (a lesion larger than the patch) or the centre is not a lesion voxel, from all of [0, 2m]. A small lesion
    so lands anywhere within ±m of the patch centre (no "lesion = centre" cue), while a large one is moved
    only as far as it stays inside the patch, instead of being cut by the patch border.

    Shapes: every key (C, X+2m_x, Y+2m_y, Z+2m_z) -> (C, X, Y, Z); ``label`` (1, ...) decides.
    """

    def __init__(self, keys: Sequence[str], patch: Sequence[int], label_key: str = "label") -> None:
        MapTransform.__init__(self, keys, allow_missing_keys=True)
        self.patch, self.label_key = tuple(int(v) for v in patch), label_key

    def _starts(self, label: np.ndarray) -> list[int]:
        from scipy import ndimage

        spare = [n - p for n, p in zip(label.shape, self.patch)]
        centre = tuple(n // 2 for n in label.shape)
        ranges = [(0, m) for m in spare]
        if label[centre] > 0:
            components, _ = ndimage.label(label > 0, structure=np.ones((3, 3, 3)))
            voxels = np.nonzero(components == components[centre])
            for axis, (m, p) in enumerate(zip(spare, self.patch)):
                lo, hi = max(0, int(voxels[axis].max()) + 1 - p), min(m, int(voxels[axis].min()))
                if lo <= hi:
                    ranges[axis] = (lo, hi)
        return [int(self.R.randint(lo, hi + 1)) for lo, hi in ranges]

    def __call__(self, data):
        d = dict(data)
        label = np.asarray(d[self.label_key][0])
        starts = self._starts(label)
        box = (slice(None), *(slice(s, s + p) for s, p in zip(starts, self.patch)))
        for key in self.key_iterator(d):
            d[key] = d[key][box]
        return d


def offset_margin(patch: Sequence[int], lesion_offset: float) -> tuple[int, ...]:
    """m per axis: how far (voxels) the crop's chosen voxel may sit from the patch centre."""
    if not 0.0 <= lesion_offset <= 1.0:
        raise ValueError(f"lesion_offset must lie in [0, 1], got {lesion_offset}")
    return tuple(int(lesion_offset * max(p // 2 - 1, 0)) for p in patch)


def train_transforms(
    patch_size: Sequence[int],
    samples_per_volume: int = 2,
    rotate_prob: float = 0.8,
    rotate_degrees: float = 45.0,
    hot_negative_threshold: float | None = None,
    lesion_offset: float = 0.0,
    keep_lesion_whole: bool = False,
) -> Compose:
    """The paper's training pipeline.

    Args:
        patch_size: patch (X, Y, Z) in voxels, e.g. (128, 128, 64) in the paper, (48, 48, 32) on CPU.
        samples_per_volume: patches drawn per volume (half centred on lesion voxels, half not).
        rotate_prob: probability of the axial rotation.
        rotate_degrees: largest rotation angle about the axial axis, degrees.
        hot_negative_threshold: None keeps the paper's RandCropByPosNegLabel (pos 1 / neg 1). A value
            (in the cache's scaled PET units, e.g. SUV 2.5 / suv_scale) centres crops on lesion voxels,
            on other body voxels and on PET-avid voxels outside lesions in the ratio 2 : 1 : 1, so that
            organs and benign uptake, which random negatives rarely hit, are seen as negatives often.
            Not in the paper; off by default.
        lesion_offset: 0 centres every crop on its chosen voxel (the release); f in (0, 1] puts the
            voxel at a uniformly random place within ±f·(patch/2 − 1) voxels of the centre per axis.
        keep_lesion_whole: with ``lesion_offset`` > 0, move a lesion only as far as its whole extent stays
            inside the patch (:class:`LesionKeepingCropd`) instead of uniformly.

    Returns:
        A Compose (run without MetaTensor tracking) that maps one case dict to a list of
        ``samples_per_volume`` dicts with tensors ``ct``, ``pet``, ``label`` of shape (1, *patch_size).
    """
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or min(patch) < 1:
        raise ValueError(f"patch_size must be three positive voxel counts, got {patch_size}")
    angle = math.radians(rotate_degrees)
    margin = offset_margin(patch, lesion_offset)
    crop = tuple(p + 2 * m for p, m in zip(patch, margin))
    return PlainTensorCompose(
        [
            DeleteItemsd(keys="meta"),
            Lambdad(keys=ALL_KEYS, func=_to_float, allow_missing_keys=True),
            SpatialPadd(keys=ALL_KEYS, spatial_size=crop, mode="constant", allow_missing_keys=True),
            *(
                []
                if hot_negative_threshold is None
                else [partial(_sampling_classes, hot_threshold=hot_negative_threshold)]
            ),
            *_crop(crop, samples_per_volume, hot_negative_threshold),
            *([] if crop == patch else [_offset_crop(patch, keep_lesion_whole)]),
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


def _offset_crop(patch: tuple[int, ...], keep_lesion_whole: bool):
    if keep_lesion_whole:
        return LesionKeepingCropd(ALL_KEYS, patch)
    return RandSpatialCropd(keys=ALL_KEYS, roi_size=patch, random_size=False)


def eval_transforms() -> Compose:
    """Whole-volume pipeline for validation and test: numpy (1, X, Y, Z) → float32 tensors, meta kept."""
    return Compose(
        [
            Lambdad(keys=ALL_KEYS, func=_to_float, allow_missing_keys=True),
            EnsureTyped(
                keys=ALL_KEYS,
                data_type="tensor",
                dtype=torch.float32,
                track_meta=False,
                allow_missing_keys=True,
            ),
        ]
    )
