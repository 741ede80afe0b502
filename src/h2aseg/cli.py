"""The ``h2aseg`` command line: one entry point, one sub-command per pipeline stage.

Each stage module owns its verbs: it exposes ``add_parser(subparsers)``, which adds one or more
sub-parsers and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit status). This file only collects them, so ``h2aseg <verb> --help`` is written next to the code
that does the work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from h2aseg import __version__
from h2aseg.errors import H2ASegError
from h2aseg.log import configure_logging
from h2aseg.runtime import keep_freed_memory

#: Modules that register sub-commands, in the order they appear in ``h2aseg --help``.
VERB_MODULES: tuple[str, ...] = (
    "h2aseg.data.cli",  # synth, preprocess, check
    "h2aseg.training.cli",  # train
    "h2aseg.inference.cli",  # predict
    "h2aseg.export.cli",  # export
    "h2aseg.evaluation.cli",  # evaluate
    "h2aseg.viz.cli",  # viz
    "h2aseg.benchmarking.cli",  # benchmark
    "h2aseg.demo",  # demo
    "h2aseg.models.cli",  # info
    "h2aseg.models.release_import",  # import-release
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h2aseg",
        description="PET/CT tumour segmentation with H2ASeg and its baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"h2aseg {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const=logging.DEBUG,
        default=logging.INFO,
        help="also print debug messages (give before the verb)",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const=logging.WARNING,
        help="print only warnings and errors (give before the verb)",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="<verb>")
    for module_name in VERB_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if not module_name.startswith(err.name or "\0"):
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    logger = configure_logging(args.log_level)
    keep_freed_memory()  # tensor memory is reused instead of faulted in again every step (h2aseg.runtime)
    try:
        return int(args.func(args) or 0)
    except H2ASegError as err:
        logger.error("h2aseg %s: %s", args.verb, err)
        return 2
    except KeyboardInterrupt:
        logger.error("h2aseg %s: interrupted", args.verb)
        return 130


if __name__ == "__main__":
    sys.exit(main())
