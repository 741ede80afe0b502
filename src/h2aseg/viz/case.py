"""One case read for pictures: the PET reoriented to LPS, CT, label and prediction resampled onto it.

Files are read through :mod:`h2aseg.data.io` (the package's one reader: NIfTI, MHA, NRRD or a DICOM
series folder; PET as SUV, CT in HU) and arrays follow its ``(X, Y, Z)`` convention (:func:`to_array`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from h2aseg.constants import CT_FLOOR_HU
from h2aseg.data.io import IMAGE_SUFFIXES, image_suffix, read_ct, read_label, read_pet, to_array
from h2aseg.errors import DataError

__all__ = ["case_name", "load_case"]


def case_name(path: Path) -> str:
    """The file name of ``path`` without its image ending (``case1.nii.gz`` -> ``case1``)."""
    path = Path(path)
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix in IMAGE_SUFFIXES else path.stem


def _read(reader, path: Path, what: str) -> sitk.Image:
    """``reader(path)`` (a :mod:`h2aseg.data.io` reader: one static 3-D volume) with the image's role (PET,
    CT, label, prediction) in front of any error."""
    try:
        return reader(path)
    except DataError as err:
        raise DataError(f"{what}: {err}") from None


def _on_grid(image: sitk.Image, reference: sitk.Image, nearest: bool, default: float) -> np.ndarray:
    """``image`` resampled onto ``reference``'s grid (nearest neighbour for labels) as an (X, Y, Z) array."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    pixel = image.GetPixelID() if nearest else sitk.sitkFloat32
    return to_array(sitk.Resample(image, reference, sitk.Transform(), interpolator, default, pixel))


def load_case(pet: Path, ct: Path | None = None, label: Path | None = None, pred: Path | None = None) -> dict:
    """Read a case for pictures: PET reoriented to LPS, the others resampled onto that grid.

    Returns:
        ``{"pet", "ct", "label", "pred"}`` as (X, Y, Z) arrays (``None`` when not given) and ``"spacing"``.

    Raises:
        DataError: a file is missing or unreadable, not a 3-D volume, or a mask's foreground lies
            wholly outside the PET (files of different cases).
    """
    pet_image = sitk.DICOMOrient(_read(read_pet, pet, "PET"), "LPS")
    out: dict = {"pet": to_array(pet_image), "spacing": tuple(float(s) for s in pet_image.GetSpacing())}
    for key, path, what, reader, nearest, default in (
        ("ct", ct, "CT", read_ct, False, CT_FLOOR_HU),
        ("label", label, "label", read_label, True, 0.0),
        ("pred", pred, "prediction", read_label, True, 0.0),
    ):
        if path is None:
            out[key] = None
            continue
        image = _read(reader, path, what)
        out[key] = _on_grid(image, pet_image, nearest, default)
        if nearest and not out[key].any() and sitk.GetArrayViewFromImage(image).any():
            raise DataError(
                f"{what} {path} has foreground but none of it lies inside the PET {pet}; "
                "check that both files belong to the same case (origin and direction)"
            )
    return out
