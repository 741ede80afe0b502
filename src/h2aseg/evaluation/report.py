"""Cohort summaries (mean ± std), Markdown tables, and atomic CSV / JSON writers.

Numbers are stored as measured (Dice etc. as fractions in [0, 1], HD95 in mm, volumes in ml); percent
is applied only when formatting, as the paper prints Dice, Precision and Recall in %.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from h2aseg.atomic import atomic_open
from h2aseg.evaluation.metrics import aggregated_dice

__all__ = [
    "METRICS",
    "format_mean_std",
    "markdown_table",
    "summarise",
    "summary_markdown",
    "write_csv",
    "write_json",
    "write_text",
]

#: Per-case metrics that are summarised: name -> (unit, shown in percent, higher is better, title).
METRICS: dict[str, tuple[str, bool, bool, str]] = {
    "dice": ("fraction", True, True, "Dice (%)"),
    "hd95": ("mm", False, False, "HD95 (mm)"),
    "precision": ("fraction", True, True, "Precision (%)"),
    "recall": ("fraction", True, True, "Recall (%)"),
    "fp_volume_ml": ("ml", False, False, "autoPET FP volume (ml)"),
    "fn_volume_ml": ("ml", False, False, "autoPET FN volume (ml)"),
    "lesions": ("count", False, True, "Lesions per case"),
    "hits": ("count", False, True, "Detected lesions per case"),
    "misses": ("count", False, False, "Missed lesions per case"),
    "false_detections": ("count", False, False, "False detections per case"),
}
_CLASS_DICE = re.compile(r"^dice_(\d+)$")


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _stats(values: Sequence[float]) -> dict[str, float | int]:
    arr = np.asarray(values, dtype=float)
    finite = arr[~np.isnan(arr)]
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0, "n_undefined": int(arr.size)}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "n": int(finite.size),
        "n_undefined": int(arr.size - finite.size),
    }


def summarise(rows: list[dict], positive_only_for: Sequence[str] = ("dice", "hd95", "fn_volume_ml")) -> dict:
    """Mean, standard deviation and count of every metric over the cases in ``rows``.

    The standard deviation is the population one (``numpy.std``, ddof = 0). NaN values (e.g. HD95
    with an empty mask) are skipped and counted in ``n_undefined``.

    AutoPET rule: when at least one case is lesion-free (``gt_voxels == 0``), the metrics named in
    ``positive_only_for`` are averaged over lesion-positive cases only; the others over all cases.
    Without lesion-free cases (HECKTOR) every metric uses every case.

    Returns:
        ``{"n_cases", "n_lesion_positive", "n_lesion_free", "positive_only": [names the rule was
        applied to], "metrics": {name: {"mean", "std", "n", "n_undefined", "unit", "percent",
        "higher_is_better", "cases"}}, "aggregated_dice": {class: value},
        "detection": {"lesions", "hits", "misses", "false_detections", "lesion_sensitivity"}}``.
        ``cases`` is ``"lesion-positive"`` or ``"all"``. ``lesion_sensitivity`` = Σ hits / Σ lesions
        (NaN without lesions).
    """
    rows = list(rows)
    positive = [_float(r.get("gt_voxels", math.nan)) > 0 for r in rows]
    has_negatives = any(not p for p in positive)
    keys: list[str] = [k for k in METRICS if any(k in r for r in rows)]
    class_keys = sorted(
        {k for r in rows for k in r if _CLASS_DICE.match(k)}, key=lambda k: int(k.split("_")[1])
    )
    out_metrics: dict[str, dict] = {}
    applied: list[str] = []
    for key in keys + class_keys:
        only_positive = has_negatives and key in positive_only_for
        if only_positive:
            applied.append(key)
        values = [_float(r.get(key, math.nan)) for r, pos in zip(rows, positive) if pos or not only_positive]
        unit, percent, higher, _ = METRICS.get(key, ("fraction", True, True, ""))
        out_metrics[key] = {
            **_stats(values),
            "unit": unit,
            "percent": percent,
            "higher_is_better": higher,
            "cases": "lesion-positive" if only_positive else "all",
        }
    aggregated = {}
    for key in class_keys:
        label = int(key.split("_")[1])
        usable = [r for r in rows if f"intersection_{label}" in r]
        if usable:
            aggregated[str(label)] = aggregated_dice(usable, label)
    detection: dict[str, float] = {}
    if rows and all(k in rows[0] for k in ("lesions", "hits", "false_detections")):
        totals = {
            k: int(sum(_float(r[k]) for r in rows)) for k in ("lesions", "hits", "misses", "false_detections")
        }
        detection = {
            **totals,
            "lesion_sensitivity": totals["hits"] / totals["lesions"] if totals["lesions"] else math.nan,
        }
    return {
        "n_cases": len(rows),
        "n_lesion_positive": int(sum(positive)),
        "n_lesion_free": len(rows) - int(sum(positive)),
        "positive_only": applied,
        "metrics": out_metrics,
        "aggregated_dice": aggregated,
        "detection": detection,
    }


def format_mean_std(mean: float, std: float, percent: bool) -> str:
    """``"60.03 ± 14.75"``: two decimals, multiplied by 100 when ``percent``; ``"n/a"`` for NaN."""
    if mean is None or math.isnan(mean):
        return "n/a"
    scale = 100.0 if percent else 1.0
    if std is None or math.isnan(std):
        return f"{mean * scale:.2f}"
    return f"{mean * scale:.2f} ± {std * scale:.2f}"


def markdown_table(
    header: list[str],
    rows: list[list[str]],
    higher_is_better: dict[int, bool] | None = None,
    values: list[list[float]] | None = None,
) -> str:
    """A GitHub Markdown table; optionally the best cell per column in **bold**, the second <u>underlined</u>.

    Args:
        header: column titles.
        rows: cell texts, one list per row, as long as ``header``.
        higher_is_better: column index -> whether a larger value is better; only these columns are ranked.
        values: numbers behind the cells (same shape as ``rows``) used for ranking; NaN is never ranked.
            Equal values share a rank, so ties are all bold (or all underlined).
    """
    if any(len(r) != len(header) for r in rows):
        raise ValueError("markdown_table: every row needs as many cells as the header")
    cells = [list(r) for r in rows]
    if higher_is_better and values is not None:
        for col, higher in higher_is_better.items():
            column = [_float(v[col]) for v in values]
            distinct = sorted({v for v in column if not math.isnan(v)}, reverse=higher)
            for i, v in enumerate(column):
                if distinct and v == distinct[0]:
                    cells[i][col] = f"**{cells[i][col]}**"
                elif len(distinct) > 1 and v == distinct[1]:
                    cells[i][col] = f"<u>{cells[i][col]}</u>"
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: Mapping[str, Any], title: str = "Evaluation") -> str:
    """A human-readable Markdown page of a :func:`summarise` result."""
    lines = [
        f"# {title}",
        "",
        f"Cases evaluated: {summary['n_cases']} ({summary['n_lesion_positive']} with lesions, "
        f"{summary['n_lesion_free']} lesion-free).",
    ]
    if summary["positive_only"]:
        lines.append(f"AutoPET rule: {', '.join(summary['positive_only'])} over lesion-positive cases only.")
    lines.append("")
    table = []
    for key, m in summary["metrics"].items():
        title_ = METRICS[key][3] if key in METRICS else f"Dice class {key.split('_')[1]} (%)"
        note = f"{m['n']}" + (f" ({m['n_undefined']} undefined)" if m["n_undefined"] else "")
        table.append([title_, format_mean_std(m["mean"], m["std"], m["percent"]), note, m["cases"]])
    lines.append(markdown_table(["Metric", "mean ± std", "n", "cases"], table))
    if summary.get("aggregated_dice"):
        agg = [
            [f"class {k}", format_mean_std(v, math.nan, True)] for k, v in summary["aggregated_dice"].items()
        ]
        lines += ["HECKTOR aggregated Dice (%), 2·Σ|P∩G| / Σ(|P|+|G|) over all cases:", ""]
        lines.append(markdown_table(["Class", "Aggregated Dice (%)"], agg))
    det = summary.get("detection")
    if det:
        sens = det["lesion_sensitivity"]
        sens_txt = "n/a" if math.isnan(sens) else f"{100 * sens:.2f} %"
        lines += [
            "Lesion-wise detection (18-connected components): "
            f"{det['hits']} of {det['lesions']} lesions hit, {det['misses']} missed "
            f"(sensitivity {sens_txt}), {det['false_detections']} false detections.",
            "",
        ]
    return "\n".join(lines)


def _atomic_write(path: Path, write) -> Path:
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        write(handle)
    return Path(path)


def write_csv(rows: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """Write dictionaries as CSV (columns in first-seen order; NaN as ``nan``); atomic via ``os.replace``."""
    rows = list(rows)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]

    def write(handle):
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)

    return _atomic_write(path, write)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj: Any, path: Path) -> Path:
    """Write ``obj`` as indented JSON (NaN and inf become ``null``, paths strings);
    atomic via ``os.replace``."""
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    return _atomic_write(path, lambda handle: handle.write(text))


def write_text(text: str, path: Path) -> Path:
    """Write a text file (e.g. a Markdown summary); atomic via ``os.replace``."""
    return _atomic_write(path, lambda handle: handle.write(text))
