"""DICOM SEG / RTSTRUCT output of predict: they rebuild the NIfTI prediction on the PET series they
reference."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from h2aseg.cli import main as cli_main
from h2aseg.config import RunConfig
from h2aseg.data.io import read_pet
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic_dicom import generate_dicom_cohort
from h2aseg.errors import ConfigError
from h2aseg.inference.dicom_export import (
    labels_for,
    read_series,
    require_dicom,
    rtstruct_to_label,
    write_rtstruct,
    write_seg,
)
from h2aseg.inference.outputs import PostProcess, parse_formats, remove_components
from h2aseg.inference.predictor import build_network
from h2aseg.training.checkpoint import save_checkpoint

hd = pytest.importorskip("highdicom")

TINY = {"pet_shape": (24, 24, 16), "pet_spacing": (8.0, 8.0, 8.0), "ct_spacing": (4.0, 4.0, 4.0)}


def make_run(folder: Path, foreground_prior: float = 0.45, seed: int = 0) -> Path:
    """An untrained tiny H2ASeg saved as a run folder; a head prior near 0.5 gives a mask of many shapes."""
    config = RunConfig()
    config.model.options = {
        "channels": [2, 4, 4, 8, 8],
        "window_size": [4, 4, 4],
        "foreground_prior": foreground_prior,
    }
    config.train.patch = [32, 32, 32]
    torch.manual_seed(seed)
    folder.mkdir(parents=True)
    save_checkpoint(
        {"model": build_network(config).state_dict(), "config": config.to_dict(), "epoch": 1},
        folder / "best.pt",
    )
    return folder


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dicom_cohort")
    generate_dicom_cohort("autopet", root, 2, seed=5, lesion_free_fraction=0.0, **TINY)
    return root


@pytest.fixture(scope="module")
def predicted(cohort, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pred")
    run = make_run(out.parent / f"{out.name}_run")
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--input",
                str(cohort),
                "--out",
                str(out),
                "--no-progress",
                "--format",
                "nifti,dicom-seg",
                "rtstruct",
            ]
        )
        == 0
    )
    return out


def test_seg_frames_rebuild_the_nifti_mask_on_the_pet_slices(cohort, predicted):
    for case in discover_cases(cohort, "manifest").cases:
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(predicted / f"{case.case_id}.nii.gz")))  # (Z, Y, X)
        assert 0.01 < mask.mean() < 0.9  # a real mask, neither empty nor full
        pet = read_series(case.pet)
        seg = hd.seg.segread(predicted / f"{case.case_id}.seg.dcm")
        assert seg.FrameOfReferenceUID == pet[0].FrameOfReferenceUID
        assert seg.StudyInstanceUID == pet[0].StudyInstanceUID and seg.PatientID == pet[0].PatientID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pet[0].SeriesInstanceUID
        (segment,) = seg.SegmentSequence
        assert segment.SegmentLabel == "lesion"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        uids = [ds.SOPInstanceUID for ds in pet]
        rebuilt = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids, segment_numbers=[1], combine_segments=True
        )
        np.testing.assert_array_equal(rebuilt, mask)
        positions = {ds.SOPInstanceUID: [float(v) for v in ds.ImagePositionPatient] for ds in pet}
        for frame in seg.PerFrameFunctionalGroupsSequence:
            source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
            assert position == pytest.approx(positions[source], abs=1e-4)


def test_rtstruct_rasterised_back_matches_the_nifti_mask(cohort, predicted):
    for case in discover_cases(cohort, "manifest").cases:
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(predicted / f"{case.case_id}.nii.gz"))) > 0
        path = predicted / f"{case.case_id}.rtstruct.dcm"
        ds = pydicom.dcmread(path)
        assert ds.Modality == "RTSTRUCT" and [r.ROIName for r in ds.StructureSetROISequence] == ["lesion"]
        pet = read_series(case.pet)
        assert ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == pet[0].FrameOfReferenceUID
        referenced = {
            c.ContourImageSequence[0].ReferencedSOPInstanceUID
            for c in ds.ROIContourSequence[0].ContourSequence
        }
        assert referenced <= {p.SOPInstanceUID for p in pet}
        back = sitk.GetArrayFromImage(rtstruct_to_label(path, read_pet(case.pet))) > 0
        dice = 2 * (back & mask).sum() / (back.sum() + mask.sum())
        assert dice >= 0.95, dice


def test_predict_record_lists_formats_and_files(predicted):
    record = json.loads((predicted / "predict.json").read_text())
    assert record["formats"] == ["nifti", "dicom-seg", "rtstruct"]
    assert record["postprocess"] == {"min_volume_ml": 0.0, "min_suvmax": 0.0}
    assert all(len(case["files"]) == 3 for case in record["cases"].values())


def test_empty_prediction_gives_valid_objects_with_an_empty_segment(cohort, tmp_path):
    case = discover_cases(cohort, "manifest").cases[0]
    empty = read_pet(case.pet) * 0
    empty = sitk.Cast(empty, sitk.sitkUInt8)
    write_seg(empty, case.pet, tmp_path / "e.seg.dcm", labels_for("binary"))
    write_rtstruct(empty, case.pet, tmp_path / "e.rtstruct.dcm", labels_for("binary"))
    seg = hd.seg.segread(tmp_path / "e.seg.dcm")
    assert len(seg.SegmentSequence) == 1 and int(seg.NumberOfFrames) == empty.GetSize()[2]
    uids = [ds.SOPInstanceUID for ds in read_series(case.pet)]
    assert not seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1]).any()
    rt = pydicom.dcmread(tmp_path / "e.rtstruct.dcm")
    assert (
        rt.StructureSetROISequence[0].ROIName == "lesion"
        and "ContourSequence" not in rt.ROIContourSequence[0]
    )


def test_multiclass_labels_become_gtvp_and_gtvn_segments(cohort, tmp_path):
    case = discover_cases(cohort, "manifest").cases[0]
    pet = read_pet(case.pet)
    array = np.zeros(pet.GetSize()[::-1], np.uint8)
    array[3:6, 4:10, 5:9], array[8:10, 12:15, 2:20] = 1, 2
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(pet)
    write_seg(label, case.pet, tmp_path / "m.seg.dcm", labels_for("multiclass"))
    write_rtstruct(label, case.pet, tmp_path / "m.rtstruct.dcm", labels_for("multiclass"))
    seg = hd.seg.segread(tmp_path / "m.seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["GTVp", "GTVn"]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence] == [
        "86049000",
        "14799000",
    ]
    uids = [ds.SOPInstanceUID for ds in read_series(case.pet)]
    rebuilt = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2], combine_segments=True
    )
    np.testing.assert_array_equal(rebuilt, array)
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(rtstruct_to_label(tmp_path / "m.rtstruct.dcm", pet)), array
    )


def test_dicom_output_of_nifti_input_is_refused_in_one_line(cohort, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    nifti = discover_cases(cohort / "nifti", "autopet").cases[0]
    status = cli_main(
        [
            "predict",
            "--model",
            str(run),
            "--ct",
            str(nifti.ct),
            "--pet",
            str(nifti.pet),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "dicom-seg",
            "--no-progress",
        ]
    )
    assert status == 2 or status == 1
    err = capsys.readouterr().err
    assert "needs the PET as a DICOM series folder" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*.dcm"))


def test_missing_highdicom_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(ConfigError, match=r"pip install 'h2aseg\[dicom\]'"):
        require_dicom()


def test_formats_parse_several_and_refuse_unknown():
    assert parse_formats(["nifti,dicom-seg", "rtstruct", "nifti"]) == ("nifti", "dicom-seg", "rtstruct")
    with pytest.raises(ConfigError, match="unknown output format 'png'"):
        parse_formats("nifti,png")


def test_postprocessing_removes_a_small_and_a_cold_component_and_keeps_the_large_hot_one():
    label = np.zeros((20, 20, 20), np.uint8)
    suv = np.ones(label.shape, np.float32)
    label[2:10, 2:10, 2:10] = 1  # 512 voxels of 8 mm³ = 4.1 ml, SUVmax 9
    suv[5, 5, 5] = 9.0
    label[15:17, 15:17, 15:17] = 1  # 8 voxels = 0.064 ml
    label[2:8, 14:19, 14:19] = 1  # 150 voxels = 1.2 ml but SUVmax 1 (cold)
    kept, removed = remove_components(label, suv, (2.0, 2.0, 2.0), PostProcess(min_volume_ml=0.5))
    assert (
        kept[2:10, 2:10, 2:10].all() and kept[2:8, 14:19, 14:19].all() and not kept[15:17, 15:17, 15:17].any()
    )
    assert [r["voxels"] for r in removed] == [8]
    kept, removed = remove_components(
        label, suv, (2.0, 2.0, 2.0), PostProcess(min_volume_ml=0.5, min_suvmax=2.5)
    )
    assert int(kept.sum()) == 512 and sorted(r["voxels"] for r in removed) == [8, 150]
    unchanged, none = remove_components(label, suv, (2.0, 2.0, 2.0), PostProcess())
    assert (unchanged == label).all() and none == []


def test_postprocessing_in_predict_is_recorded(cohort, tmp_path):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(run),
                "--input",
                str(cohort),
                "--out",
                str(out),
                "--no-progress",
                "--min-component-ml",
                "5",
                "--min-suvmax",
                "0.1",
            ]
        )
        == 0
    )
    record = json.loads((out / "predict.json").read_text())
    assert record["postprocess"] == {"min_volume_ml": 5.0, "min_suvmax": 0.1}
    for case_id, entry in record["cases"].items():
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case_id}.nii.gz")))
        assert entry["removed_components"], "the untrained network's small specks should be removed"
        assert all(r["ml"] < 5 or r["suvmax"] < 0.1 for r in entry["removed_components"])
        from scipy import ndimage

        components, n = ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 2))
        sizes = ndimage.sum(mask > 0, components, range(1, n + 1)) * 0.512  # ml per 8 mm voxel
        assert all(s >= 5 for s in sizes)


def test_a_ct_grid_label_references_the_ct_series(cohort, tmp_path):
    from h2aseg.data.io import read_ct
    from h2aseg.inference.outputs import LabelWriter

    case = discover_cases(cohort, "manifest").cases[0]
    ct = read_ct(case.ct)
    array = np.zeros(ct.GetSize()[::-1], np.uint8)
    array[4:8, 5:12, 6:14] = 1
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(ct)
    writer = LabelWriter(("dicom-seg", "rtstruct"))
    assert writer(label, case, tmp_path) == tmp_path / f"{case.case_id}.seg.dcm"
    seg = hd.seg.segread(tmp_path / f"{case.case_id}.seg.dcm")
    ct_series = read_series(case.ct)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_series[0].SeriesInstanceUID
    rebuilt = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in ct_series],
        segment_numbers=[1],
        combine_segments=True,
    )
    np.testing.assert_array_equal(rebuilt, array)
    back = sitk.GetArrayFromImage(rtstruct_to_label(tmp_path / f"{case.case_id}.rtstruct.dcm", ct))
    np.testing.assert_array_equal(back, array)
    assert writer.records[case.case_id]["files"] == [
        f"{case.case_id}.seg.dcm",
        f"{case.case_id}.rtstruct.dcm",
    ]


def test_suvmax_filter_reads_the_pet_on_the_label_grid(cohort, tmp_path):
    from h2aseg.data.io import read_ct
    from h2aseg.inference.outputs import LabelWriter

    case = discover_cases(cohort, "manifest").cases[0]
    ct, pet = read_ct(case.ct), read_pet(case.pet)
    hot = np.unravel_index(
        int(np.argmax(sitk.GetArrayFromImage(pet))), pet.GetSize()[::-1]
    )  # (z, y, x) on PET
    centre = ct.TransformPhysicalPointToIndex(pet.TransformIndexToPhysicalPoint([int(v) for v in hot[::-1]]))
    array = np.zeros(ct.GetSize()[::-1], np.uint8)
    z, y, x = centre[2], centre[1], centre[0]
    array[max(z - 1, 0) : z + 2, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 1  # on the hottest PET voxel
    array[0:2, 0:2, 0:2] = 1  # a corner of the CT field: air, SUV about 0
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(ct)  # a CT-grid label, as predict --grid ct gives
    writer = LabelWriter(("nifti",), postprocess=PostProcess(min_suvmax=1.0))
    out = writer(label, case, tmp_path)
    kept = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert kept.shape == array.shape and kept[z, y, x] == 1 and not kept[0:2, 0:2, 0:2].any()
    assert [r["voxels"] for r in writer.records[case.case_id]["removed_components"]] == [8]
