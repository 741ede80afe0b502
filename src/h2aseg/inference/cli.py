"""``h2aseg predict``: whole-volume predictions on the original PET (or CT, ``--grid``) grid,
one file per case.

Studies that discovery leaves out (missing files) and studies that fail to read, decode or pass the
content checks are listed one line each, as ``h2aseg check`` lists them, with their count; the batch goes
on, and the exit status is 1 when anything was skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from h2aseg.data.cli import add_input_options
from h2aseg.data.layouts import LAYOUTS, Case, discover_cases, guess_patient_id
from h2aseg.device import pick_device
from h2aseg.errors import DataError
from h2aseg.export.package import is_package, load_package
from h2aseg.inference.core import DEFAULT_OVERLAP
from h2aseg.inference.grid import OnGrid, add_grid_option, apply_input_options, choose_grid
from h2aseg.inference.outputs import add_output_options, label_writer, usable_cases, write_predict_record
from h2aseg.inference.predictor import (
    add_inference_options,
    format_timings,
    load_trained_model,
    predict_cases,
    predict_options,
)


def cases_from_args(args: argparse.Namespace) -> tuple[list[Case], list[str]]:
    """A single --ct/--pet pair, or every case found under --input in any supported layout."""
    if args.ct or args.pet:
        if not (args.ct and args.pet):
            raise DataError("give both --ct and --pet for a single case (files or DICOM series folders)")
        case_id = args.case_id or Path(args.pet).name.split(".")[0]
        case = Case(
            case_id,
            guess_patient_id(case_id),
            Path(args.ct),
            Path(args.pet),
            None,
            getattr(args, "ct_series", None),
            getattr(args, "pet_series", None),
        )
        return [case], []
    if not args.input:
        raise DataError("nothing to predict: give --input DIR (a dataset in any layout) or --ct and --pet")
    discovery = discover_cases(
        Path(args.input),
        args.layout,
        require_labels=False,
        ct_channel=getattr(args, "ct_channel", None),
        pet_channel=getattr(args, "pet_channel", None),
    )
    for note in discovery.notes:
        print(note)
    cases, problems = discovery.cases, discovery.problems
    if args.cases:
        wanted = set(args.cases)
        cases = [c for c in cases if c.case_id in wanted]
        problems = [p for p in problems if p.case_id in wanted]
    return cases, [str(p) for p in problems]


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    if is_package(Path(args.model)):  # model package of h2aseg export: sha256 and format version checked
        loaded = load_package(Path(args.model), device=device)
    else:
        loaded = load_trained_model(Path(args.model), device=device)
    apply_input_options(loaded, args)
    grid, grid_note = choose_grid(args)
    cases, problems = cases_from_args(args)
    if grid_note:
        print(grid_note)
    if not cases:
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        raise DataError(f"no case to predict under {args.input} ({len(problems)} left out, listed above)")
    writer = OnGrid(label_writer(args, loaded), grid)
    cases, unusable = usable_cases(writer, cases)
    problems += unusable
    options = predict_options(args, device=str(device), write_label=writer)
    written, failed = predict_cases(loaded, cases, Path(args.out), options, progress=not args.no_progress)
    if options.timings is not None:
        print(f"stages: {format_timings(options.timings)}")
    problems += failed
    write_predict_record(Path(args.out), loaded, writer)
    print(
        f"wrote {len(written)} prediction(s) on the {grid.upper()} grid to {args.out} with "
        f"{loaded.config.model.name} ({loaded.checkpoint}); {len(problems)} case(s) skipped"
    )
    if problems:
        print(f"{len(problems)} case(s) skipped:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
    return 1 if problems else 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict whole volumes with a trained network",
        description="Sliding-window prediction (Gaussian blending) of whole volumes; labels are written on "
        "each case's original PET grid (CT grid with --grid ct, the default for HECKTOR) as <case_id>.nii.gz "
        "(or .mha). Bad cases, and cases the layout left out, are listed and skipped "
        "(exit status 1 when any was skipped).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        required=True,
        help="run folder (uses best.pt, else last.pt), checkpoint file or model package (.h2aseg.zip)",
    )
    parser.add_argument("--input", help="dataset folder in any supported layout (or a manifest file)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="layout of --input")
    parser.add_argument("--cases", nargs="+", help="only these case ids from --input")
    parser.add_argument("--ct", help="CT of a single case: image file or DICOM series folder")
    parser.add_argument(
        "--pet", help="PET of a single case: SUV image file or DICOM series folder (converted to SUV)"
    )
    parser.add_argument("--case-id", help="case id for --ct/--pet (default: the PET file name)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--overlap", type=float, default=DEFAULT_OVERLAP, help="sliding-window overlap between patches"
    )
    parser.add_argument(
        "--mirror", action="store_true", help="mirror test-time augmentation (8 flips per patch)"
    )
    add_inference_options(parser)
    parser.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write foreground probabilities to OUT/probabilities/",
    )
    parser.add_argument(
        "--ending",
        dest="file_ending",
        choices=(".nii.gz", ".mha"),
        default=".nii.gz",
        help="label file type when --format is not given; file type of --save-probabilities",
    )
    add_output_options(parser)
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        default=None,
        metavar="BACKEND",
        help="torch.compile the network (backend inductor when given without a value; default: off). "
        "Compiling costs about a minute on a CPU (seconds with a warm cache) and gave 1.07x per window on "
        "two CPU cores; mainly for GPUs",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_grid_option(parser)
    add_input_options(parser)
    parser.set_defaults(func=run)
