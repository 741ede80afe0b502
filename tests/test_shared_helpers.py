"""One helper per job: the device rule, the label reader, the benchmark runner's per-run log file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from h2aseg.benchmarking.runner import _log_to
from h2aseg.device import pick_device
from h2aseg.errors import DataError
from h2aseg.log import PACKAGE_LOGGER


def test_pick_device_resolves_auto_and_a_bare_cuda_to_one_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda:0")
    assert pick_device("cuda", local_rank=1) == torch.device("cuda:1")  # the process's GPU under torchrun
    assert pick_device("cuda:2", local_rank=1) == torch.device("cuda:2")  # an explicit index wins
    expected = torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    assert pick_device("auto") == expected


def test_training_and_inference_share_the_device_rule():
    from h2aseg.inference import cli as predict_cli
    from h2aseg.training import distributed

    assert distributed.pick_device is pick_device and predict_cli.pick_device is pick_device


def test_label_reader_returns_the_image_and_refuses_what_is_not_one_3d_volume(tmp_path, write_volume):
    from h2aseg.data.io import read_label, to_array

    label = np.zeros((5, 6, 7), np.uint8)
    label[1:3, 2:4, 3:5] = 1
    path = write_volume(label, tmp_path / "seg.nii.gz", spacing=(2.0, 3.0, 4.0))
    image = read_label(path)
    assert image.GetSpacing() == (2.0, 3.0, 4.0) and np.array_equal(to_array(image), label)

    flat = tmp_path / "flat.nii.gz"
    sitk.WriteImage(sitk.Image(5, 6, sitk.sitkUInt8), str(flat))
    with pytest.raises(DataError, match=r"flat\.nii\.gz: label map is 2-D") as err:
        read_label(flat)
    assert "\n" not in str(err.value)
    vector = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(vector))
    with pytest.raises(DataError, match="3 components per voxel"):
        read_label(vector)


def test_a_runs_log_file_gets_the_package_messages_and_is_detached_afterwards(tmp_path):
    package = logging.getLogger(PACKAGE_LOGGER)
    level, handlers = package.level, list(package.handlers)
    package.setLevel(logging.NOTSET)  # as in library use, before any CLI configured the package logger
    try:
        path = tmp_path / "runs" / "m" / "seed0" / "train.log"
        with _log_to(path):
            logging.getLogger("h2aseg.training.trainer").info("epoch 1: loss 0.5")
            logging.getLogger("h2aseg.data.layouts").warning("case a: PET missing")
            logging.getLogger("elsewhere").warning("not ours")
        logging.getLogger("h2aseg.training.trainer").info("after the run")
        assert path.read_text().splitlines() == ["epoch 1: loss 0.5", "warning: case a: PET missing"]
        assert package.level == logging.NOTSET and package.handlers == handlers
    finally:
        package.setLevel(level)
        package.handlers[:] = handlers


def test_read_geometry_gives_the_header_grid_without_the_voxels(tmp_path, write_volume):
    from h2aseg.data.io import read_geometry
    from h2aseg.evaluation.evaluate import same_grid

    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    path = write_volume(
        np.ones((4, 5, 6), np.uint8),
        tmp_path / "ct.nii.gz",
        spacing=(1.5, 2.0, 3.0),
        origin=(10.0, -20.0, 5.0),
        direction=direction,
    )
    reference = read_geometry(path)
    assert same_grid(reference, sitk.ReadImage(str(path))) and reference.GetSize() == (4, 5, 6)
    assert reference.GetPixelID() == sitk.sitkUInt8 and sitk.GetArrayViewFromImage(reference).max() == 0
    with pytest.raises(DataError, match=r"absent\.nii\.gz: file not found"):
        read_geometry(tmp_path / "absent.nii.gz")
