"""Evaluation: per-case metrics (:mod:`.metrics`), summaries and tables (:mod:`.report`), folders
(:mod:`.evaluate`).

The names below are loaded on first use, so that ``h2aseg --help`` does not import scipy or MONAI.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "aggregated_dice": "metrics",
    "case_metrics": "metrics",
    "dice": "metrics",
    "false_negative_volume": "metrics",
    "false_positive_volume": "metrics",
    "hd95": "metrics",
    "lesion_detection": "metrics",
    "precision": "metrics",
    "recall": "metrics",
    "format_mean_std": "report",
    "markdown_table": "report",
    "summarise": "report",
    "write_csv": "report",
    "write_json": "report",
    "evaluate_arrays": "evaluate",
    "evaluate_folders": "evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"h2aseg.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'h2aseg.evaluation' has no attribute {name!r}")
