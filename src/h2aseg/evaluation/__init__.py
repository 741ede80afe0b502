"""Evaluation: per-case metrics (:mod:`.metrics`), summaries and tables (:mod:`.report`), folders (:mod:`.evaluate`).

Importing this package is cheap; the heavy parts (MONAI, SimpleITK) load when a function needs them.
"""

from __future__ import annotations

from h2aseg.evaluation.metrics import (
    aggregated_dice,
    case_metrics,
    dice,
    false_negative_volume,
    false_positive_volume,
    hd95,
    lesion_detection,
    precision,
    recall,
)
from h2aseg.evaluation.report import format_mean_std, markdown_table, summarise, write_csv, write_json

__all__ = [
    "aggregated_dice",
    "case_metrics",
    "dice",
    "false_negative_volume",
    "false_positive_volume",
    "format_mean_std",
    "hd95",
    "lesion_detection",
    "markdown_table",
    "precision",
    "recall",
    "summarise",
    "write_csv",
    "write_json",
]
