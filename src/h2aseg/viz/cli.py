"""``h2aseg viz``: MIP and fusion pictures of one case, and training curves from a CSV log."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from h2aseg.errors import DataError

_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def add_parser(subparsers) -> None:
    """Register the ``viz`` verb on the dispatcher's sub-parsers."""
    parser = subparsers.add_parser(
        "viz",
        help="PNG pictures: PET MIP with label/prediction, CT/PET fusion slices, training curves.",
        description=(
            "With --pet: <case>_mip.png (coronal and sagittal PET MIP, inverted grey SUV 0-10; true positive "
            "red, false negative blue, false positive yellow) and <case>_fusion.png (axial CT/PET slices "
            "through the largest lesion). CT, label and prediction are resampled onto the PET grid. "
            "With --log: training_curves.png from a trainer CSV log. Give --pet, --log, or both."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pet", type=Path, default=None, help="PET image in SUV (NIfTI/MHA file)")
    parser.add_argument("--ct", type=Path, default=None, help="CT image in HU (optional; enables fusion)")
    parser.add_argument("--label", type=Path, default=None, help="ground-truth label map (optional)")
    parser.add_argument("--pred", type=Path, default=None, help="predicted label map (optional)")
    parser.add_argument(
        "--log", type=Path, default=None, help="training log CSV (columns like epoch, train_loss, …)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument(
        "--case",
        default=None,
        help="name used in file names and titles; default: from --pred, --label or --pet",
    )
    parser.add_argument("--slices", type=int, default=3, help="number of axial fusion slices")
    parser.set_defaults(func=run)


def _stem(path: Path) -> str:
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _read(path: Path, what: str):
    import SimpleITK as sitk

    if not path.is_file():
        raise DataError(f"{what} {path} not found; check the path")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise DataError(f"{what} {path} cannot be read as an image; give a NIfTI or MHA file") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"{what} {path} is not a 3-D single-channel image; give one static 3-D volume")
    return image


def _on_pet_grid(image, reference, nearest: bool, default: float) -> np.ndarray:
    import SimpleITK as sitk

    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    pixel = image.GetPixelID() if nearest else sitk.sitkFloat32
    resampled = sitk.Resample(image, reference, sitk.Transform(), interpolator, default, pixel)
    return sitk.GetArrayFromImage(resampled).transpose(2, 1, 0)


def load_case(pet: Path, ct: Path | None = None, label: Path | None = None, pred: Path | None = None) -> dict:
    """Read a case for pictures: PET reoriented to LPS, the others resampled onto that grid.

    Returns:
        ``{"pet", "ct", "label", "pred"}`` as (X, Y, Z) arrays (``None`` when not given) and ``"spacing"``.
    """
    import SimpleITK as sitk

    pet_image = sitk.DICOMOrient(sitk.Cast(_read(pet, "PET"), sitk.sitkFloat32), "LPS")
    out: dict = {
        "pet": sitk.GetArrayFromImage(pet_image).transpose(2, 1, 0),
        "spacing": tuple(float(s) for s in pet_image.GetSpacing()),
    }
    for key, path, what, nearest, default in (
        ("ct", ct, "CT", False, -1024.0),
        ("label", label, "label", True, 0.0),
        ("pred", pred, "prediction", True, 0.0),
    ):
        if path is None:
            out[key] = None
            continue
        image = _read(path, what)
        out[key] = _on_pet_grid(image, pet_image, nearest, default)
        if nearest and not out[key].any() and sitk.GetArrayViewFromImage(image).any():
            raise DataError(
                f"{what} {path} has foreground but none of it lies inside the PET {pet}; "
                "check that both files belong to the same case (origin and direction)"
            )
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``viz``: write the requested pictures and print their paths."""
    if args.pet is None and args.log is None:
        raise DataError("viz needs --pet (case pictures), --log (training curves), or both")
    if args.pet is None and any(p is not None for p in (args.ct, args.label, args.pred)):
        raise DataError("--ct, --label and --pred are drawn on the PET; give --pet as well")
    written: list[Path] = []
    if args.pet is not None:
        from h2aseg.viz.mip import mip_overlay
        from h2aseg.viz.slices import fusion_slices

        case = args.case or _stem(args.pred or args.label or args.pet)
        data = load_case(args.pet, args.ct, args.label, args.pred)
        written.append(
            mip_overlay(
                data["pet"],
                data["label"],
                data["pred"],
                data["spacing"],
                args.out / f"{case}_mip.png",
                title=case,
            )
        )
        written.append(
            fusion_slices(
                data["ct"],
                data["pet"],
                data["label"],
                data["pred"],
                data["spacing"],
                args.out / f"{case}_fusion.png",
                n_slices=args.slices,
            )
        )
    if args.log is not None:
        from h2aseg.viz.curves import training_curves

        written.append(training_curves(args.log, args.out / "training_curves.png"))
    for path in written:
        print(path)
    return 0
