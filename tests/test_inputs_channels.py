"""Issue 11: nnU-Net channel resolution (v2 channel_names, v1 modality, content,
--ct-channel/--pet-channel)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from h2aseg.cli import main as cli_main
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
    return make_cohort("autopet", 2, seed=5, **TINY)[0]  # read only: shared for the session


def nnunet_folder(autopet: Path, out: Path, meta: dict, swap: bool = False) -> Path:
    """nnU-Net raw data as its AutoPET conversion writes it: _0000 = CTres, _0001 = SUV (or swapped)."""
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    for case in discover_cases(autopet, "autopet").cases:
        first, second = (case.pet, case.ct) if swap else (case.ct, case.pet)
        shutil.copy(first, out / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        shutil.copy(second, out / "imagesTr" / f"{case.case_id}_0001.nii.gz")
        shutil.copy(case.label, out / "labelsTr" / f"{case.case_id}.nii.gz")
    (out / "dataset.json").write_text(
        json.dumps({"file_ending": ".nii.gz", "labels": {"background": 0, "lesion": 1}, **meta})
    )
    return out


def test_nnunet_autopet_conversion_naming_both_channels_ct_reads_ct_from_0000_and_pet_from_0001(
    autopet, tmp_path
):
    root = nnunet_folder(
        autopet, tmp_path / "Dataset221_AutoPETII", {"channel_names": {"0": "CT", "1": "CT"}}
    )
    found = discover_cases(root, "auto")
    assert found.cases and not found.problems
    for case in found.cases:  # before: both mapped to _0001 (the SUV file), "3 good case(s)"
        assert case.ct.name.endswith("_0000.nii.gz") and case.pet.name.endswith("_0001.nii.gz")
    assert "by content" in found.notes[0] and "CT = channel 0" in found.notes[0]


def test_nnunet_content_decides_when_the_channels_are_stored_the_other_way_round(autopet, tmp_path):
    root = nnunet_folder(autopet, tmp_path / "ds", {"channel_names": {"0": "CT", "1": "CT"}}, swap=True)
    case = discover_cases(root, "nnunet").cases[0]
    assert case.ct.name.endswith("_0001.nii.gz") and case.pet.name.endswith("_0000.nii.gz")


def test_nnunet_v1_modality_key_is_read(autopet, tmp_path):
    # names decide here (PET first): without reading "modality" the old code took channel 0 as CT
    root = nnunet_folder(autopet, tmp_path / "Task501", {"modality": {"0": "PET", "1": "CT"}}, swap=True)
    found = discover_cases(root, "nnunet")
    assert found.cases[0].ct.name.endswith("_0001.nii.gz") and found.cases[0].pet.name.endswith(
        "_0000.nii.gz"
    )
    assert "modality" in found.notes[0]


def test_nnunet_undecidable_channels_are_one_line_naming_the_case_and_the_options(autopet, tmp_path):
    root = nnunet_folder(autopet, tmp_path / "ds", {"channel_names": {"0": "CT", "1": "CT"}})
    # both channels without air: a PET copied into the CT channel
    for path in sorted((root / "imagesTr").glob("*_0000.nii.gz")):
        shutil.copy(str(path).replace("_0000", "_0001"), path)
    with pytest.raises(DataError) as err:
        discover_cases(root, "nnunet")
    message = str(err.value)
    assert "\n" not in message and "--ct-channel" in message and "--pet-channel" in message
    assert "case PETCT_" in message
    # the options decide it
    found = discover_cases(root, "nnunet", ct_channel=0, pet_channel=1)
    assert found.cases[0].ct.name.endswith("_0000.nii.gz")


def test_channel_options_override_names_and_reach_check(autopet, tmp_path, capsys):
    root = nnunet_folder(autopet, tmp_path / "ds", {"channel_names": {"0": "CT", "1": "PET"}}, swap=True)
    assert (
        cli_main(["check", "--data", str(root), "--no-progress"]) == 1
    )  # names are wrong: content checks say so
    out = capsys.readouterr().out
    assert "swapped" in out and "CT = channel 0" in out
    assert (
        cli_main(["check", "--data", str(root), "--ct-channel", "1", "--pet-channel", "0", "--no-progress"])
        == 0
    )
    out = capsys.readouterr().out
    assert "CT = channel 1" in out and "2 good case(s)" in out


def test_channel_options_on_another_layout_are_refused(autopet):
    with pytest.raises(DataError, match="nnU-Net"):
        discover_cases(autopet, "autopet", ct_channel=0)


def test_nnunet_without_names_decides_by_content(autopet, tmp_path):
    root = nnunet_folder(autopet, tmp_path / "ds", {})
    image = sitk.ReadImage(str(next((root / "imagesTr").glob("*_0000.nii.gz"))))
    assert np.min(sitk.GetArrayViewFromImage(image)) < -500
    case = discover_cases(root, "nnunet").cases[0]
    assert case.ct.name.endswith("_0000.nii.gz")
