"""Tables 1–3 of the H2ASeg paper from a benchmark's finished runs, as Markdown and CSV.

How a cell is made (every table says so in its caption):

* per seed, the run's evaluation gives mean ± std (population) over the test cases
  (:func:`h2aseg.evaluation.report.summarise`: on AutoPET-like data Dice and HD95 over lesion-positive
  cases only, Precision and Recall over all test cases; HD95 skips cases where the prediction or the
  label is empty);
* the cell is the average over seeds of those means ± the average over seeds of those stds. The CSV
  files also give ``seed_std``, the spread of the per-seed means, and how many seeds had finished;
* Tables 1 and 2 also give, per row, Dice as mean ± std over seeds of the per-seed means, the paired
  per-study Dice difference H2ASeg − row with its bootstrap 95 % interval (marked † when the interval
  excludes 0), the trainable parameters of the trained network, and the optimizer steps of the finished
  runs (:mod:`h2aseg.benchmarking.comparison`).

Learning curves (validation Dice by step, every row) go to ``curves.png`` and ``curves.csv``
(:mod:`h2aseg.benchmarking.curves`).

Table 1 (comparison): every model except the three Table 2 ablations; the single-modality ResUNet-3D
pair and the SUV threshold rows are references below the compared methods and are not ranked. Best
**bold**, second <u>underlined</u> per column among the compared methods.
Table 2 (ablation): ``dual_resunet3d`` (baseline), ``h2aseg_no_tamw`` (+MCSA), ``h2aseg_no_mcsa``
(+TAMW), ``h2aseg`` (both), ranked among themselves.
Table 3 (TAMW emphasis): per decoder depth, the shares of PET and CT channels emphasised in the
foreground and background weights (definition in :mod:`h2aseg.benchmarking.tamw_analysis`), for each
model with TAMW.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from h2aseg.benchmarking.comparison import (
    Comparisons,
    count_parameters,
    difference_columns,
    format_difference,
    format_parameters,
    format_steps,
    step_counts,
)
from h2aseg.benchmarking.config import BenchmarkConfig, ModelSpec
from h2aseg.benchmarking.curves import collect_curves, plot_curves
from h2aseg.benchmarking.files import DONE_FILE, ERROR_FILE, EVAL_SUMMARY, TABLES_DIR, TAMW_PER_CASE, run_dir
from h2aseg.benchmarking.tamw_analysis import TAMW_COLUMNS
from h2aseg.evaluation.report import METRICS, format_mean_std, markdown_table, write_csv, write_text
from h2aseg.evaluation.statistics import mean_std, spread

__all__ = ["DISPLAY_NAMES", "TABLE1_METRICS", "write_tables"]

#: Paper titles of registry names and threshold methods, used as row titles unless a model has a label.
DISPLAY_NAMES: dict[str, str] = {
    "unet3d": "UNet-3D",
    "vnet": "VNet",
    "resunet3d": "ResUNet-3D",
    "resunet3d_pet": "ResUNet-3D, PET only",
    "resunet3d_ct": "ResUNet-3D, CT only",
    "unetr": "UNETR",
    "swinunetr": "SwinUNETR",
    "nnunet": "nnUNet",
    "nestedformer": "NestedFormer",
    "a2fseg": "A2FSeg",
    "sdb": "SDB",
    "h2aseg": "H2ASeg",
    "h2aseg_no_mcsa": "H2ASeg without MCSA",
    "h2aseg_no_tamw": "H2ASeg without TAMW",
    "dual_resunet3d": "Dual ResUNet-3D",
    "suv2.5": "SUV ≥ 2.5 (no training)",
    "suv41": "41 % of SUVmax (no training)",
}
TABLE1_METRICS: tuple[str, ...] = ("dice", "hd95", "precision", "recall")
#: Registry names only in Table 2 (the ablations), and the unranked reference networks of Table 1.
ABLATION_ONLY = ("dual_resunet3d", "h2aseg_no_tamw", "h2aseg_no_mcsa")
REFERENCE_MODELS = ("resunet3d_pet", "resunet3d_ct")
#: Table 2 rows: registry name, MCSA on, TAMW on.
ABLATION_ROWS: tuple[tuple[str, bool, bool], ...] = (
    ("dual_resunet3d", False, False),
    ("h2aseg_no_tamw", True, False),
    ("h2aseg_no_mcsa", False, True),
    ("h2aseg", True, True),
)


def _finished(folder: Path) -> dict | None:
    path = folder / EVAL_SUMMARY
    if not (folder / DONE_FILE).exists() or not path.exists():
        return None
    return json.loads(path.read_text())


def _train_minutes(info: dict) -> float | str:
    """Training minutes of a run over every process that trained it (``total_seconds``; runs recorded before
    it existed give ``seconds``, the last process's share)."""
    seconds = info.get("total_seconds") or info.get("seconds")
    return round(float(seconds) / 60, 2) if seconds else ""


def _nan(value) -> float:
    return math.nan if value is None else float(value)


def aggregate_runs(summaries: list[dict]) -> dict:
    """Per-metric average over seeds of the per-seed mean and std, and the spread of the per-seed means.

    Args:
        summaries: the ``eval/summary.json`` of each finished seed.

    Returns:
        ``{metric: {"mean", "std", "seed_std", "n"}}`` in stored units (fractions, mm), ``n`` the
        cases behind one seed's mean (first seed), plus ``"_cases": (n_cases, n_lesion_positive)``.
    """
    out: dict = {}
    for key in TABLE1_METRICS:
        means = [_nan(s["metrics"].get(key, {}).get("mean")) for s in summaries]
        stds = [_nan(s["metrics"].get(key, {}).get("std")) for s in summaries]
        n = summaries[0]["metrics"].get(key, {}).get("n", 0) if summaries else 0
        out[key] = {"mean": mean_std(means)[0], "std": mean_std(stds)[0], "seed_std": spread(means), "n": n}
    out["_cases"] = (summaries[0]["n_cases"], summaries[0]["n_lesion_positive"]) if summaries else (0, 0)
    return out


class _Rows:
    """Collects the finished runs of a benchmark folder, and per row the comparison columns."""

    def __init__(self, config: BenchmarkConfig, out_dir: Path) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.comparisons = Comparisons(config, self.out_dir)
        self._params: dict[str, int | None] = {}

    def params(self, spec: ModelSpec) -> int | None:
        if spec.id not in self._params:
            self._params[spec.id] = count_parameters(self.config, spec)
        return self._params[spec.id]

    def extras(self, run_id: str, stats: dict | None, spec: ModelSpec | None) -> tuple[list[str], dict]:
        """Cells (Dice over seeds, H2ASeg − row, parameters, steps) and CSV columns of a row; ``spec`` None
        for a threshold row (no seeds, no parameters)."""
        comparison = self.comparisons.against(run_id, seeded=spec is not None)
        steps = step_counts(self.out_dir, run_id, list(self.config.seeds)) if spec is not None else []
        params = self.params(spec) if spec is not None else 0
        seeds_cell = "—"
        if spec is not None and stats is not None and not math.isnan(stats["dice"]["mean"]):
            mean, spread = 100 * stats["dice"]["mean"], 100 * stats["dice"]["seed_std"]
            seeds_cell = f"{mean:.2f}" + (" (1 seed)" if math.isnan(spread) else f" ± {spread:.2f}")
        cells = [
            seeds_cell,
            format_difference(comparison),
            format_parameters(params),
            format_steps(steps) if spec is not None else "—",
        ]
        columns = {
            **difference_columns(comparison),
            "params": "" if params is None else params,
            "steps": " ".join(str(n) for n in steps),
        }
        return cells, columns

    def model(self, run_id: str) -> tuple[dict | None, int]:
        summaries = []
        for seed in self.config.seeds:
            summary = _finished(run_dir(self.out_dir, run_id, seed))
            if summary is not None:
                summaries.append(summary)
        return (aggregate_runs(summaries) if summaries else None), len(summaries)

    def threshold(self, method: str) -> dict | None:
        summary = _finished(run_dir(self.out_dir, method))
        return aggregate_runs([summary]) if summary else None


def _label(config: BenchmarkConfig, run_id: str) -> str:
    for spec in config.models:
        if spec.id == run_id:
            return spec.label or DISPLAY_NAMES.get(spec.name, spec.name)
    return DISPLAY_NAMES.get(run_id, run_id)


def _metric_cells(stats: dict | None) -> tuple[list[str], list[float]]:
    cells, values = [], []
    for key in TABLE1_METRICS:
        percent = METRICS[key][1]
        if stats is None:
            cells.append("—")
            values.append(math.nan)
        else:
            cells.append(format_mean_std(stats[key]["mean"], stats[key]["std"], percent))
            values.append(stats[key]["mean"])
    return cells, values


def _csv_metrics(stats: dict | None) -> dict:
    row: dict = {}
    for key in TABLE1_METRICS:
        unit, percent = ("pct", 100.0) if METRICS[key][1] else (METRICS[key][0], 1.0)
        for part in ("mean", "std", "seed_std"):
            value = stats[key][part] if stats else math.nan
            row[f"{key}_{unit}_{part}"] = "" if math.isnan(value) else round(value * percent, 4)
        row[f"{key}_cases"] = stats[key]["n"] if stats else ""
    return row


def _ranking(columns: int, first: int) -> dict[int, bool]:
    return {first + i: METRICS[key][2] for i, key in enumerate(TABLE1_METRICS[:columns])}


def _cell_note(config: BenchmarkConfig, cases: tuple[int, int] | None) -> str:
    seeds = ", ".join(str(s) for s in config.seeds)
    text = (
        f"Each cell: mean ± std over the test cases of one seed, both averaged over the "
        f"{len(config.seeds)} seed(s) {seeds}. Dice, Precision, Recall in %, HD95 in mm."
    )
    if cases and cases[0] and cases[1] < cases[0]:
        text += (
            f" AutoPET rule: Dice and HD95 over the {cases[1]} lesion-positive test cases, Precision "
            f"and Recall over all {cases[0]}."
        )
    elif cases and cases[0]:
        text += f" {cases[0]} test cases."
    return text + " HD95 leaves out cases with an empty prediction or label."


EXTRA_HEADER = ["Dice, seeds", "H2ASeg − row (Dice)", "Params", "Steps"]


def _extras_note(rows: _Rows, run_ids: list[str]) -> str:
    text = (
        " Dice, seeds: mean ± std over seeds of the per-seed mean Dice. "
        + rows.comparisons.caption()
        + " Params: trainable parameters of the trained network. Steps: optimizer steps of the finished "
        "runs."
    )
    seeds = list(rows.config.seeds)
    counts = sorted({n for run_id in run_ids for n in step_counts(rows.out_dir, run_id, seeds)})
    if len(counts) > 1:
        text += (
            " **The finished runs did not all take the same number of steps "
            f"({', '.join(map(str, counts))}): rows are not compared at equal steps.**"
        )
    return text


def table1(config: BenchmarkConfig, rows: _Rows) -> tuple[str, list[dict]]:
    """Markdown and CSV rows of Table 1 (see the module docstring)."""
    compared, references = [], []
    for spec in config.models:
        if spec.name in ABLATION_ONLY:
            continue
        stats, done = rows.model(spec.id)
        group = "reference" if spec.name in REFERENCE_MODELS else "compared"
        target = references if group == "reference" else compared
        target.append((spec.id, spec.name, group, stats, done, len(config.seeds)))
    for method in config.threshold_methods:
        stats = rows.threshold(method)
        references.append((method, "threshold", "reference", stats, int(stats is not None), 1))
    specs = {spec.id: spec for spec in config.models}
    header = ["Method", *[METRICS[k][3] for k in TABLE1_METRICS], *EXTRA_HEADER, "Seeds"]
    md_rows, values, csv_rows = [], [], []
    cases = None
    for run_id, model, group, stats, done, total in compared + references:
        cells, nums = _metric_cells(stats)
        spec = specs.get(run_id) if model != "threshold" else None
        extra_cells, extra_columns = rows.extras(run_id, stats, spec)
        title = _label(config, run_id)
        md_rows.append(
            [title if group == "compared" else f"*{title}*", *cells, *extra_cells, f"{done}/{total}"]
        )
        values.append(
            [
                math.nan,
                *(nums if group == "compared" else [math.nan] * len(nums)),
                *[math.nan] * len(extra_cells),
                math.nan,
            ]
        )
        csv_rows.append(
            {
                "method": title,
                "run_id": run_id,
                "model": model,
                "group": group,
                "seeds_done": done,
                "seeds_total": total,
                **_csv_metrics(stats),
                **extra_columns,
            }
        )
        if stats and cases is None:
            cases = stats["_cases"]
    caption = (
        f"**Table 1.** {config.title}: {config.dataset.name}, test split. {_cell_note(config, cases)} "
        "Best **bold**, second <u>underlined</u> among the compared methods; *italic* rows are "
        "references (single-modality networks, SUV thresholds without training) and are not ranked. "
        "Seeds = finished runs; — = no finished run."
        + _extras_note(rows, [r["run_id"] for r in csv_rows if r["model"] != "threshold"])
    )
    text = caption + "\n\n" + markdown_table(header, md_rows, _ranking(4, 1), values)
    return text, csv_rows


def table2(config: BenchmarkConfig, rows: _Rows) -> tuple[str, list[dict]]:
    """Markdown and CSV rows of Table 2 (ablation of MCSA and TAMW)."""
    by_name = {}
    for spec in config.models:
        by_name.setdefault(spec.name, spec)
    header = ["MCSA", "TAMW", *[METRICS[k][3] for k in TABLE1_METRICS], *EXTRA_HEADER, "Seeds"]
    md_rows, values, csv_rows = [], [], []
    cases = None
    for name, mcsa, tamw in ABLATION_ROWS:
        spec = by_name.get(name)
        if spec is None:
            continue
        stats, done = rows.model(spec.id)
        cells, nums = _metric_cells(stats)
        extra_cells, extra_columns = rows.extras(spec.id, stats, spec)
        md_rows.append(
            ["✓" if mcsa else "", "✓" if tamw else "", *cells, *extra_cells, f"{done}/{len(config.seeds)}"]
        )
        values.append([math.nan, math.nan, *nums, *[math.nan] * len(extra_cells), math.nan])
        csv_rows.append(
            {
                "run_id": spec.id,
                "model": name,
                "mcsa": mcsa,
                "tamw": tamw,
                "seeds_done": done,
                "seeds_total": len(config.seeds),
                **_csv_metrics(stats),
                **extra_columns,
            }
        )
        if stats and cases is None:
            cases = stats["_cases"]
    if not md_rows:
        return (
            "**Table 2.** No ablation model (dual_resunet3d, h2aseg_no_tamw, h2aseg_no_mcsa, h2aseg) in "
            "this benchmark.\n"
        ), []
    caption = (
        f"**Table 2.** Effects of MCSA and TAMW on {config.dataset.name} (baseline = dual-branch "
        f"ResUNet-3D with concatenated skips). {_cell_note(config, cases)} Best **bold**, second "
        "<u>underlined</u>." + _extras_note(rows, [r["run_id"] for r in csv_rows])
    )
    return caption + "\n\n" + markdown_table(header, md_rows, _ranking(4, 2), values), csv_rows


def _tamw_rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def table3(config: BenchmarkConfig, out_dir: Path) -> tuple[str, list[dict]]:
    """Markdown and CSV rows of Table 3 (TAMW emphasis), one block per model with TAMW."""
    blocks, csv_rows = [], []
    for spec in config.models:
        per_seed: list[dict[int, dict[str, tuple[float, float]]]] = []
        n_cases = 0
        for seed in config.seeds:
            folder = run_dir(out_dir, spec.id, seed)
            path = folder / TAMW_PER_CASE
            if not (folder / DONE_FILE).exists() or not path.exists():
                continue
            rows = _tamw_rows(path)
            depths: dict[int, dict[str, tuple[float, float]]] = {}
            for depth in sorted({int(r["depth"]) for r in rows}):
                chosen = [r for r in rows if int(r["depth"]) == depth]
                n_cases = len(chosen)
                depths[depth] = {}
                for col in TAMW_COLUMNS:
                    column = [float(r[col]) for r in chosen]
                    depths[depth][col] = (float(np.mean(column)), float(np.std(column)))
            per_seed.append(depths)
        if not per_seed:
            continue
        header = ["Depth", "Foreground PET", "Foreground CT", "Background PET", "Background CT"]
        md_rows = []
        for depth in sorted({d for seed in per_seed for d in seed}):
            present = [seed[depth] for seed in per_seed if depth in seed]
            cells = [str(depth)]
            row = {"run_id": spec.id, "model": spec.name, "depth": depth, "seeds_done": len(present)}
            for col in TAMW_COLUMNS:
                mean = float(np.mean([p[col][0] for p in present]))
                std = float(np.mean([p[col][1] for p in present]))
                cells.append(format_mean_std(mean, std, percent=False))
                row[f"{col}_pct_mean"], row[f"{col}_pct_std"] = round(mean, 4), round(std, 4)
            md_rows.append(cells)
            csv_rows.append(row)
        title = spec.label or DISPLAY_NAMES.get(spec.name, spec.name)
        blocks.append(
            f"{title} ({len(per_seed)}/{len(config.seeds)} seeds, {n_cases} test cases):\n\n"
            + markdown_table(header, md_rows)
        )
    caption = (
        "**Table 3.** Effects (%) of PET/CT in TAMW for emphasis at different depths: share of the "
        "PET channels and of the CT channels of F^k whose TAMW term is added (emphasised): weight > 0 in "
        "Eq. 4; for h2aseg_release, which subtracts the background term, background weight < 0. Per "
        "test case, each channel's weight is the average over the case's sliding-window patches, "
        "weighted by each patch's mean foreground probability (background: one "
        "minus it). Each cell: mean ± std over the test cases of one seed, both averaged over seeds."
    )
    if not blocks:
        return caption + "\n\nNo finished run of a model with TAMW.\n", []
    return caption + "\n\n" + "\n".join(blocks), csv_rows


def runs_overview(
    config: BenchmarkConfig, out_dir: Path, params: dict[str, int | None] | None = None
) -> list[dict]:
    """One row per run: status, training time and steps, Dice, and the network's parameters when ``params``
    (by run id) is given (the ``runs.csv`` file)."""
    params = params or {}
    rows = []
    jobs = [(m.id, m.name, s) for m in config.models for s in config.seeds]
    jobs += [(t, "threshold", None) for t in config.threshold_methods]
    for run_id, name, seed in jobs:
        folder = run_dir(out_dir, run_id, seed)
        info = json.loads((folder / DONE_FILE).read_text()) if (folder / DONE_FILE).exists() else {}
        summary = _finished(folder)
        status = "done" if summary else ("failed" if (folder / ERROR_FILE).exists() else "missing")
        dice = _nan(summary["metrics"]["dice"]["mean"]) if summary else math.nan
        rows.append(
            {
                "run_id": run_id,
                "model": name,
                "seed": "" if seed is None else seed,
                "status": status,
                "train_minutes": _train_minutes(info),
                "stopped_by": info.get("stopped_by", ""),
                "steps": info.get("steps", ""),
                "predict_seconds": info.get("predict_seconds", ""),
                "dice_pct": "" if math.isnan(dice) else round(100 * dice, 2),
                "params": params.get(run_id) if params.get(run_id) is not None else "",
            }
        )
    return rows


def _write_curves(config: BenchmarkConfig, out_dir: Path, target: Path) -> list[Path]:
    """``curves.csv`` and ``curves.png`` (Table 1 rows, Table 2 rows) when some run has validated."""
    curve_rows = collect_curves(config, out_dir)
    if not curve_rows:
        return []
    table1_ids = [(s.id, _label(config, s.id)) for s in config.models if s.name not in ABLATION_ONLY]
    by_name = {s.name: s for s in reversed(config.models)}
    table2_ids = [(by_name[n].id, _label(config, by_name[n].id)) for n, _, _ in ABLATION_ROWS if n in by_name]
    groups = (("Table 1 networks", table1_ids), ("Table 2 ablation", table2_ids))
    panels = [(title, ids) for title, ids in groups if ids]
    plot = plot_curves(curve_rows, panels, target / "curves.png", f"{config.title}: validation Dice by step")
    return [write_csv(curve_rows, target / "curves.csv"), *([plot] if plot else [])]


def write_tables(config: BenchmarkConfig, out_dir: Path) -> list[Path]:
    """Write ``OUT/tables/table{1,2,3}.{md,csv}``, ``runs.csv``, ``tables.md`` (all three) and the learning
    curves ``curves.{csv,png}``; returns the paths."""
    out_dir = Path(out_dir)
    target = out_dir / TABLES_DIR
    rows = _Rows(config, out_dir)
    written = []
    texts = []
    for name, (text, csv_rows) in (
        ("table1", table1(config, rows)),
        ("table2", table2(config, rows)),
        ("table3", table3(config, out_dir)),
    ):
        written.append(write_text(text, target / f"{name}.md"))
        texts.append(text)
        if csv_rows:
            written.append(write_csv(csv_rows, target / f"{name}.csv"))
    params = {spec.id: rows.params(spec) for spec in config.models}
    written.append(write_csv(runs_overview(config, out_dir, params), target / "runs.csv"))
    written += _write_curves(config, out_dir, target)
    written.append(write_text(f"# {config.title}\n\n" + "\n\n".join(texts), target / "tables.md"))
    return written
