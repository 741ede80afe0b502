"""Per-study comparisons of a benchmark's rows against H2ASeg, parameter counts, and step counts.

The tables (:mod:`h2aseg.benchmarking.tables`) add three things to each row from here:

* **H2ASeg − row**: the paired per-study Dice difference and its bootstrap 95 % interval
  (:func:`h2aseg.evaluation.statistics.paired_bootstrap`). Per-study Dice is read from each finished run's
  ``eval/per_case.csv``; the studies are those the Dice column uses (AutoPET rule: the lesion-positive test
  studies when the test split has lesion-free ones, otherwise all). Each study's Dice is averaged over the
  seeds that both rows finished (a threshold row has no seed: H2ASeg's finished seeds are averaged), then
  the studies are resampled. A difference whose interval excludes 0 is marked.
* **Parameters**: counted on the network the row trains (the registry's :func:`build_network` on the
  row's run config), so the table states the width that was actually trained.
* **Steps**: the optimizer steps of the finished runs (``benchmark.json``), to show they are equal.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from h2aseg.benchmarking.config import BenchmarkConfig, ModelSpec
from h2aseg.benchmarking.files import DONE_FILE, EVAL_SUMMARY, run_dir
from h2aseg.evaluation.statistics import BootstrapResult, paired_bootstrap

__all__ = [
    "PER_CASE",
    "REFERENCE_NAMES",
    "average_over_seeds",
    "Comparison",
    "Comparisons",
    "count_parameters",
    "difference_columns",
    "format_difference",
    "format_parameters",
    "format_steps",
    "per_study_dice",
    "read_study_dice",
    "reference_model",
    "step_counts",
]

#: The evaluation's per-study table in a run folder.
PER_CASE = EVAL_SUMMARY.parent / "per_case.csv"
#: Registry names that can be the reference row, in order of preference.
REFERENCE_NAMES = ("h2aseg", "h2aseg_release")
#: Bootstrap settings of every table (fixed, so a rebuilt table gives the same intervals).
N_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE = 10_000, 0, 0.95
#: Marks a difference whose interval excludes 0.
SIGNIFICANT_MARK = "†"
#: Fewer paired studies than this are never marked: resampling 1-4 studies gives an interval that says nothing
#: (one study: every resample is that study, a zero-width interval).
MIN_STUDIES = 5


def per_study_dice(folder: Path) -> dict[str, float] | None:
    """Dice per study of a finished run (the studies its Dice column uses), or None when not finished.

    Columns are read by name (``case_id``, ``dice``, ``gt_voxels``); a study without a number is left out.
    """
    path = Path(folder) / PER_CASE
    if not (Path(folder) / DONE_FILE).exists() or not path.exists():
        return None
    return read_study_dice(path)


def read_study_dice(path: Path) -> dict[str, float]:
    """Dice per study from an evaluation's ``per_case.csv``: the lesion-positive studies when the table also
    holds lesion-free ones (AutoPET rule, as ``report.summarise``), otherwise all; columns read by name."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    positive = [r for r in rows if _number(r.get("gt_voxels")) > 0]
    chosen = positive if len(positive) < len(rows) else rows  # AutoPET rule, as report.summarise
    scores = {r["case_id"]: _number(r.get("dice")) for r in chosen}
    return {case: value for case, value in scores.items() if math.isfinite(value)}


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def average_over_seeds(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each study's score averaged over seeds, for the studies every seed scored (empty without seeds)."""
    studies = set.intersection(*(set(p) for p in per_seed)) if per_seed else set()
    return {case: float(np.mean([p[case] for p in per_seed])) for case in sorted(studies)}


def reference_model(config: BenchmarkConfig) -> ModelSpec | None:
    """The row every other is compared with: the first ``h2aseg`` row (else ``h2aseg_release``), or None."""
    for name in REFERENCE_NAMES:
        for spec in config.models:
            if spec.name == name:
                return spec
    return None


@dataclass(frozen=True)
class Comparison:
    """H2ASeg − a row on the same studies: Dice points with the bootstrap interval, and the seeds paired."""

    result: BootstrapResult
    seeds: tuple[int, ...]

    @property
    def significant(self) -> bool:
        """The interval excludes 0 and rests on at least :data:`MIN_STUDIES` studies."""
        return self.result.n >= MIN_STUDIES and self.result.excludes_zero


class Comparisons:
    """Paired per-study differences of every row against the reference row of a benchmark folder."""

    def __init__(self, config: BenchmarkConfig, out_dir: Path) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.reference = reference_model(config)
        self._cache: dict[tuple[str, int | None], dict[str, float] | None] = {}

    def _scores(self, run_id: str, seed: int | None) -> dict[str, float] | None:
        key = (run_id, seed)
        if key not in self._cache:
            self._cache[key] = per_study_dice(run_dir(self.out_dir, run_id, seed))
        return self._cache[key]

    def _averaged(self, run_id: str, seeds: list[int | None]) -> dict[str, float]:
        return average_over_seeds([p for s in seeds if (p := self._scores(run_id, s)) is not None])

    def against(self, run_id: str, seeded: bool = True) -> Comparison | None:
        """H2ASeg − ``run_id`` in Dice points (None: no reference row, the row is the reference, or no
        pair of finished runs)."""
        if self.reference is None or run_id == self.reference.id:
            return None
        ref_seeds = [s for s in self.config.seeds if self._scores(self.reference.id, s) is not None]
        if seeded:
            seeds = [s for s in ref_seeds if self._scores(run_id, s) is not None]
            other = self._averaged(run_id, list(seeds))
        else:
            seeds = ref_seeds
            other = self._scores(run_id, None) or {}
        if not seeds or not other:
            return None
        ref = self._averaged(self.reference.id, list(seeds))
        studies = sorted(set(ref) & set(other))
        if not studies:
            return None
        result = paired_bootstrap(
            [ref[c] for c in studies],
            [other[c] for c in studies],
            n_resamples=N_RESAMPLES,
            seed=BOOTSTRAP_SEED,
            confidence=CONFIDENCE,
        )
        return Comparison(result.scaled(100.0), tuple(int(s) for s in seeds))

    def caption(self) -> str:
        """What the difference column means (for a table caption)."""
        if self.reference is None:
            return ""
        return (
            f"H2ASeg − row: the paired difference of test Dice in points, H2ASeg ({self.reference.id}) "
            "minus the row, over the studies of the Dice column, each study's Dice averaged over the seeds "
            "both rows finished (threshold rows: over H2ASeg's seeds); [low, high] is the bootstrap "
            f"{100 * CONFIDENCE:.0f} % interval over studies ({N_RESAMPLES:,} resamples, seed "
            f"{BOOTSTRAP_SEED}); {SIGNIFICANT_MARK} = the interval excludes 0 (never marked with fewer "
            f"than {MIN_STUDIES} studies)."
        )


def format_difference(comparison: Comparison | None) -> str:
    """``"+3.21 [0.50, 6.10] †"`` (points; † when the interval excludes 0), ``"—"`` without a comparison."""
    if comparison is None or comparison.result.n == 0:
        return "—"
    r = comparison.result
    mark = f" {SIGNIFICANT_MARK}" if comparison.significant else ""
    if r.n < MIN_STUDIES:
        mark = f" (n = {r.n}: too few to mark)"
    return f"{r.mean_difference:+.2f} [{r.low:+.2f}, {r.high:+.2f}]{mark}"


def difference_columns(comparison: Comparison | None) -> dict:
    """CSV columns of a comparison (empty cells without one)."""
    if comparison is None or comparison.result.n == 0:
        return {
            "dice_diff_vs_h2aseg_pts": "",
            "dice_diff_low": "",
            "dice_diff_high": "",
            "dice_diff_studies": "",
            "dice_diff_seeds": "",
            "dice_diff_excludes_0": "",
        }
    r = comparison.result
    return {
        "dice_diff_vs_h2aseg_pts": round(r.mean_difference, 4),
        "dice_diff_low": round(r.low, 4),
        "dice_diff_high": round(r.high, 4),
        "dice_diff_studies": r.n,
        "dice_diff_seeds": " ".join(str(s) for s in comparison.seeds),
        "dice_diff_excludes_0": comparison.significant,
    }


def count_parameters(config: BenchmarkConfig, spec: ModelSpec) -> int | None:
    """Trainable parameters of the network row ``spec`` trains (None when it cannot be built)."""
    from h2aseg.models.registry import build_network

    run_config = config.run_config(spec, config.seeds[0], Path("data"), Path("cache"))
    try:
        network = build_network(run_config)
    except Exception:  # a row that cannot be built fails in its run; the table says n/a
        return None
    return int(sum(p.numel() for p in network.parameters() if p.requires_grad))


def format_parameters(count: int | None) -> str:
    """``"2.14 M"``, ``"88.1 k"``, ``"0"`` (no network), ``"n/a"`` (cannot be built)."""
    if count is None:
        return "n/a"
    if count == 0:
        return "0"
    return f"{count / 1e6:.2f} M" if count >= 100_000 else f"{count / 1e3:.1f} k"


def step_counts(out_dir: Path, run_id: str, seeds: list[int]) -> list[int]:
    """Optimizer steps of each finished seed of a row (from its ``benchmark.json``)."""
    counts = []
    for seed in seeds:
        done = run_dir(out_dir, run_id, seed) / DONE_FILE
        if done.exists():
            steps = json.loads(done.read_text()).get("steps")
            if steps is not None:
                counts.append(int(steps))
    return counts


def format_steps(counts: list[int]) -> str:
    """``"1500"`` when every finished seed took the same steps, ``"1480–1500 (unequal)"`` otherwise."""
    if not counts:
        return "—"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}–{high} (unequal)"
