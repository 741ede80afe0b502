"""Synthetic cohorts as DICOM series: the DICOM input path exercised end to end without real data.

:func:`generate_dicom_cohort` writes a phantom cohort with :func:`h2aseg.data.synthetic.generate_cohort`
(NIfTI, kept under ``<out>/nifti``) and turns each study's CT and PET into DICOM series::

    <out>/dicom/<case_id>/CT/CT_0001.dcm ...     CT Image Storage, uint16 with RescaleIntercept -1024 (HU)
    <out>/dicom/<case_id>/PET/PET_0001.dcm ...   PET Image Storage, Units BQML, uint16 with a slope per slice
    <out>/manifest.csv                           case_id, patient_id, ct, pet (series folders), label (NIfTI)

The PET header holds what :func:`h2aseg.data.io.suv_factor_from_dicom` reads: PatientWeight,
RadiopharmaceuticalInformationSequence (RadionuclideTotalDose, RadionuclideHalfLife of F-18,
RadiopharmaceuticalStartTime and StartDateTime), DecayCorrection ``START`` and SeriesDate/SeriesTime.
Stored activity is ``C = SUV · D · 2^(−Δt / T½) / W`` (W in g, D in Bq, Δt from injection to series
start), so reading the series back gives the NIfTI SUV up to the 16-bit quantisation of each slice
(at most ``max_slice / 131070``). Header values come from the case id and the seed: same seed, same bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from h2aseg import __version__
from h2aseg.constants import CT_FLOOR_HU, F18_HALF_LIFE_S, G_PER_KG
from h2aseg.data.io import read_image
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic import generate_cohort

__all__ = ["generate_dicom_cohort", "write_series", "pet_header"]

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_INTERCEPT = CT_FLOOR_HU  # stored 0..4095 spans the 12-bit CT range


def _uid(*parts) -> str:
    """A deterministic DICOM UID from ``parts`` (same inputs, same UID)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _rng(*parts) -> np.random.Generator:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def pet_header(case_id: str, seed: int) -> dict:
    """Patient weight (kg), injected dose (Bq), injection and series start of one synthetic PET study.

    Numbers are rounded to what the DICOM strings hold, so the SUV factor read back is exactly the one used.
    """
    rng = _rng("pet", seed, case_id)
    day = dt.datetime(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1500)))
    injection = day + dt.timedelta(hours=int(rng.integers(8, 15)), minutes=int(rng.integers(0, 60)))
    start = injection + dt.timedelta(minutes=int(rng.integers(55, 76)), seconds=int(rng.integers(0, 60)))
    return {
        "weight_kg": round(float(rng.uniform(50.0, 100.0)), 1),
        "dose_bq": float(int(rng.uniform(200.0, 400.0)) * 1e6),
        "injection": injection,
        "series_start": start,
        "half_life_s": F18_HALF_LIFE_S,
    }


def _common(ds: Dataset, header: dict, study: dict, series_uid: str, modality: str, number: int) -> None:
    """Patient, study, series, frame-of-reference and equipment tags shared by every slice of a series."""
    when = header["series_start"]
    ds.PatientName, ds.PatientID = f"{study['patient_id']}^", study["patient_id"]
    ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
    ds.PatientWeight = f"{header['weight_kg']:.1f}"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = study["study_uid"], "1", ""
    ds.StudyDate, ds.StudyTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"h2aseg synthetic PET/CT {study['case_id']}"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_uid, number, modality
    ds.SeriesDate, ds.SeriesTime = ds.StudyDate, ds.StudyTime
    ds.AcquisitionDate, ds.AcquisitionTime = ds.StudyDate, ds.StudyTime
    ds.SeriesDescription = f"synthetic {modality}"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = study["frame_uid"], ""
    ds.Manufacturer, ds.ManufacturerModelName = "h2aseg", "synthetic phantom"
    ds.SoftwareVersions = __version__
    ds.BodyPartExamined = "WHOLEBODY"


def _pet_tags(ds: Dataset, header: dict, n_slices: int, index: int) -> None:
    info = Dataset()
    info.Radiopharmaceutical = "Fluorodeoxyglucose"
    info.RadionuclideTotalDose = f"{header['dose_bq']:.6g}"
    info.RadionuclideHalfLife = f"{header['half_life_s']}"
    info.RadiopharmaceuticalStartTime = header["injection"].strftime("%H%M%S")
    info.RadiopharmaceuticalStartDateTime = header["injection"].strftime("%Y%m%d%H%M%S")
    ds.RadiopharmaceuticalInformationSequence = [info]
    ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["DECY", "ATTN"]
    ds.SeriesType, ds.CountsSource = ["STATIC", "IMAGE"], "EMISSION"
    ds.NumberOfSlices, ds.ImageIndex = n_slices, index + 1
    ds.FrameReferenceTime, ds.ActualFrameDuration = "0", 180000


def _quantise(plane: np.ndarray, modality: str) -> tuple[np.ndarray, str, str]:
    """(stored uint16 plane, RescaleSlope, RescaleIntercept) as DICOM strings, for one slice."""
    if modality == "CT":
        stored = np.clip(np.round(plane - CT_INTERCEPT), 0, 4095)
        return stored.astype(np.uint16), "1", f"{CT_INTERCEPT:g}"
    top = float(plane.max())
    slope = f"{top / 65535.0:.9g}" if top > 0 else "1"
    stored = np.clip(np.round(np.maximum(plane, 0.0) / float(slope)), 0, 65535)
    return stored.astype(np.uint16), slope, "0"


def write_series(
    image: sitk.Image, folder: Path, modality: str, header: dict, study: dict, number: int
) -> None:
    """Write a 3-D ``image`` (CT in HU or PET in Bq/ml) as one axial DICOM series, one file per slice.

    Geometry is taken from the image: ImagePositionPatient of slice k is the physical point of voxel
    (0, 0, k), ImageOrientationPatient the first two direction columns, PixelSpacing (row, column).
    """
    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # (Z, Y, X): frames of rows x columns
    spacing, direction = image.GetSpacing(), np.asarray(image.GetDirection()).reshape(3, 3)
    series_uid = _uid(study["study_uid"], modality)
    storage = CT_STORAGE if modality == "CT" else PET_STORAGE
    prefix = "CT" if modality == "CT" else "PET"
    for k in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = storage, ExplicitVRLittleEndian
        meta.MediaStorageSOPInstanceUID = _uid(series_uid, k)
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = storage, meta.MediaStorageSOPInstanceUID
        _common(ds, header, study, series_uid, "CT" if modality == "CT" else "PT", number)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.5f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]
        ds.SliceThickness = f"{spacing[2]:.6g}"
        stored, slope, intercept = _quantise(array[k], modality)
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.RescaleType = "HU" if modality == "CT" else "BQML"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = stored.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.ascontiguousarray(stored).tobytes()
        if modality != "CT":
            _pet_tags(ds, header, array.shape[0], k)
        ds.save_as(folder / f"{prefix}_{k + 1:04d}.dcm", enforce_file_format=True)


def _bqml(suv: sitk.Image, header: dict) -> sitk.Image:
    """SUV -> activity concentration in Bq/ml at the series start (decay from injection, F-18)."""
    elapsed = (header["series_start"] - header["injection"]).total_seconds()
    decayed = header["dose_bq"] * 2.0 ** (-elapsed / header["half_life_s"])
    return sitk.Cast(suv, sitk.sitkFloat64) * (decayed / (header["weight_kg"] * G_PER_KG))


def generate_dicom_cohort(kind: str, out: Path, n_cases: int, seed: int = 0, **size_options) -> list[str]:
    """Write a synthetic cohort as CT and PET DICOM series plus ``manifest.csv`` (see the module doc).

    Args:
        kind, n_cases, seed, size_options: as :func:`h2aseg.data.synthetic.generate_cohort`.
        out: output folder; ``h2aseg predict --input OUT`` and ``h2aseg train --data OUT`` read it
            through the manifest.

    Returns:
        The case ids.
    """
    out = Path(out)
    generate_cohort(kind, out / "nifti", n_cases, seed=seed, **size_options)
    rows = []
    for case in discover_cases(out / "nifti", layout=kind).cases:
        ct_path = (
            case.ct.parent / "CT.nii.gz" if kind == "autopet" else case.ct
        )  # original CT grid, not CTres
        header = pet_header(case.case_id, seed)
        study = {
            "case_id": case.case_id,
            "patient_id": case.patient_id,
            "study_uid": _uid("study", seed, case.case_id),
            "frame_uid": _uid("frame", seed, case.case_id),
        }
        folder = out / "dicom" / case.case_id
        write_series(read_image(ct_path), folder / "CT", "CT", header, study, 1)
        write_series(_bqml(read_image(case.pet), header), folder / "PET", "PT", header, study, 2)
        rows.append(
            {
                "case_id": case.case_id,
                "patient_id": case.patient_id,
                "ct": (folder / "CT").relative_to(out).as_posix(),
                "pet": (folder / "PET").relative_to(out).as_posix(),
                "label": case.label.relative_to(out).as_posix() if case.label else "",
            }
        )
    with (out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case_id", "patient_id", "ct", "pet", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return [r["case_id"] for r in rows]
