"""Run a benchmark: every model × seed trained, the test split predicted and evaluated, then the tables.

Output folder (``OUT``)::

    OUT/benchmark.yaml                the benchmark file as parsed (what produced these results)
    OUT/benchmark.log                 one line per run (appended across invocations)
    OUT/splits.json                   the one patient-grouped 6:2:2 split every run uses
    OUT/cache/                        preprocessed arrays shared by all runs (unless dataset.cache_dir)
    OUT/data/<kind>/                  the synthetic cohort, when the file asks for one
    OUT/runs/<model>/seed<k>/         a Trainer run folder (config.yaml, splits.json, metrics.csv, last.pt,
                                      best.pt, train_summary.json) plus train.log (the run's log
                                      messages), pred/ (test-split label maps on the label grid), eval/
                                      (per_case.csv, summary.json, summary.md), tamw/per_case.csv (TAMW
                                      models), benchmark.json (timings; its presence means "finished"),
                                      error.log when the run failed
    OUT/runs/<method>/                a threshold row (suv2.5, suv41): pred/, eval/, benchmark.json
    OUT/tables/                       Tables 1–3 as Markdown and CSV (:mod:`h2aseg.benchmarking.tables`)

Resuming: a run with ``benchmark.json`` is skipped; a run with ``train_summary.json`` is not retrained
(only predicted and evaluated); a run with ``last.pt`` but no summary continues training from it
(``Trainer(resume=True)``; its ``max_minutes`` budget starts again). A run that fails is logged
(``error.log``, one line on the console) and the others go on.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

from h2aseg.atomic import atomic_write_text
from h2aseg.benchmarking.config import BenchmarkConfig, ModelSpec
from h2aseg.benchmarking.files import DONE_FILE, ERROR_FILE, EVAL_SUMMARY, TAMW_PER_CASE, TRAIN_LOG
from h2aseg.benchmarking.files import run_dir as run_folder
from h2aseg.benchmarking.tamw_analysis import TAMWRecorder, has_tamw
from h2aseg.config import RunConfig
from h2aseg.data.io import read_geometry, write_image
from h2aseg.data.layouts import Case, discover_cases, load_or_create_splits, load_splits
from h2aseg.data.preprocess import PreprocessedCache, restore_to_original
from h2aseg.device import pick_device
from h2aseg.errors import ConfigError, DataError
from h2aseg.evaluation.evaluate import evaluate_folders, same_grid
from h2aseg.evaluation.report import write_csv
from h2aseg.inference.core import predict_probabilities, probabilities_to_label, settings_for
from h2aseg.inference.predictor import load_trained_model, threshold_mask
from h2aseg.log import PACKAGE_LOGGER, PlainFormatter
from h2aseg.models.registry import preprocess_config_for

__all__ = ["BenchmarkRunner", "RunRecord", "DONE_FILE"]

logger = logging.getLogger(__name__)

SYNTHETIC_MARKER = ".h2aseg_synthetic.json"


@dataclass
class RunRecord:
    """Outcome of one run: ``status`` is done | cached | failed | busy (another live process has the run)."""

    run_id: str
    seed: int | None
    status: str
    message: str = ""


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """Copy the package's log messages (the trainer's epochs, skipped cases, notes) into ``path`` while a run
    lasts: a file handler on the ``h2aseg`` logger, in the console's format, removed afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    package = logging.getLogger(PACKAGE_LOGGER)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(PlainFormatter())
    unset = package.level == logging.NOTSET
    if unset:  # not configured by the CLI (the runner used as a library): the file still gets INFO
        package.setLevel(logging.INFO)
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
        handler.close()
        if unset:
            package.setLevel(logging.NOTSET)


def align_to_label(prediction: sitk.Image, case: Case) -> sitk.Image:
    """The prediction on its case's label grid (nearest neighbour), as the evaluator needs.

    AutoPET labels already lie on the PET grid (a no-op); HECKTOR labels lie on the CT grid.
    """
    if case.label is None:
        return prediction
    reference = read_geometry(case.label)
    if same_grid(prediction, reference):
        return prediction
    return sitk.Resample(prediction, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


class BenchmarkRunner:
    """Runs one benchmark file into ``out_dir`` (see the module docstring for the layout).

    Args:
        config: the parsed benchmark file.
        out_dir: output folder.
        only: run ids (model ids or threshold methods) to run; None runs all. Tables always use every
            finished run on disk.
        progress: show the trainer's progress bars.
        echo: where progress lines go (besides ``OUT/benchmark.log``).
    """

    def __init__(
        self,
        config: BenchmarkConfig,
        out_dir: Path,
        only: Sequence[str] | None = None,
        progress: bool = False,
        echo: Callable[[str], None] = logger.info,
    ) -> None:
        self.config, self.out_dir, self.progress, self._echo = config, Path(out_dir), progress, echo
        known = config.run_ids()
        if only:
            unknown = [i for i in only if i not in known]
            if unknown:
                raise ConfigError(
                    f"--only {' '.join(unknown)}: not in {config.source}; choose from {', '.join(known)}"
                )
        self.only = set(only) if only else None
        ds = config.dataset
        self.root = config.resolve(ds.root, self.out_dir)
        self.cache_dir = (
            config.resolve(ds.cache_dir, self.out_dir) if ds.cache_dir else self.out_dir / "cache"
        )
        self.labels = (1, 2) if ds.label_mode == "multiclass" else (1,)

    # ---------------------------------------------------------------------------------------- paths
    def run_dir(self, run_id: str, seed: int | None) -> Path:
        return run_folder(self.out_dir, run_id, seed)

    def log(self, line: str) -> None:
        self._echo(line)
        path = self.out_dir / "benchmark.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")

    # ----------------------------------------------------------------------------------------- data
    def prepare_data(self) -> tuple[dict[str, Case], list[str]]:
        """Generate the synthetic cohort if asked and absent, discover cases, make the shared split,
        and preprocess the test split into the shared cache. Returns (cases by id, test ids)."""
        synthetic = self.config.dataset.synthetic
        if synthetic is not None and not (self.root / SYNTHETIC_MARKER).exists():
            from h2aseg.data.synthetic import generate_cohort

            self.log(
                f"generating a synthetic {synthetic.kind} cohort of {synthetic.cases} studies in {self.root}"
            )
            ids = generate_cohort(
                synthetic.kind, self.root, synthetic.cases, seed=synthetic.seed, **synthetic.options
            )
            atomic_write_text(
                self.root / SYNTHETIC_MARKER,
                json.dumps({"kind": synthetic.kind, "cases": ids, "seed": synthetic.seed}, indent=1),
            )
        discovery = discover_cases(self.root, self.config.dataset.layout, require_labels=True)
        for problem in discovery.problems:
            self.log(f"skipped case: {problem}")
        if not discovery.cases:
            raise DataError(
                f"no usable labelled case under {self.root}; check dataset.root in {self.config.source}"
            )
        splits = load_or_create_splits(
            discovery.cases, self.out_dir / "splits.json", seed=self.config.dataset.splits_seed
        )
        cases = {c.case_id: c for c in discovery.cases}
        test_ids = [i for i in splits["test"] if i in cases]
        if not test_ids:
            raise DataError(f"the test split in {self.out_dir / 'splits.json'} is empty; use more cases")
        return cases, test_ids

    def _test_cache(
        self, run_config: RunConfig, cases: dict[str, Case], test_ids: list[str]
    ) -> PreprocessedCache:
        cache = PreprocessedCache(self.cache_dir, preprocess_config_for(run_config))
        for problem in cache.build([cases[i] for i in test_ids], progress=False):
            self.log(f"test case not usable: {problem}")
        return cache

    # ---------------------------------------------------------------------------------------- runs
    def run(self) -> list[RunRecord]:
        """Run every selected (model, seed) and threshold row; returns one record per run."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.out_dir / "benchmark.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False)
        )
        cases, test_ids = self.prepare_data()
        jobs: list[tuple[str, int | None]] = [
            (m.id, seed) for m in self.config.models for seed in self.config.seeds
        ] + [(method, None) for method in self.config.threshold_methods]
        jobs = [job for job in jobs if self.only is None or job[0] in self.only]
        self.log(f"{self.config.title}: {len(jobs)} runs, {len(test_ids)} test cases, output {self.out_dir}")
        records = []
        for index, (run_id, seed) in enumerate(jobs, start=1):
            prefix = f"[{index:>{len(str(len(jobs)))}}/{len(jobs)}] {run_id}" + (
                "" if seed is None else f" seed {seed}"
            )
            started = time.monotonic()
            try:
                if seed is None:
                    record = self.run_threshold(run_id, cases, test_ids)
                else:
                    record = self.run_model(self.config.model(run_id), seed, cases, test_ids)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # one failed run must not stop a two-hour benchmark
                run_dir = self.run_dir(run_id, seed)
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_dir / ERROR_FILE, traceback.format_exc())
                first = (str(err).strip().splitlines() or [""])[0]
                record = RunRecord(
                    run_id, seed, "failed", f"{type(err).__name__}: {first} (see {run_dir / ERROR_FILE})"
                )
            self.log(
                f"{prefix}: {record.status} in {(time.monotonic() - started) / 60:.1f} min; {record.message}"
            )
            records.append(record)
        return records

    def run_model(self, spec: ModelSpec, seed: int, cases: dict[str, Case], test_ids: list[str]) -> RunRecord:
        """Train (unless trained), predict the test split, evaluate, and record TAMW weights."""
        run_dir = self.run_dir(spec.id, seed)
        done = run_dir / DONE_FILE
        if done.exists() and (run_dir / EVAL_SUMMARY).exists():
            return RunRecord(
                spec.id, seed, "cached", self._result_text(run_dir, json.loads(done.read_text()))
            )
        run_config = self.config.run_config(spec, seed, self.root, self.cache_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _run_lock(run_dir) as holder:
            if holder is not None:
                who = f"process {holder}" if holder else "another process"
                message = f"{who} is running it; run again when that one has finished"
                return RunRecord(spec.id, seed, "busy", message)
            return self._train_predict_evaluate(spec, seed, run_dir, run_config, cases, test_ids)

    def _train_predict_evaluate(self, spec, seed, run_dir, run_config, cases, test_ids) -> RunRecord:
        done = run_dir / DONE_FILE
        self._check_config(run_dir, run_config)
        self._place_splits(run_dir)
        timings: dict[str, float | str] = {}
        with _log_to(run_dir / TRAIN_LOG):
            if not (run_dir / "train_summary.json").exists():
                from h2aseg.training.trainer import Trainer

                start = time.monotonic()
                Trainer(run_config, run_dir, resume=True, progress=self.progress).fit()
                timings["train_seconds"] = round(time.monotonic() - start, 1)
            start = time.monotonic()
            cache = self._test_cache(run_config, cases, test_ids)
            device = str(pick_device(run_config.train.device))
            loaded = load_trained_model(run_dir, device=device)
            timings["checkpoint"] = loaded.checkpoint.name
            pred_dir = run_dir / "pred"
            recorder = TAMWRecorder(loaded.model) if has_tamw(loaded.model) else None
            tamw_rows: list[dict] = []
            for case_id in test_ids:
                if not cache.is_current(cases[case_id]):
                    continue
                data = cache.load(case_id)
                if recorder is not None:
                    recorder.reset()
                    with recorder.attached():
                        label = self._predict_array(loaded, data, device)
                    tamw_rows += recorder.case_rows(case_id)
                else:
                    label = self._predict_array(loaded, data, device)
                image = align_to_label(
                    restore_to_original(label, data["meta"], is_label=True), cases[case_id]
                )
                write_image(image, pred_dir / f"{case_id}.nii.gz")
            if recorder is not None and tamw_rows:
                write_csv(tamw_rows, run_dir / TAMW_PER_CASE)
            timings["predict_seconds"] = round(time.monotonic() - start, 1)
            start = time.monotonic()
            self._evaluate(pred_dir, run_dir, test_ids)
            timings["evaluate_seconds"] = round(time.monotonic() - start, 1)
        info = {**self._train_info(run_dir), **timings}
        atomic_write_text(done, json.dumps(info, indent=2))
        return RunRecord(spec.id, seed, "done", self._result_text(run_dir, info))

    def _evaluate(self, pred_dir: Path, run_dir: Path, test_ids: list[str]) -> None:
        """Score the predictions in ``pred_dir`` against the test split (summary at ``EVAL_SUMMARY``)."""
        evaluate_folders(
            pred_dir,
            self.root,
            (run_dir / EVAL_SUMMARY).parent,
            layout=self.config.dataset.layout,
            labels=self.labels,
            progress=False,
            case_ids=test_ids,
        )

    def _predict_array(self, loaded, data: dict, device: str) -> np.ndarray:
        settings = settings_for(
            loaded.patch_size,
            loaded.preprocess.suv_scale,
            overlap=self.config.predict.overlap,
            mirror=self.config.predict.mirror,
            device=device,
        )
        return probabilities_to_label(
            predict_probabilities(loaded.model, data["ct"], data["pet"], settings)
        ).numpy()

    def run_threshold(self, method: str, cases: dict[str, Case], test_ids: list[str]) -> RunRecord:
        """Segment each test case by an SUV rule on its own PET grid (no training), then evaluate."""
        run_dir = self.run_dir(method, None)
        done = run_dir / DONE_FILE
        if done.exists() and (run_dir / EVAL_SUMMARY).exists():
            return RunRecord(method, None, "cached", self._result_text(run_dir, json.loads(done.read_text())))
        start = time.monotonic()
        for case_id in test_ids:
            case = cases[case_id]
            try:
                mask = threshold_mask(case, method)
            except DataError as err:
                self.log(f"{method}: case {case_id}: {err}")
                continue
            write_image(align_to_label(mask, case), run_dir / "pred" / f"{case_id}.nii.gz")
        info: dict = {"predict_seconds": round(time.monotonic() - start, 1)}
        self._evaluate(run_dir / "pred", run_dir, test_ids)
        atomic_write_text(done, json.dumps(info, indent=2))
        return RunRecord(method, None, "done", self._result_text(run_dir, info))

    # -------------------------------------------------------------------------------------- helpers
    def _place_splits(self, run_dir: Path) -> None:
        shared = self.out_dir / "splits.json"
        target = run_dir / "splits.json"
        if not target.exists():
            shutil.copyfile(shared, target)
        elif load_splits(target) != load_splits(shared):
            raise ConfigError(
                f"{target} differs from the benchmark split {shared}; "
                f"delete {run_dir} to retrain it on the shared split"
            )

    def _check_config(self, run_dir: Path, run_config: RunConfig) -> None:
        saved = run_dir / "config.yaml"
        if not saved.exists():
            return
        old = RunConfig.load(saved).to_dict()
        new = run_config.to_dict()
        changed = [section for section in ("model", "train") if old[section] != new[section]]
        if changed:
            self.log(
                f"note: {saved} differs from the benchmark file in {', '.join(changed)}; the saved run is "
                f"kept (delete {run_dir} to retrain with the new settings)"
            )

    @staticmethod
    def _train_info(run_dir: Path) -> dict:
        info: dict = {}
        summary = run_dir / "train_summary.json"
        if summary.exists():
            data = json.loads(summary.read_text())
            keys = ("epochs_run", "last_epoch", "stopped_by", "seconds", "total_seconds")
            info.update({k: data.get(k) for k in keys})
        metrics = run_dir / "metrics.csv"
        if metrics.exists():
            with metrics.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            if rows:  # by column name: the trainer's LOG_FIELDS order may change
                info["steps"] = int(rows[-1]["step"])
        return info

    @staticmethod
    def _result_text(run_dir: Path, info: dict) -> str:
        parts = []
        if info.get("stopped_by"):
            parts.append(
                f"trained {float(info.get('seconds') or 0) / 60:.1f} min ({info['stopped_by']}, "
                f"{info.get('steps', '?')} steps)"
            )
        try:
            summary = json.loads((run_dir / EVAL_SUMMARY).read_text())
            dice = summary["metrics"]["dice"]["mean"]
            parts.append(
                f"{summary['n_cases']} test cases, Dice " + ("n/a" if dice is None else f"{100 * dice:.2f} %")
            )
        except (OSError, KeyError, ValueError):
            pass
        return "; ".join(parts)


#: Lock file of a run being trained/predicted by a process: two benchmark processes with overlapping
#: ``--only`` lists must not train the same run at once. The file stays; the lock is an ``flock`` on it, which
#: the kernel drops when its process ends (killed included), so no lock is ever stale and no pid is trusted.
RUN_LOCK = "running.lock"


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[int | None]:
    """Hold an exclusive lock on ``run_dir/RUN_LOCK`` for the ``with`` block: yields None when this call
    holds it, else the pid of the process that does (0 when unknown) and holds nothing."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one process per run folder is then the user's care
        logger.warning("no file locking on this system: do not run two benchmarks on one --out at once")
        yield None
        return
    with open(run_dir / RUN_LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            yield int(text) if text.isdigit() else 0
            return
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield None
        finally:
            handle.seek(0)
            handle.truncate()  # empty: nobody holds it (the flock goes with the file's closing)
