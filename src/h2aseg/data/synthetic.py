"""Synthetic PET/CT cohorts written in the real on-disk layouts (AutoPET-II tree, HECKTOR 2022).

A first-time user has no PET/CT data; :func:`generate_cohort` writes a phantom cohort that the same
loaders read as real data. The anatomy, decoys and lesions are described in
:mod:`h2aseg.data.phantom`. Image formation:

- a fine grid (the CT grid; for HECKTOR one that covers both fields at the CT spacing) holds CT (HU),
  activity (SUV) and lesion labels;
- CT: slight blur (σ 0.6 voxel), Gaussian noise 8–18 HU, stored as int16 HU;
- PET: activity blurred by the scanner point-spread function (Gaussian, 5–7 mm FWHM), sampled onto
  the coarser PET grid, noise with variance ∝ activity, post-filtered (σ 0.6 voxel) as in clinical
  reconstructions, clipped at 0; stored as SUV (float32) and, for AutoPET, ``PET.nii.gz`` in Bq/ml
  (SUV × decayed dose / weight);
- labels: AutoPET ``SEG.nii.gz`` on the PET grid (lesion fraction ≥ 0.5), HECKTOR labels on the
  CT grid with 1 = GTVp, 2 = GTVn.

Default sizes (CPU friendly): AutoPET PET 64 × 64 × 96 at 4 mm, CT 128 × 128 × 192 at 2 mm, with a
share of 0.35 lesion-free studies, 15 % of patients scanned twice and the ``realistic`` lesion sizes
(mostly 0.5–10 ml, see :mod:`h2aseg.data.phantom`); HECKTOR CT 96 × 96 × 72 at
2 × 2 × 2.5 mm, PET 56 × 56 × 52 at 4 mm over a larger field, the CT field placed at a random offset
inside it. Same seed → same bytes (each study has its own seed, so the first N cases of a larger
cohort are the same as an N-case cohort).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from h2aseg.constants import CT_CEILING_HU, CT_FLOOR_HU, F18_HALF_LIFE_S, G_PER_KG
from h2aseg.data.anatomy import build_head_neck, build_whole_body
from h2aseg.data.io import from_array, write_image
from h2aseg.data.phantom import LESION_SIZE_PRESETS, Canvas, patient_params

__all__ = ["generate_cohort", "KINDS", "AUTOPET_DEFAULTS", "HECKTOR_DEFAULTS"]

KINDS = ("autopet", "hecktor")
AUTOPET_DEFAULTS = {
    "pet_shape": (64, 64, 96),
    "pet_spacing": (4.0, 4.0, 4.0),
    "ct_spacing": (2.0, 2.0, 2.0),
    "lesion_free_fraction": 0.35,
    "multi_study_fraction": 0.15,
    "lesion_sizes": "realistic",
}
HECKTOR_DEFAULTS = {
    "pet_shape": (56, 56, 52),
    "pet_spacing": (4.0, 4.0, 4.0),
    "ct_shape": (96, 96, 72),
    "ct_spacing": (2.0, 2.0, 2.5),
}
CANONICAL_FIELD = {"autopet": (256.0, 256.0, 384.0), "hecktor": (224.0, 224.0, 208.0)}
HECKTOR_CENTERS = ("CHUM", "CHUP", "CHUS", "CHUV", "HGJ", "HMR", "MDA", "USZ")


def _image(array: np.ndarray, spacing, origin, dtype) -> sitk.Image:
    """An (X, Y, Z) array as an image of ``dtype`` with the given spacing and origin (identity direction)."""
    return from_array(array.astype(dtype), _ref(array.shape, spacing, origin))


def _ref(shape, spacing, origin) -> sitk.Image:
    ref = sitk.Image([int(s) for s in shape], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in spacing])
    ref.SetOrigin([float(o) for o in origin])
    return ref


def _form_images(cv: Canvas, p, rng, fine_spacing, fine_origin, pet_ref: sitk.Image):
    """CT (int16 HU, fine grid) and PET SUV (float32, PET grid) from a painted canvas."""
    fine_spacing = np.asarray(fine_spacing, float)
    ct = ndimage.gaussian_filter(cv.ct, 0.6, truncate=2.0)
    ct += rng.normal(0.0, p.ct_noise_hu, size=ct.shape).astype(np.float32)
    ct_img = _image(np.clip(np.round(ct), CT_FLOOR_HU, CT_CEILING_HU), fine_spacing, fine_origin, np.int16)
    sigma = p.fwhm_mm / (2 * math.sqrt(2 * math.log(2))) / fine_spacing
    blurred = ndimage.gaussian_filter(cv.suv, sigma, truncate=3.0)
    pet = sitk.Resample(
        _image(blurred, fine_spacing, fine_origin, np.float32),
        pet_ref,
        sitk.Transform(),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    arr = sitk.GetArrayFromImage(pet)
    arr = arr + np.sqrt(np.maximum(arr, 0.0) * p.pet_noise + 1e-3) * rng.normal(size=arr.shape).astype(
        np.float32
    )
    arr = np.maximum(ndimage.gaussian_filter(arr, 0.6, truncate=2.0), 0.0).astype(np.float32)
    suv = sitk.GetImageFromArray(arr)
    suv.CopyInformation(pet_ref)
    return ct_img, suv


def _label_on(cv: Canvas, fine_spacing, fine_origin, ref: sitk.Image) -> sitk.Image:
    frac = sitk.Resample(
        _image(cv.label > 0, fine_spacing, fine_origin, np.float32),
        ref,
        sitk.Transform(),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.Cast(frac >= 0.5, sitk.sitkUInt8)


def _options(kind: str, size_options: dict) -> dict:
    defaults = AUTOPET_DEFAULTS if kind == "autopet" else HECKTOR_DEFAULTS
    unknown = set(size_options) - set(defaults)
    if unknown:
        raise ValueError(f"unknown options for {kind}: {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **size_options}


def _autopet_study(opts, p, rng, lesion_free: bool, shift) -> tuple[dict, int]:
    pet_shape = np.array(opts["pet_shape"], int)
    pet_sp = np.array(opts["pet_spacing"], float)
    ct_sp = np.array(opts["ct_spacing"], float)
    field = pet_shape * pet_sp
    ct_shape = np.maximum(np.round(field / ct_sp), 1).astype(int)
    corner = -field / 2 + shift
    pet_origin, ct_origin = corner + pet_sp / 2, corner + ct_sp / 2
    cv = Canvas(tuple(ct_shape), tuple(ct_sp * np.array(CANONICAL_FIELD["autopet"]) / field))
    n_lesions = build_whole_body(cv, p, rng, lesion_free, opts["lesion_sizes"])
    pet_ref = _ref(pet_shape, pet_sp, pet_origin)
    ct, suv = _form_images(cv, p, rng, ct_sp, ct_origin, pet_ref)
    ctres = sitk.Cast(
        sitk.Resample(ct, pet_ref, sitk.Transform(), sitk.sitkLinear, CT_FLOOR_HU, sitk.sitkFloat32),
        sitk.sitkInt16,
    )
    seg = _label_on(cv, ct_sp, ct_origin, pet_ref)
    decayed_bq = p.dose_mbq * 1e6 * 2.0 ** (-p.uptake_min * 60.0 / F18_HALF_LIFE_S)
    bqml = suv * (decayed_bq / (p.weight_kg * G_PER_KG))
    files = {"CT.nii.gz": ct, "CTres.nii.gz": ctres, "PET.nii.gz": bqml, "SUV.nii.gz": suv, "SEG.nii.gz": seg}
    return files, n_lesions


def _hecktor_study(opts, p, rng, shift) -> tuple[dict, tuple[int, int]]:
    pet_shape = np.array(opts["pet_shape"], int)
    pet_sp = np.array(opts["pet_spacing"], float)
    ct_shape = np.array(opts["ct_shape"], int)
    ct_sp = np.array(opts["ct_spacing"], float)
    pet_field = pet_shape * pet_sp
    fine_shape = np.maximum(np.ceil(pet_field / ct_sp), ct_shape).astype(int)
    fine_field = fine_shape * ct_sp
    corner = -fine_field / 2 + shift
    fine_origin = corner + ct_sp / 2
    pet_origin = corner + (fine_field - pet_field) / 2 + pet_sp / 2
    cv = Canvas(tuple(fine_shape), tuple(ct_sp * np.array(CANONICAL_FIELD["hecktor"]) / fine_field))
    counts = build_head_neck(cv, p, rng)
    pet_ref = _ref(pet_shape, pet_sp, pet_origin)
    ct_fine, suv = _form_images(cv, p, rng, ct_sp, fine_origin, pet_ref)
    # the CT field: a block of the fine grid, centred with a random offset (different extent than PET)
    slack = fine_shape - ct_shape
    start = np.clip(slack // 2 + rng.integers(-4, 5, size=3), 0, slack)
    stop = start + ct_shape
    ct = ct_fine[int(start[0]) : int(stop[0]), int(start[1]) : int(stop[1]), int(start[2]) : int(stop[2])]
    label = cv.label[int(start[0]) : int(stop[0]), int(start[1]) : int(stop[1]), int(start[2]) : int(stop[2])]
    return {"CT": ct, "PT": suv, "label": from_array(label, ct)}, counts


def _hex_id(*parts) -> str:
    return hashlib.sha256("-".join(str(p) for p in parts).encode()).hexdigest()[:10]


def generate_cohort(kind: str, out: Path, n_cases: int, seed: int = 0, **size_options) -> list[str]:
    """Write a synthetic cohort of ``n_cases`` studies under ``out`` in the real layout of ``kind``.

    Args:
        kind: ``"autopet"`` (``<out>/PETCT_<id>/<study>/{CT,CTres,PET,SUV,SEG}.nii.gz``) or
            ``"hecktor"`` (``<out>/imagesTr/<Center-ID>__{CT,PT}.nii.gz``,
            ``<out>/labelsTr/<Center-ID>.nii.gz``).
        out: output folder (created).
        n_cases: number of studies.
        seed: cohort seed; the same seed gives the same bytes.
        **size_options: see ``AUTOPET_DEFAULTS`` / ``HECKTOR_DEFAULTS`` (shapes in voxels X, Y, Z,
            spacings in mm; ``lesion_free_fraction``, ``multi_study_fraction`` and ``lesion_sizes`` — a
            preset name of :data:`h2aseg.data.phantom.LESION_SIZE_PRESETS` (``realistic`` by default) or a
            :class:`~h2aseg.data.phantom.LesionSizes` — for AutoPET).

    Returns:
        The case ids, as :func:`h2aseg.data.layouts.discover_cases` names them.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if n_cases < 1:
        raise ValueError(f"n_cases must be at least 1, got {n_cases}")
    opts = _options(kind, size_options)
    if kind == "autopet" and isinstance(opts["lesion_sizes"], str):
        if opts["lesion_sizes"] not in LESION_SIZE_PRESETS:
            raise ValueError(
                f"lesion_sizes must be one of {', '.join(LESION_SIZE_PRESETS)}, not {opts['lesion_sizes']!r}"
            )
        opts["lesion_sizes"] = LESION_SIZE_PRESETS[opts["lesion_sizes"]]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    case_ids: list[str] = []
    if kind == "hecktor":
        counters: dict[str, int] = {}
        for i in range(n_cases):
            rng = np.random.default_rng(np.random.SeedSequence([seed, i, 1]))
            p = patient_params(np.random.default_rng(np.random.SeedSequence([seed, i, 0])))
            center = HECKTOR_CENTERS[i % len(HECKTOR_CENTERS)]
            counters[center] = counters.get(center, 0) + 1
            case_id = f"{center}-{counters[center]:03d}"
            files, _ = _hecktor_study(opts, p, rng, shift=rng.uniform(-20, 20, size=3))
            write_image(files["CT"], out / "imagesTr" / f"{case_id}__CT.nii.gz")
            write_image(files["PT"], out / "imagesTr" / f"{case_id}__PT.nii.gz")
            write_image(files["label"], out / "labelsTr" / f"{case_id}.nii.gz")
            case_ids.append(case_id)
        return sorted(case_ids)

    study_index, patient_index = 0, 0
    frac = float(opts["lesion_free_fraction"])
    while study_index < n_cases:
        prng = np.random.default_rng(np.random.SeedSequence([seed, patient_index, 0]))
        p = patient_params(prng)
        n_studies = 2 if (prng.random() < opts["multi_study_fraction"] and n_cases - study_index >= 2) else 1
        patient = f"PETCT_{_hex_id('autopet', seed, patient_index)}"
        year = int(prng.integers(2002, 2018))
        names = []
        for k in range(n_studies):
            month, day = int(prng.integers(1, 13)), int(prng.integers(1, 29))
            names.append(
                f"{month:02d}-{day:02d}-{year + k}-NA-PET-CT Ganzkoerper  primaer mit "
                f"KM-{_hex_id(patient, k)[:5]}"
            )
        shift = prng.uniform(-10, 10, size=3)
        for k, name in enumerate(names):
            rng = np.random.default_rng(np.random.SeedSequence([seed, patient_index, k + 1]))
            lesion_free = math.floor((study_index + 1) * frac) > math.floor(study_index * frac)
            files, _ = _autopet_study(opts, p, rng, lesion_free, shift)
            for file_name, image in files.items():
                write_image(image, out / patient / name / file_name)
            study_index += 1
        case_ids += [f"{patient}_study{r}" for r in range(1, n_studies + 1)]
        patient_index += 1
    return sorted(case_ids)
