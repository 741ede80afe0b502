"""Content checks: is a CT in Hounsfield units and a PET in SUV, as their place in the dataset claims?

A file's name says nothing about its values: a raw-activity PET in Bq/ml (AutoPET ships ``PET.nii.gz``
beside ``SUV.nii.gz``), CT and PET swapped in a manifest, or a CT stored in another unit would all be
clipped (SUV 0–50, CT −1000…1000 HU) and train a useless network without a word. Every read path
(:func:`h2aseg.data.preprocess.preprocess_case`: all layouts, ``--ct``/``--pet`` files, DICOM) runs these
checks; each has a documented threshold and can be skipped by name for unusual data
(``--skip-content-checks NAME``, ``--skip-content-checks`` alone skips all):

``ct-air``
    At least :data:`CT_AIR_MIN_FRACTION` (0.1 %) of the CT's voxels lie below :data:`CT_AIR_HU` (−500 HU):
    every PET/CT field holds air (outside the body, lungs, airways). An all-zero CT, a CT stored without
    its rescale (air ≈ 0) or in attenuation units fails. When the CT fails and the PET file holds such
    values instead, the two are reported as swapped.
``ct-range``
    The 1st percentile of the CT is at least :data:`CT_MIN_HU` (−3100 HU, below the usual −3024 padding)
    and the 99th at most :data:`CT_MAX_HU` (4000 HU; dense bone is below 2000, metal stays under 1 %).
``pet-negative``
    At most :data:`PET_NEGATIVE_MAX_FRACTION` (1 %) of the PET's voxels lie below :data:`PET_NEGATIVE_SUV`
    (SUV −1): SUV is non-negative apart from reconstruction noise.
``pet-range``
    The 99.9th percentile of the PET lies in [:data:`PET_P999_MIN`, :data:`PET_P999_MAX`] = [0.1, 100]:
    tumours reach SUV 30–60 in a few voxels, while activity in Bq/ml is in the thousands (SUV 1 of 350 MBq
    in 70 kg is 5000 Bq/ml), so a PET above the range is refused as Bq/ml with the conversion to use.

Percentiles are taken on at most :data:`SAMPLE_VOXELS` evenly strided voxels, so a whole-body CT costs
tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from h2aseg.constants import AIR_BELOW_HU

__all__ = [
    "CONTENT_CHECKS",
    "VolumeStats",
    "volume_stats",
    "content_findings",
    "resolve_skipped",
    "has_air",
]

CONTENT_CHECKS = ("ct-air", "ct-range", "pet-negative", "pet-range")

CT_AIR_HU = AIR_BELOW_HU
CT_AIR_MIN_FRACTION = 0.001
CT_MIN_HU = -3100.0
CT_MAX_HU = 4000.0
PET_NEGATIVE_SUV = -1.0
PET_NEGATIVE_MAX_FRACTION = 0.01
PET_P999_MIN = 0.1
PET_P999_MAX = 100.0
SAMPLE_VOXELS = 2_000_000

_SUV_HINT = (
    "convert it to SUV (SUV = Bq/ml x body weight [g] / injected dose [Bq] decayed to the scan start), which "
    "needs PatientWeight, RadionuclideTotalDose, RadionuclideHalfLife, RadiopharmaceuticalStartTime and "
    "SeriesTime from the DICOM header, or give the DICOM series and h2aseg converts it"
)


@dataclass(frozen=True)
class VolumeStats:
    """Summary of one volume's values (on a strided sample)."""

    air_fraction: float  # share of voxels below CT_AIR_HU
    negative_fraction: float  # share of voxels below PET_NEGATIVE_SUV
    p01: float
    p99: float
    p999: float


def volume_stats(array: np.ndarray) -> VolumeStats:
    """Stats of ``array`` (any shape) from at most :data:`SAMPLE_VOXELS` evenly strided voxels."""
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    sample = flat[::step].astype(np.float32, copy=False)
    if sample.size == 0:
        return VolumeStats(0.0, 0.0, 0.0, 0.0, 0.0)
    p01, p99, p999 = np.percentile(sample, [1.0, 99.0, 99.9]).tolist()
    return VolumeStats(
        float(np.count_nonzero(sample < CT_AIR_HU)) / sample.size,
        float(np.count_nonzero(sample < PET_NEGATIVE_SUV)) / sample.size,
        float(p01),
        float(p99),
        float(p999),
    )


def has_air(stats: VolumeStats) -> bool:
    """True when the volume holds air as a CT does (``ct-air``'s rule)."""
    return stats.air_fraction >= CT_AIR_MIN_FRACTION


def resolve_skipped(names: Iterable[str] | None) -> frozenset[str]:
    """The check names to skip; ``"all"`` stands for every check. Unknown names raise ValueError."""
    names = list(names or ())
    unknown = [n for n in names if n not in CONTENT_CHECKS and n != "all"]
    if unknown:
        raise ValueError(
            f"unknown content check(s) {unknown}: choose from {', '.join(CONTENT_CHECKS)} or all"
        )
    return frozenset(CONTENT_CHECKS) if "all" in names else frozenset(names)


def _ct_findings(
    ct: VolumeStats, pet: VolumeStats, ct_path: Path, pet_path: Path, skip
) -> list[tuple[str, str]]:
    found = []
    if "ct-air" not in skip and not has_air(ct):
        if has_air(pet) and ct.p01 >= PET_NEGATIVE_SUV:
            return [
                (
                    "ct-air",
                    f"CT and PET look swapped: {ct_path} holds no air (no values below {CT_AIR_HU:g} HU) and "
                    f"is non-negative like SUV, while {pet_path} holds CT-like values; swap the two files",
                )
            ]
        found.append(
            (
                "ct-air",
                f"{ct_path}: CT holds no air ({ct.air_fraction:.2%} of voxels below {CT_AIR_HU:g} HU, at "
                f"least {CT_AIR_MIN_FRACTION:.1%} expected): all-zero, or not in Hounsfield units; "
                "give the CT in HU",
            )
        )
    if "ct-range" not in skip and (ct.p01 < CT_MIN_HU or ct.p99 > CT_MAX_HU):
        found.append(
            (
                "ct-range",
                f"{ct_path}: CT values outside the Hounsfield range (1st percentile {ct.p01:.0f}, 99th "
                f"{ct.p99:.0f}; expected >= {CT_MIN_HU:g} and <= {CT_MAX_HU:g}); give the CT in HU",
            )
        )
    return found


def _pet_findings(
    pet: VolumeStats, pet_path: Path, skip, pet_is_dicom: bool, swapped: bool
) -> list[tuple[str, str]]:
    found = []
    if "pet-negative" not in skip and not swapped and pet.negative_fraction > PET_NEGATIVE_MAX_FRACTION:
        what = "CT-like values (air below -500)" if has_air(pet) else "too many negative values"
        found.append(
            (
                "pet-negative",
                f"{pet_path}: PET holds {what}: {pet.negative_fraction:.1%} of voxels below SUV "
                f"{PET_NEGATIVE_SUV:g} (at most {PET_NEGATIVE_MAX_FRACTION:.0%} expected); "
                "give the PET in SUV",
            )
        )
    if "pet-range" not in skip and not swapped:
        if pet.p999 > PET_P999_MAX:
            if pet_is_dicom:
                hint = (
                    "after SUV conversion from its DICOM header; check PatientWeight (kg) and "
                    "RadionuclideTotalDose (Bq)"
                )
            else:
                beside = (
                    " (AutoPET: use SUV.nii.gz, not PET.nii.gz)"
                    if Path(pet_path).name.startswith("PET.")
                    else ""
                )
                hint = f"looks like activity in Bq/ml, not SUV{beside}; {_SUV_HINT}"
            found.append(
                (
                    "pet-range",
                    f"{pet_path}: PET 99.9th percentile is {pet.p999:.0f}, above SUV "
                    f"{PET_P999_MAX:g}: {hint}",
                )
            )
        elif pet.p999 < PET_P999_MIN:
            found.append(
                (
                    "pet-range",
                    f"{pet_path}: PET holds no uptake (99.9th percentile {pet.p999:.3g}, below SUV "
                    f"{PET_P999_MIN:g}); all-zero or not in SUV, give the PET in SUV",
                )
            )
    return found


def content_findings(
    ct: VolumeStats,
    pet: VolumeStats,
    ct_path: Path,
    pet_path: Path,
    skip: Iterable[str] = (),
    pet_is_dicom: bool = False,
) -> list[tuple[str, str]]:
    """Every failed content check of one case as (check name, phrase) (empty when the case looks right).

    Args:
        ct, pet: :func:`volume_stats` of the CT (HU) and PET (SUV) as read.
        ct_path, pet_path: named in the messages.
        skip: check names to skip (see :func:`resolve_skipped`).
        pet_is_dicom: the PET was converted to SUV by h2aseg from a DICOM header (changes the hint).
    """
    skip = resolve_skipped(skip)
    found = _ct_findings(ct, pet, ct_path, pet_path, skip)
    swapped = bool(found) and found[0][1].startswith("CT and PET look swapped")
    return found + _pet_findings(pet, pet_path, skip, pet_is_dicom, swapped)
