"""``h2aseg evaluate``: metrics of a folder of predictions against labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from h2aseg.errors import DataError


def add_parser(subparsers) -> None:
    """Register the ``evaluate`` verb on the dispatcher's sub-parsers."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, HD95, Precision, Recall and challenge metrics of predictions against labels.",
        description=(
            "Compare label-map predictions (<case_id>.nii.gz or .mha) with the labels, on the label's grid: "
            "a prediction on another grid that covers the label's field is resampled onto it (nearest "
            "neighbour, listed in the summary). Writes per_case.csv, summary.json and summary.md into --out. "
            "Dice, Precision and Recall are shown in %, HD95 in mm, autoPET false-positive/negative volumes "
            "in ml (18-connectivity). When some cases are lesion-free, Dice and HD95 are averaged over "
            "lesion-positive cases only (AutoPET rule). Cases without a usable prediction, and studies the "
            "dataset layout left out, are listed and left out; the exit status is then 1 (2 with --strict)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pred", type=Path, required=True, help="folder of predicted label maps")
    parser.add_argument(
        "--gt",
        type=Path,
        required=True,
        help="folder of label files <case_id>.nii.gz, or a dataset root when --layout is given",
    )
    parser.add_argument(
        "--layout",
        default=None,
        help="dataset layout of --gt (autopet, hecktor, nnunet, manifest, or auto); "
        "omit for a flat label folder",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for per_case.csv, summary.json, summary.md"
    )
    parser.add_argument(
        "--labels",
        type=int,
        nargs="+",
        default=[1],
        help="label values reported per class (e.g. 1 2 for HECKTOR GTVp and GTVn); "
        "binary metrics use all > 0",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="CASE_ID",
        help="evaluate only these case ids (e.g. a test split); other labels and predictions are ignored",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail (exit status 2) if any case is missing or unusable"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    parser.add_argument(
        "--ct-channel",
        type=int,
        default=None,
        metavar="K",
        help="nnU-Net raw data (--layout nnunet): channel K is the CT",
    )
    parser.add_argument(
        "--pet-channel",
        type=int,
        default=None,
        metavar="K",
        help="nnU-Net raw data (--layout nnunet): channel K is the PET",
    )
    parser.add_argument(
        "--max-voxels",
        type=int,
        default=None,
        help="refuse label/prediction files whose header declares more voxels (default 2^30)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; print the Markdown summary; return the exit status."""
    from h2aseg.evaluation.evaluate import evaluate_folders

    summary = evaluate_folders(
        args.pred,
        args.gt,
        args.out,
        layout=args.layout,
        labels=tuple(args.labels),
        progress=not args.no_progress,
        case_ids=args.cases,
        max_voxels=args.max_voxels,
        ct_channel=args.ct_channel,
        pet_channel=args.pet_channel,
    )
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    if args.strict and summary["problems"]:
        raise DataError(
            f"{len(summary['problems'])} cases were not evaluated (listed above); --strict was given"
        )
    return 1 if summary["problems"] else 0
