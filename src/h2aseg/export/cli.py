"""``h2aseg export``: a run folder as a model package, and its network as ONNX / TorchScript."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser"]


def _load(source: Path):
    from h2aseg.export.package import is_package, load_package
    from h2aseg.inference.predictor import load_trained_model

    return load_package(source) if is_package(source) else load_trained_model(source)


def run(args: argparse.Namespace) -> int:
    from h2aseg.errors import ConfigError

    if not (args.out or args.onnx or args.torchscript):
        raise ConfigError(
            "nothing to export: give --out PACKAGE.h2aseg.zip, --onnx FILE and/or --torchscript FILE"
        )
    status = 0
    if args.out:
        from h2aseg.export.package import export_package, is_package

        if is_package(args.source):
            raise ConfigError(f"{args.source} is already a model package; give a run folder to package")
        card = export_package(args.source, args.out, args.name, args.licence, args.metrics)
        net = card["network"]
        print(
            f"wrote {args.out}: {net['name']} ({net['parameters']:,} parameters), weights from "
            f"{card['weights']['from']} sha256 {card['weights']['sha256'][:12]}…, "
            f"{card['training_data'].get('cases', '?')} cases"
        )
    if args.onnx or args.torchscript:
        from h2aseg.export.onnx_export import check_parity, export_onnx, export_torchscript

        loaded = _load(args.source)
        for kind, target, export in (
            ("onnx", args.onnx, export_onnx),
            ("torchscript", args.torchscript, export_torchscript),
        ):
            if not target:
                continue
            export(loaded.model, loaded.patch_size, target)
            if args.no_check:
                print(f"wrote {target} (patch {tuple(loaded.patch_size)}, dynamic batch); parity not checked")
                continue
            diff = check_parity(loaded.model, loaded.patch_size, target, kind=kind)
            ok = diff <= args.tolerance
            print(
                f"wrote {target} (patch {tuple(loaded.patch_size)}, dynamic batch): largest |logit or "
                f"probability difference| to PyTorch {diff:.2e} on 2 random patches "
                f"({'within' if ok else 'ABOVE'} {args.tolerance:g})",
                file=sys.stdout if ok else sys.stderr,
            )
            status = status if ok else 1
    return status


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="package a trained model (zip with model card) and/or export it to ONNX / TorchScript",
        description="Write a model package (weights, config.yaml, preprocessing.json, metadata.json model "
        "card) that `h2aseg predict --model` accepts, and/or the eval-mode network as ONNX or TorchScript "
        "for one patch with a dynamic batch, checked against PyTorch.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "source", type=Path, help="run folder of h2aseg train (or, for --onnx, a model package)"
    )
    parser.add_argument("--out", type=Path, help="model package to write, e.g. model.h2aseg.zip")
    parser.add_argument("--onnx", type=Path, help="ONNX file to write (needs the onnx extra)")
    parser.add_argument("--torchscript", type=Path, help="TorchScript file to write")
    parser.add_argument("--name", help="model name in the model card (default: the run folder's name)")
    parser.add_argument("--licence", default="unspecified", help="licence of the weights, for the model card")
    parser.add_argument(
        "--metrics",
        type=Path,
        help="summary.json of h2aseg evaluate on the test split (default: RUN_DIR/*/summary.json "
        "when there is exactly one)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest |logit or probability difference| to PyTorch accepted by the parity check",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.set_defaults(func=run)
