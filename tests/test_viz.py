"""Pictures: overlay colours, physical aspect ratio, slice choice, curves, and the ``viz`` verb."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import SimpleITK as sitk
from matplotlib.image import imread
from scipy import ndimage

from h2aseg.errors import DataError
from h2aseg.viz import cli as viz_cli
from h2aseg.viz.case import case_name, load_case
from h2aseg.viz.curves import read_log, training_curves
from h2aseg.viz.mip import COLOURS, _projected_classes, error_overlay, mip_overlay
from h2aseg.viz.slices import focus_slices, fusion_slices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_error_overlay_colours_true_positive_red_false_negative_blue_false_positive_yellow():
    gt = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    rgba, present = error_overlay(gt, pred, alpha=0.5)
    assert tuple(rgba[0, 0]) == (*COLOURS["true positive"], 0.5)
    assert tuple(rgba[0, 1]) == (*COLOURS["false negative"], 0.5)
    assert tuple(rgba[0, 2]) == (*COLOURS["false positive"], 0.5)
    assert rgba[0, 3, 3] == 0.0  # background transparent
    assert COLOURS["true positive"] == (1.0, 0.0, 0.0)
    assert sorted(present) == ["false negative", "false positive", "true positive"]


def test_projection_classifies_voxels_before_projecting_with_tp_over_fn_over_fp():
    gt = np.zeros((3, 2, 1), bool)
    pred = np.zeros((3, 2, 1), bool)
    gt[0, 0], pred[0, 0] = True, True  # ray x=0: a TP voxel ...
    gt[0, 1] = True  # ... and a FN voxel -> red
    gt[1, 0] = True  # ray x=1: a FN voxel ...
    pred[1, 1] = True  # ... and a FP voxel -> blue
    pred[2, 1] = True  # ray x=2: FP only -> yellow
    rgba, _ = error_overlay(*_projected_classes(gt, pred, axis=1))
    colours = [tuple(rgba[x, 0, :3]) for x in range(3)]
    assert colours == [COLOURS["true positive"], COLOURS["false negative"], COLOURS["false positive"]]


def _red_regions(png):
    image = imread(png)[..., :3]
    reddish = (image[..., 0] > 0.8) & (image[..., 1] < 0.5) & (image[..., 2] < 0.5)
    labels, n = ndimage.label(reddish)
    return [(s[0].stop - s[0].start, s[1].stop - s[1].start) for s in ndimage.find_objects(labels)]


def test_mip_keeps_the_physical_aspect_ratio_of_anisotropic_voxels(tmp_path):
    pet = np.ones((20, 20, 12), np.float32)
    lesion = np.zeros(pet.shape, bool)
    lesion[8:12, 8:12, 4:8] = True  # 4×4×4 voxels of 2×2×6 mm: 8 mm wide, 24 mm tall on screen
    pet[lesion] = 8.0
    out = mip_overlay(pet, lesion, lesion, (2.0, 2.0, 6.0), tmp_path / "mip.png", title="aspect")
    assert out.read_bytes()[:8] == PNG_MAGIC
    regions = sorted(_red_regions(out), key=lambda hw: hw[0] * hw[1])
    assert len(regions) == 3  # the legend's swatch, then the lesion in the coronal and the sagittal MIP
    for height, width in regions[1:]:
        assert height / width == pytest.approx(3.0, rel=0.15)


def test_focus_slices_go_through_the_largest_label_component():
    pet = np.zeros((10, 10, 20), np.float32)
    gt = np.zeros(pet.shape, bool)
    gt[1:3, 1:3, 2:4] = True  # small lesion
    gt[5:9, 5:9, 10:18] = True  # large lesion, z 10..17
    zs, focus, kind = focus_slices(pet, gt, None, n_slices=3)
    assert kind == "largest lesion"
    assert all(10 <= z <= 17 for z in zs) and len(zs) == 3
    assert focus.sum() == 4 * 4 * 8


def test_focus_slices_fall_back_to_prediction_then_suvmax_and_pad_thin_lesions():
    pet = np.zeros((6, 6, 9), np.float32)
    pet[2, 3, 7] = 5.0
    pred = np.zeros(pet.shape, bool)
    pred[1, 1, 4] = True  # one-slice component: neighbours 3 and 5 complete it
    assert focus_slices(pet, np.zeros(pet.shape, bool), pred, 3)[0::2] == (
        [3, 4, 5],
        "largest predicted component",
    )
    assert focus_slices(pet, None, None, 1)[0::2] == ([7], "SUVmax")


def test_fusion_slices_writes_png_with_and_without_ct(tmp_path):
    rng = np.random.default_rng(0)
    pet = rng.random((16, 12, 8)).astype(np.float32)
    gt = np.zeros(pet.shape, np.uint8)
    gt[5:9, 4:7, 3:6] = 1
    pred = np.roll(gt, 1, axis=0)
    ct = np.full(pet.shape, 40.0, np.float32)
    for name, ct_ in (("with_ct", ct), ("pet_only", None)):
        out = fusion_slices(ct_, pet, gt, pred, (3.0, 3.0, 5.0), tmp_path / f"{name}.png", n_slices=2)
        assert out.read_bytes()[:8] == PNG_MAGIC


def _log(path, text):
    path.write_text(text)
    return path


def test_training_curves_plot_numeric_columns_with_gaps(tmp_path):
    log = _log(
        tmp_path / "log.csv",
        "epoch,train_loss,val_dice,lr,note\n0,1.0,,1e-4,start\n1,0.8,0.3,9.9e-5,\n2,0.7,,9.8e-5,x\n",
    )
    x_name, xs, series = read_log(log)
    assert (x_name, xs) == ("epoch", [0.0, 1.0, 2.0])
    assert sorted(series) == ["lr", "train_loss", "val_dice"]  # "note" is text
    assert np.isnan(series["val_dice"][0]) and series["val_dice"][1] == 0.3
    assert training_curves(log, tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_training_curves_refuse_an_empty_log(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        training_curves(_log(tmp_path / "empty.csv", "epoch,train_loss\n"), tmp_path / "c.png")
    with pytest.raises(DataError, match="cannot be read"):
        training_curves(tmp_path / "missing.csv", tmp_path / "c.png")


def _run(argv):
    parser = argparse.ArgumentParser(prog="h2aseg")
    viz_cli.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["viz", *argv])
    return args.func(args)


def test_load_case_reorients_pet_to_lps_and_resamples_masks_onto_it(tmp_path, write_volume):
    shape = (8, 6, 5)
    pet = np.zeros(shape, np.float32)
    pet[1, 2, 3] = 7.0
    # Stored with x and y flipped (RAS-like direction); the origin keeps the same physical box.
    flipped = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    origin = ((shape[0] - 1) * 4.0, (shape[1] - 1) * 4.0, 0.0)
    write_volume(pet[::-1, ::-1], tmp_path / "pet.nii.gz", direction=flipped, origin=origin)
    label = (pet > 0).astype(np.uint8)
    write_volume(label, tmp_path / "label.nii.gz")  # same physical place, identity direction
    data = load_case(tmp_path / "pet.nii.gz", label=tmp_path / "label.nii.gz")
    assert data["spacing"] == (4.0, 4.0, 5.0)
    assert np.argwhere(data["pet"] == 7.0).tolist() == [[1, 2, 3]]
    assert np.argwhere(data["label"]).tolist() == [[1, 2, 3]]


def test_viz_verb_writes_all_pictures_and_names_bad_inputs(tmp_path, capsys, write_volume):
    pet = np.ones((12, 10, 8), np.float32)
    pet[4:7, 4:7, 3:5] = 6.0
    label = (pet > 2).astype(np.uint8)
    write_volume(pet, tmp_path / "pet.nii.gz")
    write_volume(label, tmp_path / "case1.nii.gz")
    write_volume(np.roll(label, 1, axis=2), tmp_path / "pred.nii.gz")
    write_volume(np.full(pet.shape, 30.0, np.float32), tmp_path / "ct.nii.gz", spacing=(8.0, 8.0, 10.0))
    log = _log(tmp_path / "log.csv", "epoch,train_loss\n0,1.0\n1,0.5\n")
    argv = ["--pet", str(tmp_path / "pet.nii.gz"), "--ct", str(tmp_path / "ct.nii.gz")]
    argv += ["--label", str(tmp_path / "case1.nii.gz"), "--pred", str(tmp_path / "pred.nii.gz")]
    assert _run([*argv, "--log", str(log), "--out", str(tmp_path / "out"), "--slices", "2"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["pred_fusion.png", "pred_mip.png", "training_curves.png"]
    assert "pred_mip.png" in capsys.readouterr().out

    write_volume(label, tmp_path / "elsewhere.nii.gz", origin=(1000.0, 0.0, 0.0))
    with pytest.raises(DataError, match="none of it lies inside the PET"):
        _run(
            [
                "--pet",
                str(tmp_path / "pet.nii.gz"),
                "--label",
                str(tmp_path / "elsewhere.nii.gz"),
                "--out",
                "x",
            ]
        )
    with pytest.raises(DataError, match="needs --pet"):
        _run(["--out", str(tmp_path)])
    with pytest.raises(DataError, match="^PET: .*nope.nii.gz: file not found"):
        _run(["--pet", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path)])
    sitk.WriteImage(sitk.Image([12, 10], sitk.sitkUInt8), str(tmp_path / "flat.nii.gz"))  # one 2-D slice
    with pytest.raises(DataError, match="^label: .*flat.nii.gz: label map is 2-D"):  # io's static 3-D check
        _run(["--pet", str(tmp_path / "pet.nii.gz"), "--label", str(tmp_path / "flat.nii.gz"), "--out", "x"])


def test_case_name_drops_every_image_ending_the_reader_knows():
    names = ["case1.nii.gz", "case1.nii", "case1.mha", "case1.mhd", "case1.nrrd", "case1.nhdr"]
    names.append("case1.NII.GZ")
    assert [case_name(tmp) for tmp in names] == ["case1"] * len(names)
    assert case_name("dicom_folder") == "dicom_folder"
