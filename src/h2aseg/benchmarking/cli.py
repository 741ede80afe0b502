"""``h2aseg benchmark``: train, predict and evaluate each model × seed of a benchmark file; Tables 1-3."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """Register the ``benchmark`` verb on the dispatcher's sub-parsers."""
    parser = subparsers.add_parser(
        "benchmark",
        help="Train/predict/evaluate models × seeds from a benchmark file and write the paper's Tables 1-3.",
        description=(
            "Runs every model of --config with every seed on the file's dataset and split: trains into "
            "OUT/runs/<model>/seed<k>/, predicts the test split, evaluates it, and writes Table 1 (Dice, "
            "HD95, Precision, Recall), Table 2 (MCSA/TAMW ablation) and Table 3 (TAMW emphasis of PET/CT "
            "channels) as Markdown and CSV into OUT/tables/. Resumable: finished runs are kept, trained "
            "runs are not retrained, interrupted runs continue from last.pt. A failing run is logged and "
            "the rest go on. Shipped files: benchmarks/cpu.yaml (2-core CPU, synthetic cohort), "
            "benchmarks/paper.yaml (GPU, AutoPET-II)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="benchmark YAML file")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (runs, cache, tables); default runs/benchmarks/<config file stem>",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="run only these model ids or threshold methods (tables still include every finished run)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        metavar="K",
        help="run only these of the file's seeds (e.g. one seed of every row first; tables include every "
        "finished run of the file's seeds)",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="do not train or predict; rebuild the tables from finished runs",
    )
    parser.add_argument("--progress", action="store_true", help="show the trainer's per-epoch progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``benchmark``; returns 0, or 1 when some run failed (the tables are written either way)."""
    from dataclasses import replace

    from h2aseg.benchmarking.config import load_benchmark_config
    from h2aseg.benchmarking.runner import BenchmarkRunner
    from h2aseg.benchmarking.tables import write_tables
    from h2aseg.errors import ConfigError

    config = load_benchmark_config(args.config)
    out = args.out if args.out is not None else Path("runs") / "benchmarks" / Path(args.config).stem
    run_config = config
    if args.seeds:
        unknown = [s for s in args.seeds if s not in config.seeds]
        if unknown:
            raise ConfigError(
                f"--seeds {' '.join(map(str, unknown))}: not in {args.config} "
                f"(seeds {config.seeds}); choose from those"
            )
        run_config = replace(config, seeds=[s for s in config.seeds if s in args.seeds])
    runner = BenchmarkRunner(run_config, out, only=args.only, progress=args.progress, echo=logger.info)
    failed = busy = 0
    if not args.tables_only:
        records = runner.run()
        failed = sum(r.status == "failed" for r in records)
        busy = sum(r.status == "busy" for r in records)
    paths = write_tables(config, out)
    tables = out / "tables" / "tables.md"
    print(tables.read_text(encoding="utf-8"))
    note = f"; {failed} run(s) failed (see benchmark.log)" if failed else ""
    note += f"; {busy} run(s) left to another process still running them" if busy else ""
    print(f"wrote {len(paths)} files to {out / 'tables'}{note}")
    return 1 if failed else 0
