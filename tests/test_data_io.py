"""h2aseg.data.io: geometry round trips, DICOM CT in HU, DICOM PET in SUVbw, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from h2aseg.data.io import from_array, read_ct, read_image, read_pet, to_array, write_image
from h2aseg.errors import DataError

CT_SOP = "1.2.840.10008.5.1.4.1.1.2"
PET_SOP = "1.2.840.10008.5.1.4.1.1.128"


def write_dicom_series(
    folder: Path, stored: np.ndarray, spacing, origin, modality: str, per_slice=None
) -> None:
    """Write ``stored`` (X, Y, Z, int16) as one axial DICOM series; ``per_slice(ds, k)`` adds tags."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(stored.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_SOP if modality == "CT" else PET_SOP
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = modality, "P001", "Test^Patient"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * spacing[2])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        if per_slice is not None:
            per_slice(ds, k)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype(np.int16)).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


def pet_header(ds: Dataset, weight=70.0, dose=3.5e8, start="100000", series_time="110000") -> None:
    ds.Units, ds.DecayCorrection = "BQML", "START"
    ds.PatientWeight = weight
    ds.SeriesDate, ds.SeriesTime = "20240101", series_time
    info = Dataset()
    info.RadionuclideTotalDose = dose
    info.RadionuclideHalfLife = 6586.2
    info.RadiopharmaceuticalStartTime = start
    ds.RadiopharmaceuticalInformationSequence = [info]


def test_nifti_and_mha_round_trip_geometry_and_axis_order(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    ref = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    ref.SetSpacing((0.9, 1.3, 3.0))
    ref.SetOrigin((-10.5, 20.25, 300.0))
    ref.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    image = from_array(array, ref)
    assert image.GetPixel(1, 2, 3) == array[1, 2, 3]  # (X, Y, Z) convention
    for name in ("a.nii.gz", "a.nii", "a.mha"):
        write_image(image, tmp_path / name)
        back = read_image(tmp_path / name)
        np.testing.assert_allclose(back.GetSpacing(), ref.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(back.GetOrigin(), ref.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(back.GetDirection(), ref.GetDirection(), atol=1e-6)
        np.testing.assert_array_equal(to_array(back), array)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_dicom_ct_series_is_read_in_hu_with_geometry(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1500, size=(6, 5, 4)).astype(np.int16)

    def rescale(ds, k):
        ds.RescaleIntercept = -1024.0

    write_dicom_series(tmp_path / "ct", hu + 1024, (0.8, 0.9, 2.5), (-5.0, 7.0, 100.0), "CT", rescale)
    image = read_ct(tmp_path / "ct")
    np.testing.assert_allclose(to_array(image), hu)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.9, 2.5), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), (-5.0, 7.0, 100.0), atol=1e-4)


def test_dicom_pet_series_gives_expected_suv(tmp_path):
    rng = np.random.default_rng(1)
    bq = rng.uniform(0, 40000, size=(5, 4, 3))
    slopes = [0.75, 1.5, 2.25]
    stored = np.stack([np.round(bq[:, :, k] / slopes[k]) for k in range(3)], axis=2).astype(np.int16)

    def header(ds, k):
        pet_header(ds)
        ds.RescaleSlope = slopes[k]

    write_dicom_series(tmp_path / "pet", stored, (4.0, 4.0, 3.0), (0.0, 0.0, 0.0), "PT", header)
    decayed = 3.5e8 * 2 ** (-3600.0 / 6586.2)
    expected = stored * np.array(slopes)[None, None, :] * 70000.0 / decayed
    np.testing.assert_allclose(to_array(read_pet(tmp_path / "pet")), expected, rtol=1e-5)


def test_dicom_pet_without_weight_names_the_missing_tag(tmp_path):
    def header(ds, k):
        pet_header(ds)
        del ds.PatientWeight

    write_dicom_series(tmp_path / "pet", np.ones((3, 3, 2), np.int16), (4, 4, 4), (0, 0, 0), "PT", header)
    with pytest.raises(DataError, match="PatientWeight") as err:
        read_pet(tmp_path / "pet")
    assert "\n" not in str(err.value)


def test_injection_before_midnight_is_handled(tmp_path):
    def header(ds, k):
        pet_header(ds, start="233000", series_time="003000")

    write_dicom_series(
        tmp_path / "pet", np.full((2, 2, 2), 1000, np.int16), (4, 4, 4), (0, 0, 0), "PT", header
    )
    factor = 70000.0 / (3.5e8 * 2 ** (-3600.0 / 6586.2))
    np.testing.assert_allclose(to_array(read_pet(tmp_path / "pet")), 1000 * factor, rtol=1e-5)


def test_unreadable_and_missing_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image at all")
    for path in (bad, tmp_path / "absent.nii.gz", tmp_path):
        with pytest.raises(DataError) as err:
            read_image(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_four_d_pet_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.float32), isVector=False)
    sitk.WriteImage(image, str(tmp_path / "pet4d.nii.gz"))
    with pytest.raises(DataError, match="4-D"):
        read_pet(tmp_path / "pet4d.nii.gz")


def test_writes_are_byte_identical(tmp_path):
    image = from_array(
        np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32),
        sitk.Image(8, 8, 8, sitk.sitkFloat32),
    )
    write_image(image, tmp_path / "a.nii.gz")
    write_image(image, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()
