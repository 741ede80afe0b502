"""Training curves from the trainer's CSV log."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from h2aseg.errors import DataError
from h2aseg.viz.mip import new_figure

__all__ = ["read_log", "training_curves"]

_X_COLUMNS = ("epoch", "step", "iteration")


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_log(csv_path: Path) -> tuple[str, list[float], dict[str, list[float]]]:
    """Read a CSV log into (x column name, x values, {numeric column: values}).

    x is the first of ``epoch``, ``step``, ``iteration`` that exists, else the row number. A column is
    numeric when every non-empty cell parses as a number; empty cells become NaN (gaps in the plot).

    Raises:
        DataError: the file is missing, empty, or has no numeric column to plot.
    """
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise DataError(f"training log {csv_path} cannot be read ({err.strerror}); check the path") from None
    if not rows:
        raise DataError(f"training log {csv_path} has no rows; train for at least one epoch first")
    columns = list(rows[0].keys())
    x_name = next((c for c in _X_COLUMNS if c in columns), "row")
    xs = [_number(r[x_name]) for r in rows] if x_name != "row" else [float(i) for i in range(len(rows))]
    series: dict[str, list[float]] = {}
    for col in columns:
        if col == x_name or col is None:
            continue
        cells = [r.get(col) for r in rows]
        values = [_number(c) for c in cells]
        non_empty = [v for c, v in zip(cells, values) if c not in (None, "")]
        if non_empty and not any(math.isnan(v) for v in non_empty):
            series[col] = values
    if not series:
        raise DataError(f"training log {csv_path} has no numeric column besides {x_name}; nothing to plot")
    return x_name, xs, series


def _group(name: str, values: list[float]) -> str:
    lowered = name.lower()
    if "loss" in lowered:
        return "loss"
    if lowered in ("lr", "learning_rate") or lowered.endswith("_lr"):
        return "learning rate"
    finite = [v for v in values if not math.isnan(v)]
    if finite and all(0.0 <= v <= 1.0 for v in finite):
        return "scores (0–1)"
    return name  # a panel of its own: its units are unknown


def training_curves(csv_path: Path, out_png: Path) -> Path:
    """Plot every numeric column of a training log against the epoch and save a PNG.

    Panels: losses; scores whose values all lie in [0, 1] (e.g. ``val_dice``); the learning rate on a
    log scale; then one panel for each other numeric column (e.g. ``val_hd95``, seconds per epoch), whose
    units are unknown. Empty panels are left out.
    A validation column logged every few epochs is drawn with markers joining its points.

    Returns:
        ``out_png``.
    """
    x_name, xs, series = read_log(csv_path)
    groups: dict[str, list[str]] = {}
    for name, values in series.items():
        groups.setdefault(_group(name, values), []).append(name)
    fixed = ("loss", "scores (0–1)", "learning rate")
    order = [g for g in fixed if g in groups] + [g for g in groups if g not in fixed]
    fig = new_figure((6.5, 2.6 * len(order) + 0.6))
    axes = fig.subplots(len(order), 1, sharex=True, squeeze=False)[:, 0]
    for ax, group in zip(axes, order):
        for name in groups[group]:
            points = [(x, v) for x, v in zip(xs, series[name]) if not math.isnan(v)]
            sparse = len(points) < len(xs)
            ax.plot(
                *zip(*points), marker="o" if sparse or len(points) < 20 else None, markersize=3, label=name
            )
        if group == "learning rate" and all(
            v > 0 for n in groups[group] for v in series[n] if not math.isnan(v)
        ):
            ax.set_yscale("log")
        ax.set_ylabel(group)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel(x_name)
    fig.suptitle(f"Training log: {Path(csv_path).name}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png
