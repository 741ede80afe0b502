"""``h2aseg info``: list the registered networks, or describe one (parameters per component)."""

from __future__ import annotations

import argparse
import json

from h2aseg.models.registry import build_model, get_entry, list_models, model_options_for


def parameter_table(name: str, patch_size: tuple[int, int, int], options: dict) -> dict:
    """Total trainable parameters and those of each top-level sub-module of the network."""
    model = build_model(name, **model_options_for(name, options, patch_size))
    parts = {child: sum(p.numel() for p in module.parameters()) for child, module in model.named_children()}
    return {
        "model": name,
        "patch_size": list(patch_size),
        "options": options,
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters_by_part": parts,
    }


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        for name in list_models():
            print(f"{name:18s} {get_entry(name).description}")
        return 0
    options = {}
    if args.channels:
        options["channels"] = tuple(args.channels)
    info = parameter_table(args.model, tuple(args.patch), options)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"{info['model']}: {info['parameters']:,} parameters "
        f"({info['parameters'] / 1e6:.2f} M) at patch {tuple(args.patch)}"
    )
    for part, count in info["parameters_by_part"].items():
        print(f"  {part:16s} {count:>12,}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="list the registered networks or count one network's parameters",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="registered network name; omit to list all networks")
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=(128, 128, 64),
        metavar=("H", "W", "D"),
        help="training patch the network is built for",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=None,
        help="encoder channels per level, e.g. 8 16 32 64 128 (the network's default when omitted)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)
