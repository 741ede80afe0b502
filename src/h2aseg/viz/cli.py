"""``h2aseg viz``: MIP and fusion pictures of one case, and training curves from a CSV log."""

from __future__ import annotations

import argparse
from pathlib import Path

from h2aseg.errors import DataError
from h2aseg.viz.case import case_name, load_case

__all__ = ["add_parser", "load_case", "run"]  # load_case lives in h2aseg.viz.case; kept here for old callers


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
    parser.add_argument(
        "--pet", type=Path, default=None, help="PET image in SUV (NIfTI/MHA/NRRD file or DICOM series folder)"
    )
    parser.add_argument(
        "--ct", type=Path, default=None, help="CT image in HU, file or DICOM folder (optional, for fusion)"
    )
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

        case = args.case or case_name(args.pred or args.label or args.pet)
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
