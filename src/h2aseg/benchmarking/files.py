"""Where a benchmark keeps its files: the names the runner writes and the tables read, in one place.

::

    OUT/runs/<model id>/seed<k>/      one trained model (threshold methods: OUT/runs/<method>/)
        benchmark.json                written last: the run is finished (DONE_FILE)
        error.log                     the traceback of a failed run (ERROR_FILE)
        train.log                     the run's log messages (TRAIN_LOG)
        eval/summary.json             the evaluation of the test split (EVAL_SUMMARY)
        tamw/per_case.csv             TAMW emphasis per test case and depth (TAMW_PER_CASE)
    OUT/tables/                       Tables 1-3 (TABLES_DIR)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DONE_FILE", "ERROR_FILE", "TRAIN_LOG", "EVAL_SUMMARY", "TAMW_PER_CASE", "TABLES_DIR", "run_dir"]

DONE_FILE = "benchmark.json"
ERROR_FILE = "error.log"
TRAIN_LOG = "train.log"
EVAL_SUMMARY = Path("eval") / "summary.json"
TAMW_PER_CASE = Path("tamw") / "per_case.csv"
TABLES_DIR = "tables"


def run_dir(out_dir: Path, run_id: str, seed: int | None = None) -> Path:
    """``OUT/runs/<run_id>/seed<seed>``, or ``OUT/runs/<run_id>`` for a run without seeds (thresholds)."""
    base = Path(out_dir) / "runs" / run_id
    return base if seed is None else base / f"seed{seed}"
