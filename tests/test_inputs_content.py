"""Issue 11: content checks (CT in HU, PET in SUV), DICOM series selection, damaged and oversized files."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from test_data_io import pet_header, write_dicom_series

from h2aseg.cli import main as cli_main
from h2aseg.data.io import list_dicom_series, read_ct, read_image, read_pet, to_array
from h2aseg.data.layouts import discover_cases
from h2aseg.errors import DataError

TINY = {
    "pet_shape": (16, 16, 24),
    "pet_spacing": (16.0, 16.0, 16.0),
    "ct_spacing": (8.0, 8.0, 8.0),
    "lesion_free_fraction": 0.0,
}


@pytest.fixture(scope="module")
def autopet(make_cohort) -> Path:
    return make_cohort("autopet", 1, seed=7, **TINY)[0]  # read only: shared for the session


def manifest(tmp_path: Path, ct: Path, pet: Path, label: Path) -> Path:
    path = tmp_path / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "patient_id", "ct", "pet", "label"])
        writer.writerow(["case1", "p1", ct, pet, label])
    return path


def check(path: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli_main(["check", "--data", str(path), "--no-progress", *extra])
    return code, capsys.readouterr().out


def test_swapped_ct_and_pet_are_named_as_swapped_and_the_opt_out_lets_them_through(autopet, tmp_path, capsys):
    case = discover_cases(autopet).cases[0]
    path = manifest(tmp_path, case.pet, case.ct, case.label)
    code, out = check(path, capsys)
    assert code == 1 and "CT and PET look swapped" in out and "case case1" in out  # before: 1 good case
    assert len([ln for ln in out.splitlines() if "case1" in ln]) == 1
    code, out = check(path, capsys, "--skip-content-checks")
    assert code == 0 and "1 good case(s)" in out and "skipped: ct-air" in out


def test_pet_in_bq_per_ml_is_refused_with_the_conversion_hint(autopet, tmp_path, capsys):
    case = discover_cases(autopet).cases[0]
    path = manifest(tmp_path, case.ct, case.pet.parent / "PET.nii.gz", case.label)
    code, out = check(path, capsys)
    assert code == 1 and "Bq/ml" in out and "SUV.nii.gz" in out and "PatientWeight" in out
    code, out = check(path, capsys, "--skip-content-checks", "pet-range")
    assert code == 0, out


def test_all_zero_ct_is_refused(autopet, tmp_path, capsys):
    case = discover_cases(autopet).cases[0]
    ct = sitk.ReadImage(str(case.ct))
    zero = sitk.Image(ct.GetSize(), ct.GetPixelID())
    zero.CopyInformation(ct)
    sitk.WriteImage(zero, str(tmp_path / "zero_ct.nii.gz"))
    code, out = check(manifest(tmp_path, tmp_path / "zero_ct.nii.gz", case.pet, case.label), capsys)
    assert code == 1 and "CT holds no air" in out


def test_truncated_gzip_is_one_line_error_for_any_pixel_type(autopet, tmp_path):
    case = discover_cases(autopet).cases[0]
    for source in (case.ct, case.pet):  # int16 CTres (ITK filled it up in silence) and float SUV (EOFError)
        data = Path(source).read_bytes()
        broken = tmp_path / f"broken_{Path(source).name}"
        broken.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match="unreadable image file") as err:
            read_image(broken)
        assert str(broken) in str(err.value) and "\n" not in str(err.value)
    with gzip.open(tmp_path / "ok.nii.gz", "wb") as handle:
        handle.write(gzip.decompress(Path(case.ct).read_bytes()))
    assert read_image(tmp_path / "ok.nii.gz").GetSize() == sitk.ReadImage(str(case.ct)).GetSize()


def test_header_declaring_too_many_voxels_is_refused_before_reading(autopet, tmp_path):
    case = discover_cases(autopet).cases[0]
    size = int(np.prod(sitk.ReadImage(str(case.ct)).GetSize()))
    with pytest.raises(DataError, match="--max-voxels"):
        read_ct(case.ct, max_voxels=size - 1)
    assert read_ct(case.ct, max_voxels=size).GetSize()
    # a header that declares 2^33 voxels with no data behind it (a decompression bomb's header)
    image = sitk.Image([8, 8, 8], sitk.sitkInt16)
    sitk.WriteImage(image, str(tmp_path / "small.nii"))
    header = bytearray((tmp_path / "small.nii").read_bytes())
    header[42:48] = np.array([2048, 2048, 2048], "<i2").tobytes()  # dim[1..3] of the NIfTI-1 header
    (tmp_path / "bomb.nii").write_bytes(bytes(header))
    with pytest.raises(DataError, match="header declares 8589934592 voxels"):
        read_image(tmp_path / "bomb.nii")


def _dicom_study(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """One folder with a CT series (4 slices), a PT series (3 slices) and a 1-slice CT localizer."""
    ct = np.full((6, 5, 4), -1000, np.int16)
    ct[1:5, 1:4] = 40
    pet = np.full((4, 4, 3), 500, np.int16)
    parts = folder.parent / "parts"
    write_dicom_series(parts / "ct", ct, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), "CT")
    write_dicom_series(
        parts / "pt", pet, (4.0, 4.0, 4.0), (0.0, 0.0, 0.0), "PT", lambda ds, k: pet_header(ds)
    )
    write_dicom_series(parts / "loc", np.zeros((8, 8, 1), np.int16), (3.0, 3.0, 1.0), (0.0, 0.0, 0.0), "CT")
    folder.mkdir()
    for name in ("ct", "pt", "loc"):
        for path in (parts / name).iterdir():
            shutil.move(str(path), folder / f"{name}_{path.name}")
    return ct, pet


def test_dicom_folder_with_ct_pt_and_a_localizer_gives_each_reader_its_series(tmp_path):
    ct, _ = _dicom_study(tmp_path / "study")
    image = read_ct(tmp_path / "study")
    assert image.GetSize() == (6, 5, 4)  # before: "the series with the most slices" for both
    np.testing.assert_array_equal(to_array(image), ct)
    pet = read_pet(tmp_path / "study")
    assert pet.GetSize() == (4, 4, 3) and pet.GetSpacing() == pytest.approx((4.0, 4.0, 4.0))


def test_ambiguous_dicom_folder_names_the_series_and_the_uid_option_picks_one(tmp_path):
    _dicom_study(tmp_path / "study")
    write_dicom_series(tmp_path / "more", np.zeros((3, 3, 5), np.int16), (1.0, 1.0, 1.0), (0, 0, 0), "CT")
    for path in (tmp_path / "more").iterdir():
        shutil.move(str(path), tmp_path / "study" / f"more_{path.name}")
    with pytest.raises(DataError, match="holds 2 CT series") as err:
        read_ct(tmp_path / "study")
    assert "--ct-series" in str(err.value) and "4 file(s)" in str(err.value) and "5 file(s)" in str(err.value)
    uid = next(s.uid for s in list_dicom_series(tmp_path / "study") if len(s.files) == 5)
    assert uid in str(err.value)
    assert read_ct(tmp_path / "study", series_uid=uid).GetSize() == (3, 3, 5)


def test_manifest_series_columns_pick_a_dicom_series_and_check_uses_the_modality(tmp_path, capsys):
    _dicom_study(tmp_path / "study")
    write_dicom_series(
        tmp_path / "more", np.full((3, 3, 5), -1000, np.int16), (4.0, 4.0, 4.0), (0, 0, 0), "CT"
    )
    for path in (tmp_path / "more").iterdir():
        shutil.move(str(path), tmp_path / "study" / f"more_{path.name}")
    uid = next(s.uid for s in list_dicom_series(tmp_path / "study") if len(s.files) == 4)
    path = tmp_path / "manifest.csv"
    path.write_text(
        f"case_id,patient_id,ct,pet,label,ct_series\nc1,p1,study,study,,{uid}\nc2,p2,study,study,,\n"
    )
    found = discover_cases(path, require_labels=False)
    assert [c.ct_series for c in found.cases] == [uid, None]
    code, out = check(path, capsys, "--no-labels", "--skip-content-checks")
    assert code == 1 and "1 good case(s)" in out and "case c2" in out and "holds 2 CT series" in out


def test_an_unexpected_read_or_resample_failure_is_one_line_for_that_case(autopet, monkeypatch):
    from h2aseg.data import preprocess

    def broken(*args, **kwargs):
        raise RuntimeError("Exception thrown in SimpleITK GetArrayViewFromImage\nsome ITK detail")

    monkeypatch.setattr(preprocess.sitk, "GetArrayViewFromImage", broken)
    problems = preprocess.check_cases(discover_cases(autopet).cases, preprocess.PreprocessConfig())
    assert len(problems) == 1 and "cannot be read or resampled" in problems[0].message
    assert "\n" not in problems[0].message
