"""Putting CT, PET and label on one grid, scaling intensities, and caching the result on disk.

Processing grid (choice, documented):
    The PET grid, re-oriented to LPS axes (``sitk.DICOMOrient``, an exact permutation/flip), cropped
    to the part of the PET field that the CT also covers, then cropped to the body (CT above
    ``body_threshold_hu``) plus ``crop_margin`` voxels — the paper's foreground crop, done once here.
    CT is resampled onto it with linear interpolation (as AutoPET's ``CTres``), after a Gaussian
    anti-aliasing filter when the CT is finer than the grid. With ``target_spacing`` set, the grid
    keeps the same field and orientation but has that spacing, and PET is resampled too.

Intensities (choice, documented):
    CT: clipped to ``ct_range`` (default −1000…1000 HU) and mapped linearly to [0, 1], so air is 0.
    PET: SUV clipped to [0, ``suv_max``] (default 50) and divided by ``suv_scale`` (default 10), so
    SUV 2.5 is 0.25; ``SUV = pet * meta["suv_scale"]`` below the clip. Both map "nothing there" (air,
    no uptake) to 0, so zero padding by the transforms is physically meaningful.

Labels:
    ``label_mode="binary"``: every non-zero class becomes 1 (the paper's one foreground class).
    ``label_mode="multiclass"``: classes are kept (HECKTOR 1 = GTVp, 2 = GTVn). Labels are brought onto
    the grid by linear interpolation of each class's indicator and a voxel-wise argmax (a fraction
    ≥ 0.5 for binary), which keeps small lesions better than nearest-neighbour sampling.

Content checks:
    Before anything is resampled, the CT must look like HU and the PET like SUV
    (:mod:`h2aseg.data.content`: air in the CT, HU range, non-negative PET, SUV range, CT/PET swapped,
    Bq/ml refused with the conversion to use). ``skip_checks`` names the checks to skip for unusual data.

Arrays are indexed (X, Y, Z) with Z axial and stored channel-first (1, X, Y, Z).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from h2aseg.atomic import atomic_open
from h2aseg.constants import CT_FLOOR_HU
from h2aseg.data.content import CONTENT_CHECKS, content_findings, resolve_skipped, volume_stats
from h2aseg.data.io import from_array, read_ct, read_label, read_pet, to_array
from h2aseg.data.layouts import Case, CaseProblem
from h2aseg.errors import DataError

__all__ = [
    "PreprocessConfig",
    "preprocess_case",
    "PreprocessedCache",
    "restore_to_original",
    "geometry_of",
    "check_cases",
    "check_content",
]

#: Bump when the stored arrays change meaning, so old caches are rebuilt.
PREPROCESS_VERSION = 1


@dataclass
class PreprocessConfig:
    """How cases are put on one grid and scaled (see the module docstring for the choices).

    Args:
        target_spacing: grid spacing in mm (X, Y, Z); None keeps the PET grid.
        ct_range: HU window; CT is clipped to it and mapped to [0, 1].
        suv_scale: PET value = SUV / suv_scale.
        suv_max: SUV clip before scaling (None: no clip).
        label_mode: ``"binary"`` or ``"multiclass"``.
        label_values: label values accepted in the source files; anything else is an error.
        crop_foreground: crop to the body (CT above ``body_threshold_hu``).
        body_threshold_hu: HU above which a voxel counts as body for the crop.
        crop_margin: voxels kept around the body box.
        min_overlap: smallest share of the smaller of CT/PET fields that must overlap.
        skip_checks: content checks to skip (names of :data:`h2aseg.data.content.CONTENT_CHECKS`, or
            ``"all"``); they do not change the arrays, so they are not part of :meth:`fingerprint`.
        max_voxels: largest voxel count an image header may declare (None: :data:`h2aseg.data.io.MAX_VOXELS`);
            not part of the fingerprint either.
    """

    target_spacing: tuple[float, float, float] | None = None
    ct_range: tuple[float, float] = (-1000.0, 1000.0)
    suv_scale: float = 10.0
    suv_max: float | None = 50.0
    label_mode: str = "binary"
    label_values: tuple[int, ...] = (0, 1, 2)
    crop_foreground: bool = True
    body_threshold_hu: float = -500.0
    crop_margin: int = 2
    min_overlap: float = 0.1
    skip_checks: tuple[str, ...] = ()
    max_voxels: int | None = None

    def __post_init__(self) -> None:
        if self.label_mode not in ("binary", "multiclass"):
            raise ValueError(f"label_mode must be 'binary' or 'multiclass', not {self.label_mode!r}")
        if self.ct_range[1] <= self.ct_range[0]:
            raise ValueError(f"ct_range must be (low, high) with low < high, got {self.ct_range}")
        if self.suv_scale <= 0:
            raise ValueError(f"suv_scale must be positive, got {self.suv_scale}")
        if self.target_spacing is not None:
            if len(self.target_spacing) != 3 or min(self.target_spacing) <= 0:
                raise ValueError(
                    f"target_spacing must be three positive mm values, got {self.target_spacing}"
                )
            self.target_spacing = tuple(float(s) for s in self.target_spacing)
        self.ct_range = tuple(float(v) for v in self.ct_range)
        self.label_values = tuple(int(v) for v in self.label_values)
        self.skip_checks = tuple(sorted(resolve_skipped(self.skip_checks)))

    def fingerprint(self) -> str:
        """Short hash of the settings; cached arrays made with other settings are rebuilt."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("skip_checks", "max_voxels")}
        text = json.dumps({"version": PREPROCESS_VERSION, **settings}, sort_keys=True, default=list)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def geometry_of(image: sitk.Image) -> dict:
    """JSON-serialisable geometry of an image: size, spacing, origin, direction."""
    return {
        "size": [int(v) for v in image.GetSize()],
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
    }


def _reference(geometry: dict) -> sitk.Image:
    ref = sitk.Image([int(v) for v in geometry["size"]], sitk.sitkUInt8)
    ref.SetSpacing(geometry["spacing"])
    ref.SetOrigin(geometry["origin"])
    ref.SetDirection(geometry["direction"])
    return ref


def _resample(image: sitk.Image, ref: sitk.Image, linear: bool, default: float) -> sitk.Image:
    """Resample onto ``ref``; Gaussian anti-aliasing first when ``ref`` is coarser (linear only)."""
    if linear:
        variance = [
            max(t * t - s * s, 0.0) / (8 * math.log(2)) for t, s in zip(ref.GetSpacing(), image.GetSpacing())
        ]
        if max(v / (s * s) for v, s in zip(variance, image.GetSpacing())) > 0.1:
            image = sitk.DiscreteGaussian(
                image, variance=variance, maximumKernelWidth=64, useImageSpacing=True
            )
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    return sitk.Resample(image, ref, sitk.Transform(), interp, default, sitk.sitkFloat32)


def _check_finite(array: np.ndarray, case: Case, path: Path, what: str) -> None:
    if not np.isfinite(array).all():
        raise DataError(
            f"case {case.case_id}: {path}: {what} contains NaN or infinite values; fix or exclude the file"
        )


def check_content(case: Case, ct_hu: np.ndarray, suv: np.ndarray, skip: Sequence[str] = ()) -> None:
    """Refuse a case whose CT does not look like HU or PET like SUV (:mod:`h2aseg.data.content`).

    Raises:
        DataError: one line naming the case, every failed check, and how to skip them.
    """
    skip = resolve_skipped(skip)
    if skip >= frozenset(CONTENT_CHECKS):
        return
    findings = content_findings(
        volume_stats(ct_hu), volume_stats(suv), case.ct, case.pet, skip, pet_is_dicom=Path(case.pet).is_dir()
    )
    if findings:
        names = " ".join(dict.fromkeys(name for name, _ in findings))
        raise DataError(
            f"case {case.case_id}: "
            + "; ".join(text for _, text in findings)
            + f" (if the data are right but unusual: --skip-content-checks {names})"
        )


def _overlap_box(
    ct: sitk.Image, pet: sitk.Image, case: Case, min_overlap: float
) -> tuple[list[int], list[int]]:
    """Index box [lo, hi) of the PET voxels whose centres lie inside the CT field."""
    size = ct.GetSize()
    corners = [
        ct.TransformContinuousIndexToPhysicalPoint(
            [(-0.5 if c == 0 else size[i] - 0.5) for i, c in enumerate(bits)]
        )
        for bits in np.ndindex(2, 2, 2)
    ]
    idx = np.array([pet.TransformPhysicalPointToContinuousIndex(p) for p in corners])
    lo = np.maximum(np.ceil(idx.min(axis=0) - 1e-6), 0).astype(int)
    hi = np.minimum(np.floor(idx.max(axis=0) + 1e-6) + 1, pet.GetSize()).astype(int)
    voxel_ml = float(np.prod(pet.GetSpacing()))
    overlap = float(np.prod(np.maximum(hi - lo, 0))) * voxel_ml
    smaller = min(
        float(np.prod(ct.GetSize())) * float(np.prod(ct.GetSpacing())),
        float(np.prod(pet.GetSize())) * voxel_ml,
    )
    if overlap <= 0 or overlap < min_overlap * smaller:
        raise DataError(
            f"case {case.case_id}: {case.ct} and {case.pet}: CT and PET do not overlap in space "
            f"({overlap / max(smaller, 1e-9):.0%} of the smaller field); check their origins and directions"
        )
    return lo.tolist(), hi.tolist()


def _read_label(case: Case, config: PreprocessConfig) -> sitk.Image:
    assert case.label is not None
    label = read_label(case.label, config.max_voxels)
    values = to_array(label)
    _check_finite(values, case, case.label, "label")
    found = np.unique(values)
    bad = [v for v in found.tolist() if v != int(v) or int(v) not in config.label_values]
    if bad:
        raise DataError(
            f"case {case.case_id}: {case.label}: unexpected label values {bad[:5]} "
            f"(allowed {list(config.label_values)}); fix the label file"
        )
    return label


def _label_on_grid(label: sitk.Image, ref: sitk.Image, mode: str) -> np.ndarray:
    """The label on ``ref`` as (X, Y, Z) uint8: binary by resampling the foreground fraction (≥ 0.5),
    multiclass by the largest resampled class fraction."""
    values = to_array(label)
    if mode == "binary":
        fg = from_array((values > 0).astype(np.float32), label)
        frac = to_array(sitk.Resample(fg, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        return (frac >= 0.5).astype(np.uint8)
    classes = [int(v) for v in np.unique(values) if v != 0]
    out = np.zeros(ref.GetSize(), np.uint8)
    if not classes:
        return out
    probs = []
    for c in classes:
        ind = from_array((values == c).astype(np.float32), label)
        probs.append(
            to_array(sitk.Resample(ind, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        )
    stack = np.stack([1.0 - np.sum(probs, axis=0)] + probs)
    lut = np.array([0] + classes, np.uint8)
    return lut[np.argmax(stack, axis=0)]


def _same_grid(image: sitk.Image, ref: sitk.Image, tolerance_mm: float = 1e-3) -> bool:
    """True when ``image`` lies on ``ref``'s voxel grid: same size, spacing, origin and direction."""
    return (
        image.GetSize() == ref.GetSize()
        and np.allclose(image.GetSpacing(), ref.GetSpacing(), rtol=0, atol=tolerance_mm)
        and np.allclose(image.GetOrigin(), ref.GetOrigin(), rtol=0, atol=tolerance_mm)
        and np.allclose(image.GetDirection(), ref.GetDirection(), rtol=0, atol=1e-6)
    )


def _box_array(image: sitk.Image, lo: Sequence[int], hi: Sequence[int], dtype=np.float32) -> np.ndarray:
    """Voxels [lo, hi) of ``image`` as a contiguous (X, Y, Z) array, copied once
    (not via a full-size array)."""
    view = sitk.GetArrayViewFromImage(image)  # (Z, Y, X); valid while ``image`` lives
    box = view[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
    return np.ascontiguousarray(box.transpose(2, 1, 0), dtype=dtype)


def _grid_from_box(pet: sitk.Image, lo: Sequence[int], hi: Sequence[int], spacing) -> sitk.Image:
    """Geometry-only reference (uint8 voxels) over PET voxels [lo, hi),
    at the PET spacing or at ``spacing``."""
    old = np.array(pet.GetSpacing())
    if spacing is None:
        return _reference(
            {
                "size": np.subtract(hi, lo).tolist(),
                "spacing": old.tolist(),
                "origin": pet.TransformIndexToPhysicalPoint([int(v) for v in lo]),
                "direction": pet.GetDirection(),
            }
        )
    extent = (np.array(hi) - np.array(lo)) * old
    new = np.array(spacing, float)
    size = np.maximum(np.round(extent / new), 1).astype(int)
    # Same field: the new grid's outer corner matches the cropped PET box's outer corner.
    corner_index = np.array(lo, float) - 0.5 + new / (2 * old)
    origin = pet.TransformContinuousIndexToPhysicalPoint(corner_index.tolist())
    return _reference(
        {"size": size.tolist(), "spacing": new.tolist(), "origin": origin, "direction": pet.GetDirection()}
    )


def _on_grid(image: sitk.Image, source: sitk.Image, box, grid: sitk.Image, default: float) -> np.ndarray:
    """``image`` on ``grid`` as (X, Y, Z) float32. ``grid`` is voxels ``box`` = (lo, hi) of ``source``'s grid
    (or a resampling of them); an image that lies on ``source``'s grid while ``grid`` keeps its spacing is
    cropped, not resampled (e.g. AutoPET's CTres, already on the PET grid): same voxels, far less time."""
    lo, hi = box
    if _same_grid(image, source) and tuple(np.subtract(hi, lo)) == tuple(grid.GetSize()):
        return _box_array(image, lo, hi)
    return to_array(_resample(image, grid, True, default))


def _body_box(ct_hu: np.ndarray, threshold_hu: float, margin: int) -> list[list[int]]:
    """[[lo, hi) per axis] around the voxels above ``threshold_hu``, widened by ``margin``;
    whole array if none.

    Per-axis projections of one boolean mask, not ``np.argwhere`` (which holds 24 bytes per body voxel:
    0.7 GB for a whole-body study)."""
    body = ct_hu > threshold_hu
    box = []
    for axis, size in enumerate(ct_hu.shape):
        hits = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        if not len(hits):
            return [[0, s] for s in ct_hu.shape]
        box.append([max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)])
    return box


def _scaled(array: np.ndarray, lo: float | None, hi: float | None, scale: float) -> np.ndarray:
    """clip(array, lo, hi) / scale (minus ``lo`` first when both bounds are given),
    in one new float32 array."""
    out = np.clip(array, lo, hi, dtype=np.float32)
    if lo is not None and hi is not None:
        out -= lo
    out /= scale
    return out


def preprocess_case(case: Case, config: PreprocessConfig) -> dict:
    """Read one case, check it, and put it on the processing grid.

    Any failure of reading, decoding or resampling one case (a damaged file, an I/O error, geometry ITK
    cannot handle) is a :class:`DataError` naming the case, so a batch reports it and goes on.

    Returns:
        ``{"ct": (1, X, Y, Z) float32 in [0, 1], "pet": (1, X, Y, Z) float32 (SUV / suv_scale),
        "label": (1, X, Y, Z) uint8 (only when the case has a label), "case_id": str, "meta": dict}``.
        ``meta`` (JSON-serialisable) holds ``spacing`` (grid spacing, mm, X/Y/Z), ``suv_scale``,
        ``suv_max``, ``ct_range``, ``label_mode``, ``grid`` (geometry of the arrays),
        ``original_pet`` and ``original_ct`` (geometries of the source images) and ``patient_id``.

    Raises:
        DataError: one line naming the case and file — unreadable or missing file, 4-D image, NaN,
            CT and PET not overlapping, unexpected label values, content checks failed.
    """
    try:
        return _preprocess_case(case, config)
    except DataError:
        raise
    except (OSError, EOFError, RuntimeError, zlib.error) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise DataError(
            f"case {case.case_id}: cannot be read or resampled ({type(err).__name__}: {first}); "
            "check its files"
        ) from None


def _read_pair(case: Case, config: PreprocessConfig) -> tuple[sitk.Image, sitk.Image]:
    """CT (HU) and PET (SUV) of ``case`` as stored, checked: finite values and plausible content."""
    try:
        ct = read_ct(case.ct, config.max_voxels, case.ct_series)
        pet = read_pet(case.pet, config.max_voxels, case.pet_series)
    except DataError as err:
        raise DataError(f"case {case.case_id}: {err}") from None
    # Voxel order does not matter to these checks: read the (Z, Y, X) views, no copies.
    ct_hu, suv = sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(pet)
    _check_finite(ct_hu, case, case.ct, "CT")
    _check_finite(suv, case, case.pet, "PET")
    check_content(case, ct_hu, suv, config.skip_checks)
    del ct_hu, suv
    return ct, pet


def _preprocess_case(case: Case, config: PreprocessConfig) -> dict:
    ct, pet = _read_pair(case, config)
    original_pet, original_ct = geometry_of(pet), geometry_of(ct)
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(pet.GetDirection()) != "LPS":
        pet = sitk.DICOMOrient(pet, "LPS")  # a copy only where the axes differ from LPS
    box = _overlap_box(ct, pet, case, config.min_overlap)
    grid = _grid_from_box(pet, *box, config.target_spacing)
    ct_arr = _on_grid(ct, pet, box, grid, CT_FLOOR_HU)
    del ct
    pet_arr = _on_grid(pet, pet, box, grid, 0.0)
    body = [[0, s] for s in ct_arr.shape]
    if config.crop_foreground:
        body = _body_box(ct_arr, config.body_threshold_hu, config.crop_margin)
    crop = tuple(slice(a, b) for a, b in body)
    final = _reference(
        {
            "size": [b - a for a, b in body],
            "spacing": grid.GetSpacing(),
            "origin": grid.TransformIndexToPhysicalPoint([a for a, _ in body]),
            "direction": grid.GetDirection(),
        }
    )
    lo_hu, hi_hu = config.ct_range
    out = {
        "ct": _scaled(ct_arr[crop], lo_hu, hi_hu, hi_hu - lo_hu)[None],
        "pet": _scaled(pet_arr[crop], 0.0, config.suv_max, config.suv_scale)[None],
        "case_id": case.case_id,
    }
    del ct_arr, pet_arr
    if case.label is not None:
        out["label"] = _label_for(case, config, pet, box, body, final)[None]
    out["meta"] = {
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "spacing": [float(s) for s in final.GetSpacing()],
        "suv_scale": float(config.suv_scale),
        "suv_max": config.suv_max,
        "ct_range": list(config.ct_range),
        "label_mode": config.label_mode,
        "grid": geometry_of(final),
        "original_pet": original_pet,
        "original_ct": original_ct,
        "config": config.fingerprint(),
    }
    return out


def _label_for(
    case: Case, config: PreprocessConfig, pet: sitk.Image, box, body, final: sitk.Image
) -> np.ndarray:
    """The case's label on the final grid (X, Y, Z) uint8; cropped when it lies on the PET grid and the grid
    keeps the PET spacing, resampled otherwise."""
    try:
        label = _read_label(case, config)
    except DataError as err:
        message = str(err)
        raise DataError(
            message if message.startswith("case ") else f"case {case.case_id}: {message}"
        ) from None
    if config.target_spacing is None and _same_grid(label, pet):
        lo = [b[0] + a for (a, _), b in zip(body, zip(*box))]
        values = _box_array(label, lo, np.add(lo, final.GetSize()), dtype=np.int64)
        if config.label_mode == "binary":
            return (values > 0).astype(np.uint8)
        return values.astype(np.uint8)
    return _label_on_grid(label, final, config.label_mode)


def restore_to_original(
    array: np.ndarray, meta: dict, is_label: bool = True, grid: str = "pet"
) -> sitk.Image:
    """Bring an array from the processing grid back to a source grid, geometry included.

    Args:
        array: (X, Y, Z) array on the processing grid (``meta["grid"]``), e.g. a prediction.
        meta: the ``meta`` dict of :func:`preprocess_case` / :meth:`PreprocessedCache.load`.
        is_label: nearest-neighbour and uint8 output when True, linear and float32 otherwise.
        grid: ``"pet"`` (the case's original PET grid) or ``"ct"`` (its CT grid, e.g. HECKTOR labels).

    Returns:
        Image on the original grid; voxels outside the processing grid are 0.
    """
    if grid not in ("pet", "ct"):
        raise ValueError(f"grid must be 'pet' or 'ct', not {grid!r}")
    array = np.asarray(array)
    if tuple(array.shape) != tuple(meta["grid"]["size"]):
        raise ValueError(f"array shape {array.shape} differs from the processing grid {meta['grid']['size']}")
    source = from_array(array.astype(np.float32, copy=False), _reference(meta["grid"]))
    ref = _reference(meta[f"original_{grid}"])
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    out = sitk.Resample(source, ref, sitk.Transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.Cast(sitk.Round(out), sitk.sitkUInt8) if is_label else out


def _source_fingerprint(case: Case) -> str:
    parts = []
    for path in (case.ct, case.pet, case.label):
        if path is None:
            parts.append("none")
            continue
        path = Path(path)
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        for f in files:
            try:
                st = f.stat()
                parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(f"{f}:missing")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()


def _safe_name(case_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id)
    return safe if safe == case_id else f"{safe}-{hashlib.sha1(case_id.encode()).hexdigest()[:6]}"


def _atomic_write_bytes(path: Path, write) -> None:
    with atomic_open(path, "wb") as handle:
        write(handle)


class PreprocessedCache:
    """Preprocessed arrays on disk, one ``<case>.npz`` (uncompressed, fast to load) and one
    ``<case>.json`` (meta, settings hash, source fingerprint) per case.

    A case is up to date when its JSON exists, was made with the same :class:`PreprocessConfig`
    and its source files have the same size and modification time; :meth:`build` skips those and
    redoes the others.

    Args:
        cache_dir: folder of the cache (created when needed).
        config: preprocessing settings.
    """

    def __init__(self, cache_dir: Path, config: PreprocessConfig) -> None:
        self.cache_dir = Path(cache_dir)
        self.config = config
        self._fingerprint = config.fingerprint()

    def _paths(self, case_id: str) -> tuple[Path, Path]:
        name = _safe_name(case_id)
        return self.cache_dir / f"{name}.npz", self.cache_dir / f"{name}.json"

    def is_current(self, case: Case) -> bool:
        """True when the cached arrays of ``case`` match its sources and the settings."""
        npz, meta_path = self._paths(case.case_id)
        if not (npz.exists() and meta_path.exists()):
            return False
        try:
            record = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return False
        return record.get("config") == self._fingerprint and record.get("source") == _source_fingerprint(case)

    def build(self, cases: Sequence[Case], progress: bool = True) -> list[CaseProblem]:
        """Preprocess every case that is not up to date; bad cases are reported, the rest go on.

        Returns:
            One :class:`CaseProblem` per case that could not be preprocessed.
        """
        from tqdm import tqdm

        self.cache_dir.mkdir(parents=True, exist_ok=True)
        problems: list[CaseProblem] = []
        for case in tqdm(cases, desc="preprocess", unit="case", disable=not progress):
            if self.is_current(case):
                continue
            source = _source_fingerprint(case)
            try:
                item = preprocess_case(case, self.config)
            except DataError as err:
                problems.append(CaseProblem(case.case_id, case.label, str(err)))
                continue
            npz, meta_path = self._paths(case.case_id)
            arrays = {k: item[k] for k in ("ct", "pet", "label") if k in item}
            _atomic_write_bytes(npz, lambda handle, a=arrays: np.savez(handle, **a))
            record = {
                "case_id": case.case_id,
                "config": self._fingerprint,
                "source": source,
                "meta": item["meta"],
            }
            _atomic_write_bytes(
                meta_path, lambda handle, r=record: handle.write(json.dumps(r, indent=1).encode())
            )
        return problems

    def load(self, case_id: str) -> dict:
        """The dict :func:`preprocess_case` returned for ``case_id``, read from disk.

        Raises:
            DataError: the case is not in the cache (or was made with other settings).
        """
        npz, meta_path = self._paths(case_id)
        try:
            record = json.loads(meta_path.read_text())
            with np.load(npz) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as err:
            raise DataError(
                f"case {case_id}: not in cache {self.cache_dir} ({type(err).__name__}); "
                "run `h2aseg preprocess`"
            ) from None
        if record.get("config") != self._fingerprint:
            raise DataError(
                f"case {case_id}: cache {self.cache_dir} was built with other settings; "
                "run `h2aseg preprocess`"
            )
        return {**arrays, "case_id": record["case_id"], "meta": record["meta"]}

    def case_ids(self) -> list[str]:
        """Ids of the cases cached with the current settings, sorted."""
        ids = []
        for meta_path in sorted(self.cache_dir.glob("*.json")):
            try:
                record = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("config") == self._fingerprint and meta_path.with_suffix(".npz").exists():
                ids.append(record["case_id"])
        return sorted(ids)


def check_cases(cases: Sequence[Case], config: PreprocessConfig, progress: bool = False) -> list[CaseProblem]:
    """Read and check every case as :func:`preprocess_case` does; one problem per bad case."""
    from tqdm import tqdm

    problems = []
    for case in tqdm(cases, desc="check", unit="case", disable=not progress):
        try:
            preprocess_case(case, config)
        except DataError as err:
            problems.append(CaseProblem(case.case_id, None, str(err)))
    return problems
