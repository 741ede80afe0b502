"""Command-line verbs of the data stage: ``synth``, ``preprocess`` and ``check``.

- ``h2aseg synth --kind autopet|hecktor --cases N --out DIR --seed S``: write a phantom cohort in the
  real on-disk layout and print a one-screen summary.
- ``h2aseg preprocess --data DIR --cache DIR``: build (or update) the preprocessed cache; bad cases are
  reported, the others are cached; exit 1 when a case failed.
- ``h2aseg check --data DIR``: read every case as preprocessing would and report every bad one in one
  line each; exit 1 if any.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "add_input_options", "skipped_checks", "print_discovery"]


def _triple(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.replace("x", ",").split(",") if v.strip()]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected one or three numbers like 4 or 4,4,3, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def _shape(text: str) -> tuple[int, int, int]:
    values = _triple(text)
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def run_synth(args: argparse.Namespace) -> int:
    from h2aseg.data.io import read_image, to_array
    from h2aseg.data.layouts import discover_cases
    from h2aseg.data.phantom import LESION_SIZE_PRESETS
    from h2aseg.data.synthetic import generate_cohort

    options = {}
    if args.pet_shape:
        options["pet_shape"] = args.pet_shape
    if args.pet_spacing:
        options["pet_spacing"] = args.pet_spacing
    if args.ct_spacing:
        options["ct_spacing"] = args.ct_spacing
    if args.kind == "hecktor" and args.ct_shape:
        options["ct_shape"] = args.ct_shape
    if args.kind == "autopet":
        try:
            options["lesion_sizes"] = LESION_SIZE_PRESETS[args.lesion_sizes].with_overrides(
                args.lesion_median_ml, args.lesion_max_ml, tuple(args.lesion_suv) if args.lesion_suv else None
            )
        except ValueError as err:
            print(f"h2aseg synth: {err}", file=sys.stderr)
            return 2
        if args.lesion_free_fraction is not None:
            options["lesion_free_fraction"] = args.lesion_free_fraction
    start = time.time()
    if args.format == "dicom":  # CT and PET DICOM series + manifest.csv; the NIfTI cohort under OUT/nifti
        from h2aseg.data.synthetic_dicom import generate_dicom_cohort

        ids = generate_dicom_cohort(args.kind, args.out, args.cases, seed=args.seed, **options)
    else:
        ids = generate_cohort(args.kind, args.out, args.cases, seed=args.seed, **options)
    seconds = time.time() - start
    found = discover_cases(args.out / "nifti" if args.format == "dicom" else args.out, layout=args.kind)
    positive, classes = 0, set()
    for case in found.cases:
        values = np.unique(to_array(read_image(case.label)))
        positive += int(values.max() > 0)
        classes.update(int(v) for v in values if v)
    patients = len({c.patient_id for c in found.cases})
    print(
        f"wrote {len(ids)} {args.kind} studies of {patients} patients to {args.out} in {seconds:.1f} s "
        f"(seed {args.seed})"
    )
    print(
        f"lesion-positive studies: {positive}, lesion-free: {len(ids) - positive}, label values: "
        f"{sorted(classes)}"
    )
    print(
        "PET-threshold baseline (why CT is needed): python benchmarks/threshold_baseline.py --data "
        f"{args.out}"
    )
    if args.format == "dicom":
        print(f"CT and PET DICOM series under {args.out / 'dicom'}, listed in {args.out / 'manifest.csv'}")
    return 0


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Options of every verb that reads PET/CT images: nnU-Net channels, content checks, size limit."""
    from h2aseg.data.content import CONTENT_CHECKS
    from h2aseg.data.io import MAX_VOXELS

    parser.add_argument(
        "--ct-channel",
        type=int,
        default=None,
        metavar="K",
        help="nnU-Net raw data: channel K (_000K) is the CT (when unset: dataset.json names, "
        "else the channel whose image holds air)",
    )
    parser.add_argument(
        "--pet-channel",
        type=int,
        default=None,
        metavar="K",
        help="nnU-Net raw data: channel K is the PET in SUV",
    )
    parser.add_argument(
        "--skip-content-checks",
        nargs="*",
        default=None,
        metavar="CHECK",
        choices=(*CONTENT_CHECKS, "all"),
        help="for unusual data: skip these content checks (alone: all). ct-air: >= 0.1%% of CT "
        "voxels below -500 HU; ct-range: CT 1st/99th percentiles within -3100..4000 HU; "
        "pet-negative: <= 1%% of PET voxels below SUV -1; pet-range: PET 99.9th percentile "
        "within SUV 0.1..100 (Bq/ml is refused)",
    )
    parser.add_argument(
        "--max-voxels",
        type=int,
        default=None,
        help=f"refuse images whose header declares more voxels (when unset: {MAX_VOXELS} = 2^30)",
    )


def skipped_checks(args: argparse.Namespace) -> tuple[str, ...]:
    """The content checks ``--skip-content-checks`` names (``all`` when given without names)."""
    value = getattr(args, "skip_content_checks", None)
    if value is None:
        return ()
    return tuple(value) if value else ("all",)


def print_discovery(found, out=None) -> None:
    """Print a discovery's notes (e.g. which nnU-Net channel is taken as CT and which as PET, and why)."""
    out = out or sys.stdout
    for note in found.notes:
        print(note, file=out)


def _discover(args: argparse.Namespace):
    from h2aseg.data.layouts import discover_cases

    return discover_cases(
        args.data,
        layout=args.layout,
        require_labels=not args.no_labels,
        ct_channel=args.ct_channel,
        pet_channel=args.pet_channel,
    )


def _config(args: argparse.Namespace):
    from h2aseg.data.preprocess import PreprocessConfig

    return PreprocessConfig(
        target_spacing=args.target_spacing,
        label_mode=args.label_mode,
        skip_checks=skipped_checks(args),
        max_voxels=args.max_voxels,
    )


def run_preprocess(args: argparse.Namespace) -> int:
    from h2aseg.data.preprocess import PreprocessedCache

    found = _discover(args)
    print_discovery(found)
    cache = PreprocessedCache(args.cache, _config(args))
    problems = found.problems + cache.build(found.cases, progress=not args.quiet)
    for problem in problems:
        print(f"skipped: {problem.message}", file=sys.stderr)
    print(f"{len(cache.case_ids())} cases cached in {args.cache}; {len(problems)} bad case(s) skipped")
    return 1 if problems else 0


def run_check(args: argparse.Namespace) -> int:
    from h2aseg.data.content import CONTENT_CHECKS
    from h2aseg.data.preprocess import check_cases

    found = _discover(args)
    print_discovery(found)
    config = _config(args)
    problems = found.problems + check_cases(found.cases, config, progress=not args.quiet)
    for problem in problems:
        print(problem.message)
    good = len(found.cases) + len(found.problems) - len(problems)
    ran = [c for c in CONTENT_CHECKS if c not in config.skip_checks]
    print(
        f"content checks: {', '.join(ran) or 'none'}"
        + (f" (skipped: {', '.join(config.skip_checks)})" if config.skip_checks else "")
    )
    print(f"{good} good case(s), {len(problems)} bad case(s) in {args.data}")
    return 1 if problems else 0


def _dataset_options(parser: argparse.ArgumentParser) -> None:
    from h2aseg.data.layouts import LAYOUTS

    parser.add_argument("--data", type=Path, required=True, help="dataset folder or manifest file")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="on-disk layout of --data")
    parser.add_argument(
        "--no-labels", action="store_true", help="accept cases without labels (inference data)"
    )
    parser.add_argument(
        "--target-spacing",
        type=_triple,
        default=None,
        help="processing grid spacing in mm (one or three numbers); default: the PET grid",
    )
    parser.add_argument(
        "--label-mode",
        choices=("binary", "multiclass"),
        default="binary",
        help="merge all lesion classes into 1, or keep them (HECKTOR GTVp=1, GTVn=2)",
    )
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    add_input_options(parser)


def add_parser(subparsers) -> None:
    from h2aseg.data.phantom import LESION_SIZE_PRESETS

    """Register ``synth``, ``preprocess`` and ``check`` on the top-level sub-parsers."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic PET/CT cohort in a real layout",
        description="Write a synthetic PET/CT phantom cohort in the AutoPET-II or HECKTOR layout.",
        formatter_class=fmt,
    )
    synth.add_argument(
        "--kind",
        choices=("autopet", "hecktor"),
        default="autopet",
        help="AutoPET-II whole-body tree or HECKTOR 2022 head-and-neck folders",
    )
    synth.add_argument("--cases", type=int, default=30, help="number of studies")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="cohort seed (same seed, same bytes)")
    synth.add_argument(
        "--pet-shape",
        type=_shape,
        default=None,
        help="PET grid in voxels X,Y,Z (default 64,64,96 autopet; 56,56,52 hecktor)",
    )
    synth.add_argument("--pet-spacing", type=_triple, default=None, help="PET spacing in mm (default 4)")
    synth.add_argument(
        "--ct-spacing",
        type=_triple,
        default=None,
        help="CT spacing in mm (default 2 autopet; 2,2,2.5 hecktor)",
    )
    synth.add_argument(
        "--ct-shape", type=_shape, default=None, help="HECKTOR CT grid in voxels (default 96,96,72)"
    )
    synth.add_argument(
        "--format",
        choices=("nifti", "dicom"),
        default="nifti",
        help="dicom: also CT and PET DICOM series (PET in Bq/ml with SUV tags) and manifest.csv",
    )
    synth.add_argument(
        "--lesion-sizes",
        choices=tuple(LESION_SIZE_PRESETS),
        default="realistic",
        help="AutoPET lesion volumes: realistic (median 2.5 ml, mostly 0.5-10 ml, a tail to 150 ml), "
        "small (harder: median 1.5 ml, at most 17 ml, SUV peak 4-20), legacy (the first "
        "version's, mostly 6-58 ml)",
    )
    synth.add_argument(
        "--lesion-median-ml", type=float, help="median lesion volume in ml (default: the preset's)"
    )
    synth.add_argument(
        "--lesion-max-ml", type=float, help="largest lesion volume in ml (default: the preset's)"
    )
    synth.add_argument(
        "--lesion-suv",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="range of the painted lesion SUV peak, log-uniform (default: the preset's)",
    )
    synth.add_argument(
        "--lesion-free-fraction",
        type=float,
        default=None,
        help="AutoPET share of lesion-free studies (default 0.35)",
    )
    synth.set_defaults(func=run_synth)

    prep = subparsers.add_parser(
        "preprocess",
        help="build the preprocessed-array cache of a dataset",
        description="Resample CT onto the PET grid, scale intensities and cache "
        "the arrays; unchanged cases are skipped.",
        formatter_class=fmt,
    )
    _dataset_options(prep)
    prep.add_argument("--cache", type=Path, required=True, help="cache folder")
    prep.set_defaults(func=run_preprocess)

    check = subparsers.add_parser(
        "check",
        help="scan a dataset and report every bad case",
        description="Read every case as preprocessing would; print one line per bad case; exit 1 if any.",
        formatter_class=fmt,
    )
    _dataset_options(check)
    check.set_defaults(func=run_check)
