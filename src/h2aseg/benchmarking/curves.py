"""Learning curves of a benchmark: validation Dice against optimizer steps for every row.

Read from each run's ``metrics.csv`` (the trainer's log: one row per epoch; ``step`` and ``val_dice`` read
by column name, epochs without validation skipped), finished or still training, so the curves can be
watched while a benchmark runs and used to choose its step count. Written by
:func:`h2aseg.benchmarking.tables.write_tables` as ``tables/curves.csv`` (one row per run and validation)
and ``tables/curves.png`` (one panel per group of rows; a line per row is the mean over the seeds that
reached that step, the dots are the single seeds; ten colours, then dashed and dotted lines).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from h2aseg.benchmarking.config import BenchmarkConfig
from h2aseg.benchmarking.files import run_dir

__all__ = ["METRICS_FILE", "collect_curves", "plot_curves", "read_curve"]

#: The trainer's per-epoch log in a run folder.
METRICS_FILE = "metrics.csv"


def read_curve(folder: Path) -> list[tuple[int, float]]:
    """(step, validation Dice) of every validated epoch of a run folder; empty without ``metrics.csv``."""
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    curve = []
    for row in rows:
        try:
            step, dice = int(row["step"]), float(row["val_dice"])
        except (KeyError, TypeError, ValueError):  # an epoch without validation has an empty val_dice
            continue
        if math.isfinite(dice):
            curve.append((step, dice))
    return curve


def collect_curves(config: BenchmarkConfig, out_dir: Path) -> list[dict]:
    """One row per (model, seed, validation): ``run_id``, ``model``, ``seed``, ``step``, ``val_dice``."""
    rows = []
    for spec in config.models:
        for seed in config.seeds:
            for step, dice in read_curve(run_dir(out_dir, spec.id, seed)):
                rows.append(
                    {
                        "run_id": spec.id,
                        "model": spec.name,
                        "seed": seed,
                        "step": step,
                        "val_dice": round(dice, 5),
                    }
                )
    return rows


def _mean_curve(points: list[dict]) -> tuple[list[int], list[float]]:
    steps = sorted({p["step"] for p in points})
    means = [float(np.mean([p["val_dice"] for p in points if p["step"] == s])) for s in steps]
    return steps, means


def plot_curves(
    rows: list[dict],
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    path: Path,
    title: str,
    xlabel: str = "optimizer steps",
) -> Path | None:
    """Draw the curves of :func:`collect_curves` into a PNG.

    Args:
        rows: the curve rows.
        panels: (panel title, [(run id, legend label), ...]) for each panel; a run id without points is left
            out of its panel.
        path: the PNG to write.
        title: figure title.
        xlabel: x-axis label.

    Returns:
        ``path``, or None when no run has a validated epoch yet (nothing is written).
    """
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 6.2), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    for ax, (panel_title, members) in zip(axes[0], panels):
        for index, (run_id, label) in enumerate(members):
            points = [r for r in rows if r["run_id"] == run_id]
            if not points:
                continue
            colour, style = colours(index % 10), ("-", "--", ":")[(index // 10) % 3]
            steps, means = _mean_curve(points)
            seeds = len({p["seed"] for p in points})
            ax.plot(
                steps,
                means,
                color=colour,
                linestyle=style,
                marker="o",
                markersize=3,
                label=f"{label} ({seeds} seed(s))",
            )
            ax.scatter(
                [p["step"] for p in points], [p["val_dice"] for p in points], color=colour, s=6, alpha=0.35
            )
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # below the panel, so no curve is hidden
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    axes[0][0].set_ylabel("validation Dice (lesion-positive studies)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
