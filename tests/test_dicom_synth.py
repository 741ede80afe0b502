"""Synthetic DICOM cohorts: the PET series reads back (header -> SUV) as the NIfTI SUV it was made from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from h2aseg.cli import main as cli_main
from h2aseg.data.io import read_ct, read_image, read_pet, suv_factor_from_dicom, to_array
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic_dicom import generate_dicom_cohort, pet_header

TINY = {"pet_shape": (16, 16, 12), "pet_spacing": (8.0, 8.0, 8.0), "ct_spacing": (8.0, 8.0, 8.0)}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dicom_cohort")
    generate_dicom_cohort("autopet", root, 2, seed=4, lesion_free_fraction=0.0, **TINY)
    return root


def test_dicom_pet_reads_back_as_the_nifti_suv(cohort):
    nifti = {c.case_id: c for c in discover_cases(cohort / "nifti", "autopet").cases}
    dicom = discover_cases(cohort, "manifest").cases
    assert sorted(c.case_id for c in dicom) == sorted(nifti)
    for case in dicom:
        assert case.pet.is_dir() and case.ct.is_dir()
        suv_dicom, suv_nifti = read_pet(case.pet), read_pet(nifti[case.case_id].pet)
        assert suv_dicom.GetSize() == suv_nifti.GetSize()
        assert suv_dicom.GetOrigin() == pytest.approx(suv_nifti.GetOrigin(), abs=1e-4)
        assert suv_dicom.GetSpacing() == pytest.approx(suv_nifti.GetSpacing())
        a, b = to_array(suv_dicom), to_array(suv_nifti)
        # 16-bit storage with one slope per slice: error at most half a step, max_slice / 131070
        step = b.max(axis=(0, 1), keepdims=True) / 65535.0
        assert np.all(np.abs(a - b) <= 0.5 * step + 1e-5 * b.max())
        assert b.max() > 1.0  # not a trivially empty PET


def test_dicom_pet_header_holds_what_the_suv_conversion_reads(cohort):
    case = discover_cases(cohort, "manifest").cases[0]
    first = sorted(case.pet.iterdir())[0]
    ds = pydicom.dcmread(first)
    header = pet_header(case.case_id, 4)
    assert ds.Modality == "PT" and ds.Units == "BQML" and ds.DecayCorrection == "START"
    info = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(info.RadionuclideTotalDose) == header["dose_bq"]
    assert float(ds.PatientWeight) == header["weight_kg"]
    elapsed = (header["series_start"] - header["injection"]).total_seconds()
    expected = header["weight_kg"] * 1000 / (header["dose_bq"] * 2 ** (-elapsed / header["half_life_s"]))
    assert suv_factor_from_dicom(first) == pytest.approx(expected, rel=1e-12)
    assert 3000 <= elapsed <= 4600  # 55-76 min uptake


def test_dicom_ct_reads_back_in_hu(cohort):
    case = discover_cases(cohort, "manifest").cases[0]
    nifti = next((cohort / "nifti").glob(f"{case.patient_id}/*/CT.nii.gz"))
    np.testing.assert_allclose(to_array(read_ct(case.ct)), to_array(read_image(nifti)), atol=0)


def test_synth_cli_writes_dicom(tmp_path, capsys):
    out = tmp_path / "synth"
    assert (
        cli_main(
            [
                "synth",
                "--format",
                "dicom",
                "--cases",
                "1",
                "--out",
                str(out),
                "--pet-shape",
                "16,16,12",
                "--pet-spacing",
                "8",
                "--ct-spacing",
                "8",
            ]
        )
        == 0
    )
    assert "DICOM" in capsys.readouterr().out
    (case,) = discover_cases(out, "auto").cases
    assert len(list(case.pet.glob("*.dcm"))) == 12 and case.pet.is_dir()
