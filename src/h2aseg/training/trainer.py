"""Training loop: patches from the preprocessed cache -> network -> deep-supervision loss -> Adam.

One :class:`Trainer` runs one run folder::

    RUN_DIR/config.yaml      the resolved settings (the run can be redone from the folder alone)
    RUN_DIR/splits.json      the patient-grouped 6:2:2 split every model of a study shares
    RUN_DIR/metrics.csv      one row per epoch: loss, validation Dice, learning rate, seconds
    RUN_DIR/last.pt          after every epoch (model, optimizer, seconds trained, scaler, RNG, config)
    RUN_DIR/best.pt          the epoch with the best validation Dice
    RUN_DIR/train_summary.json

Validation predicts whole validation volumes with sliding-window inference (not random crops) and
scores the mean Dice over lesion-positive cases (the AutoPET rule; all cases when none is positive).
Every epoch reseeds the sampler and the augmentation from (seed, epoch, rank), so a run resumed from
``last.pt`` continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import list_data_collate
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from h2aseg.atomic import atomic_write_text
from h2aseg.checkpoint import load_checkpoint, rng_state, set_rng_state
from h2aseg.checkpoint import save_checkpoint as write_checkpoint
from h2aseg.config import RunConfig
from h2aseg.data.layouts import Case, discover_cases, load_or_create_splits
from h2aseg.data.preprocess import PreprocessedCache
from h2aseg.data.transforms import train_transforms
from h2aseg.errors import ConfigError, DataError
from h2aseg.evaluation.metrics import dice
from h2aseg.inference.core import predict_probabilities, probabilities_to_label, settings_for
from h2aseg.inference.precision import training_autocast_dtype
from h2aseg.models.registry import build_network, num_classes_for, preprocess_config_for
from h2aseg.training import distributed as dist_utils
from h2aseg.training.losses import DeepSupervisionLoss
from h2aseg.training.schedule import learning_rate

# Lesion-free studies legitimately give no positive crop centre; MONAI warns on each of them.
warnings.filterwarnings("ignore", message="Num foregrounds 0", category=UserWarning)

logger = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "step", "train_loss", "val_dice", "lr", "epoch_seconds")


class PatchDataset(Dataset):
    """Training volumes from the cache; each item is a list of ``samples_per_volume`` patch dicts."""

    def __init__(self, cache: PreprocessedCache, case_ids: list[str], transform) -> None:
        self.cache, self.case_ids, self.transform = cache, case_ids, transform

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(self, index: int):
        return self.transform(self.cache.load(self.case_ids[index]))


@dataclass
class TrainResult:
    epochs_run: int
    last_epoch: int
    best_metric: float
    best_epoch: int
    stopped_by: str
    seconds: float  # this process's training (a resumed run: since it resumed)
    total_seconds: float = 0.0  # the run's training time over every process that trained it


@dataclass
class RunState:
    """Where a run stands: what ``last.pt`` records besides the weights, and what a resume restores."""

    epoch: int = 0  # the last finished epoch
    step: int = 0  # optimiser steps so far
    best: float = -math.inf  # best validation Dice (-inf before any)
    best_epoch: int = 0
    train_seconds: float = 0.0  # seconds trained, earlier sessions included (the schedule's clock)


@dataclass
class EpochRecord:
    """One finished epoch as ``metrics.csv``, TensorBoard and the log report it."""

    epoch: int
    lr: float
    train_loss: float
    val_dice: float  # NaN when not validated
    seconds: float
    improved: bool


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel: all parameters updated in one pass (CPU and CUDA; ~6 % of a small CPU
    step)."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 100_003 + epoch * 1_009 + rank * 7_919) % (2**31 - 1)


class Trainer:
    """Train ``config.model`` on ``config.data`` into ``out_dir`` (see the module docstring).

    :meth:`fit` is the sequence of named steps: :meth:`setup` (run folder, data, network, a resumed
    :class:`RunState`, the session's clock), then per epoch :meth:`train_epoch`, :meth:`validate`,
    :meth:`save_checkpoint` and :meth:`log_epoch` (:meth:`run_epoch`), then :meth:`finish`. The network,
    optimizer, scaler, loaders and loss are the trainer's state once :meth:`setup` has run.
    """

    def __init__(self, config: RunConfig, out_dir: Path, resume: bool = False, progress: bool = True) -> None:
        self.config, self.out_dir, self.resume, self.progress = config, Path(out_dir), resume, progress
        # one line per study left out (discovery or preprocessing), as `check` prints
        self.skipped: list[str] = []
        self.ctx = dist_utils.init_distributed(config.train.device)
        train = config.train
        if train.batch < 1 or train.samples_per_volume < 1 or train.epochs < 1:
            raise ConfigError("batch, samples_per_volume and epochs must all be at least 1")
        self.volumes_per_step = max(1, math.ceil(train.batch / train.samples_per_volume))
        # --amp: fp16 + gradient scaling on CUDA; bf16 on CPUs with native bf16 (AVX512-BF16/AMX), for "on"
        self.amp_dtype = training_autocast_dtype(train.amp, self.ctx.device)
        self.amp = self.amp_dtype is not None
        self.state = RunState()
        # Set by setup(): the data, the network (plain and as called: DDP/compiled), its optimiser and loss.
        self.cache: PreprocessedCache | None = None
        self.train_ids: list[str] = []
        self.val_ids: list[str] = []
        self.model: torch.nn.Module | None = None
        self.wrapped: torch.nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.loader: DataLoader | None = None
        self.transform = None
        self.loss_fn: DeepSupervisionLoss | None = None
        self.board = None  # TensorBoard writer, when the extra is installed
        self.deadline: float | None = None  # monotonic time at which the time budget ends
        self._earlier_seconds = 0.0  # seconds trained by earlier sessions of a resumed run
        self._session_start = 0.0

    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def validating(self) -> bool:
        """Whether this run validates at all (a validation split and ``val_every`` > 0)."""
        return bool(self.val_ids) and self.config.train.val_every > 0

    def log(self, message: str) -> None:
        """An INFO message from the main process (the package logger; tqdm bars are closed by then)."""
        if self.ctx.is_main:
            logger.info(message)

    # ------------------------------------------------------------------------------------------- fit
    def fit(self) -> TrainResult:
        """Set up (resuming when asked), run the epochs until the last or the time budget, finish."""
        started = time.monotonic()
        self.setup()
        stopped_by, epochs_run = "epochs", 0
        for epoch in range(self.state.epoch + 1, self.config.train.epochs + 1):
            timed_out = self.run_epoch(epoch)
            epochs_run += 1
            if timed_out:
                stopped_by = "time budget"
                break
        return self.finish(epochs_run, stopped_by, started)

    def setup(self) -> None:
        """The run folder, the data, the network, a resumed state, the loader and loss, the clock."""
        self._claim_run_dir()
        self.cache, self.train_ids, self.val_ids = self._prepare_data()
        self.log(
            f"{len(self.train_ids)} training and {len(self.val_ids)} validation cases; "
            f"{self.config.model.name} on {self.ctx.device} (world size {self.ctx.world_size})"
        )
        self.model, self.optimizer, self.scaler = self._build()
        if self.resume and self.last_path.exists():
            self.restore(self.last_path)
        self.wrapped = self._wrap(self.model)
        self.loader, self.transform = self._loader(self.cache, self.train_ids)
        t = self.config.train
        self.loss_fn = DeepSupervisionLoss(
            num_classes_for(self.config), t.deep_supervision_weights, kind=t.loss
        )
        self._start_clock()
        self.board = self._tensorboard()

    def run_epoch(self, epoch: int) -> bool:
        """Train, validate when due, keep the best, then (rank 0) checkpoint and log one epoch.

        Returns:
            Whether the time budget ended the epoch (the run stops after it).
        """
        epoch_start = time.monotonic()
        lr = self._set_learning_rate(self.optimizer, epoch, self.state.train_seconds)
        train_loss, n_steps, timed_out = self.train_epoch(epoch)
        self.state.step += n_steps
        val_dice = self.validate(epoch, last=timed_out or epoch == self.config.train.epochs)
        # Rank 0's clock decides, so every rank sets the same learning rate next epoch.
        self.state.train_seconds = dist_utils.broadcast_object(
            self.ctx, self._earlier_seconds + time.monotonic() - self._session_start
        )
        improved = self._update_best(epoch, val_dice)
        self.state.epoch = epoch
        if self.ctx.is_main:
            self.save_checkpoint(improved)
            seconds = time.monotonic() - epoch_start
            self.log_epoch(EpochRecord(epoch, lr, train_loss, val_dice, seconds, improved))
        dist_utils.barrier(self.ctx)
        return timed_out

    def finish(self, epochs_run: int, stopped_by: str, started: float) -> TrainResult:
        """Close TensorBoard, write ``train_summary.json`` (rank 0) and leave the process group."""
        if self.board is not None:
            self.board.close()
        best = self.state.best
        if self.validating and self.ctx.is_main and not best > 0.0:
            self.log("validation Dice never rose above 0: no best.pt was written; predict will use last.pt")
        result = TrainResult(
            epochs_run,
            self.state.epoch,
            best if best > -math.inf else float("nan"),
            self.state.best_epoch,
            stopped_by,
            round(time.monotonic() - started, 1),
            round(self.state.train_seconds, 1),
        )
        digests = dist_utils.gather_digests(self.ctx, self.model)
        if self.ctx.is_main:
            summary = {**result.__dict__, "world_size": self.ctx.world_size, "parameter_digests": digests}
            if math.isnan(summary["best_metric"]):
                summary["best_metric"] = None  # strict JSON has no NaN
            atomic_write_text(self.out_dir / "train_summary.json", json.dumps(summary, indent=2))
        dist_utils.cleanup(self.ctx)
        return result

    # ----------------------------------------------------------------------------------------- setup
    def _claim_run_dir(self) -> None:
        """Create the run folder and save the settings; refuse to overwrite a run unless resuming."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_main:
            if self.last_path.exists() and not self.resume:
                raise ConfigError(
                    f"{self.out_dir} already holds a run (last.pt): pass --resume to continue "
                    "it or choose another --out"
                )
            self.config.save(self.out_dir / "config.yaml")

    def _prepare_data(self) -> tuple[PreprocessedCache, list[str], list[str]]:
        data = self.config.data
        if not data.root:
            raise ConfigError("no dataset given: pass --data DIR")
        discovery = discover_cases(
            Path(data.root),
            data.layout,
            require_labels=True,
            ct_channel=data.ct_channel,
            pet_channel=data.pet_channel,
        )
        for note in discovery.notes:
            self.log(note)
        self.skipped = [str(p) for p in discovery.problems]
        for problem in discovery.problems:
            self.log(f"skipped case: {problem}")
        if not discovery.cases:
            raise DataError(f"no usable labelled case found under {data.root} (layout {data.layout})")
        cases: dict[str, Case] = {c.case_id: c for c in discovery.cases}
        splits_path = self.out_dir / "splits.json"
        if self.ctx.is_main:
            splits = load_or_create_splits(discovery.cases, splits_path, seed=data.splits_seed)
        dist_utils.barrier(self.ctx)
        if not self.ctx.is_main:
            splits = load_or_create_splits(discovery.cases, splits_path, seed=data.splits_seed)
        cache_dir = Path(data.cache_dir) if data.cache_dir else self.out_dir / "cache"
        cache = PreprocessedCache(cache_dir, preprocess_config_for(self.config))
        needed = [cases[i] for i in splits["train"] + splits["val"] if i in cases]
        bad: set[str] = set()
        if self.ctx.is_main:
            problems = cache.build(needed, progress=self.progress)
            self.skipped += [str(p) for p in problems]
            for problem in problems:
                self.log(f"skipped case: {problem}")
            bad = {p.case_id for p in problems}
        bad = dist_utils.broadcast_object(self.ctx, bad)
        train_ids = [i for i in splits["train"] if i in cases and i not in bad]
        val_ids = [i for i in splits["val"] if i in cases and i not in bad]
        if not train_ids:
            raise DataError(f"the training split of {data.root} has no usable case")
        return cache, train_ids, val_ids

    def _loader(self, cache: PreprocessedCache, train_ids: list[str]) -> tuple[DataLoader, object]:
        t = self.config.train
        hot = t.hot_negatives_suv / cache.config.suv_scale if t.hot_negatives_suv else None
        transform = train_transforms(
            t.patch,
            t.samples_per_volume,
            t.rotate_prob,
            t.rotate_degrees,
            hot,
            lesion_offset=t.lesion_offset,
            keep_lesion_whole=t.keep_lesion_whole,
        )
        dataset = PatchDataset(cache, train_ids, transform)
        sampler = (
            DistributedSampler(dataset, self.ctx.world_size, self.ctx.rank, shuffle=True, seed=t.seed)
            if self.ctx.enabled
            else None
        )
        loader = DataLoader(
            dataset,
            batch_size=self.volumes_per_step,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=t.num_workers,
            collate_fn=list_data_collate,
            drop_last=len(dataset) >= self.volumes_per_step * self.ctx.world_size,
            persistent_workers=False,
        )
        return loader, transform

    def _build(self):
        t = self.config.train
        torch.manual_seed(t.seed)
        model = build_network(self.config).to(self.ctx.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        optimizer = build_optimizer(model, t.lr, t.weight_decay)
        # fp16 needs loss scaling; with CPU bf16 the scaler skips the rare step whose gradients are not finite
        # (3 of 30 steps of a 4-64 H2ASeg at 32³ on our EPYC; unchecked, the weights turned NaN by step 4)
        scaler = torch.amp.GradScaler(self.ctx.device.type, enabled=self.amp)
        return model, optimizer, scaler

    def restore(self, path: Path) -> None:
        """Continue from ``path`` (``last.pt``): weights, optimiser, scaler, RNG and the :class:`RunState`."""
        saved = load_checkpoint(path, map_location=self.ctx.device)
        trained_as = saved["config"]["model"]["name"]
        if trained_as != self.config.model.name:
            raise ConfigError(f"{path} was trained as {trained_as}, not {self.config.model.name}")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        set_rng_state(saved["rng"])
        self.state = RunState(
            epoch=saved["epoch"],
            step=saved["step"],
            best=saved["best_metric"],
            best_epoch=saved["best_epoch"],
            train_seconds=float(saved.get("train_seconds", 0.0)),
        )
        self.log(f"resumed from {path} after epoch {self.state.epoch} (step {self.state.step})")

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call: DDP when distributed, then torch.compile when asked."""
        wrapped = model
        if self.ctx.enabled:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.config.train.compile:
            wrapped = torch.compile(wrapped, backend=self.config.train.compile)
        return wrapped

    def _start_clock(self) -> None:
        """One clock for the time budget and the schedule: seconds trained = earlier sessions' + this one's,
        so a resumed run gets what its earlier sessions left over and poly reaches 0 at the deadline."""
        budget = self._budget_seconds
        self._earlier_seconds, self._session_start = self.state.train_seconds, time.monotonic()
        self.deadline = self._session_start + max(0.0, budget - self._earlier_seconds) if budget else None

    @property
    def _budget_seconds(self) -> float | None:
        """The run's time budget (``max_minutes``) in seconds, None without one."""
        minutes = self.config.train.max_minutes
        return 60.0 * minutes if minutes else None

    def _set_learning_rate(self, optimizer, epoch: int, train_seconds: float) -> float:
        t = self.config.train
        lr = learning_rate(
            t.lr_schedule, t.lr, epoch, t.epochs, t.lr_decay, train_seconds, self._budget_seconds
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _tensorboard(self):
        """A TensorBoard writer in RUN_DIR/tensorboard when the ``tensorboard`` extra is installed."""
        if not self.ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    # ----------------------------------------------------------------------------------------- train
    def train_epoch(self, epoch: int) -> tuple[float, int, bool]:
        """``steps_per_epoch`` optimiser steps (a pass over the loader without it), reseeded from the epoch.

        Returns:
            (mean training loss, steps taken, whether the time budget ended the epoch).
        """
        t = self.config.train
        self._reseed(epoch)
        steps = t.steps_per_epoch or len(self.loader)
        self.wrapped.train()
        losses, timed_out = [], False
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{t.epochs}",
            unit="step",
            disable=not (self.progress and self.ctx.is_main),
            leave=False,
            dynamic_ncols=True,
        )
        for batch in self._batches(steps):
            losses.append(self._step(batch, epoch))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
            if self.deadline is not None and self._out_of_time(self.deadline):
                timed_out = True
                break
        bar.close()
        return float(np.mean(losses)) if losses else float("nan"), len(losses), timed_out

    def _reseed(self, epoch: int) -> None:
        """Seed the network's dropout, the augmentation and the sampler from (seed, epoch, rank)."""
        seed = epoch_seed(self.config.train.seed, epoch, self.ctx.rank)
        torch.manual_seed(seed)
        self.transform.set_random_state(seed=seed)
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(epoch)

    def _batches(self, steps: int):
        """``steps`` batches from the loader, starting it again when it runs out."""
        iterator = iter(self.loader)
        for _ in range(steps):
            try:
                batch = next(iterator)
            except StopIteration:
                iterator = iter(self.loader)
                batch = next(iterator)
            yield batch

    def _step(self, batch: dict, epoch: int) -> float:
        """One optimiser step on ``batch`` (autocast, gradient scaling, clipping); returns its loss."""
        t = self.config.train
        ct, pet, label = (batch[k].to(self.ctx.device, non_blocking=True) for k in ("ct", "pet", "label"))
        if t.channels_last:
            ct, pet = (x.contiguous(memory_format=torch.channels_last_3d) for x in (ct, pet))
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.amp):
            outputs = self.wrapped(ct, pet)
        outputs = [o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float()
        loss = self.loss_fn(outputs, label)
        if not torch.isfinite(loss):
            raise DataError(
                f"training loss became {loss.item()} at epoch {epoch}: lower --lr or check the data"
            )
        self.scaler.scale(loss).backward()
        if t.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), t.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def _out_of_time(self, deadline: float) -> bool:
        """Whether the time budget is spent; under DDP rank 0 decides for all, so no rank waits alone."""
        return dist_utils.broadcast_flag(self.ctx, time.monotonic() > deadline)

    # -------------------------------------------------------------------------------------- validate
    def validate(self, epoch: int, last: bool) -> float:
        """Rank 0's validation Dice every ``val_every`` epochs and after the last one (NaN otherwise), on
        every rank."""
        val_dice = float("nan")
        if self.ctx.is_main and self.validating and (epoch % self.config.train.val_every == 0 or last):
            val_dice = self._validate(self.model, self.cache, self.val_ids)
        return dist_utils.broadcast_object(self.ctx, val_dice)

    @torch.no_grad()
    def _validate(self, model, cache, val_ids) -> float:
        net = model.module if hasattr(model, "module") else model
        # the inference core with predict's defaults (window skipping, precision) and the run's overlap
        settings = settings_for(
            self.config.train.patch,
            cache.config.suv_scale,
            overlap=self.config.train.sw_overlap,
            device=str(self.ctx.device),
        )
        scores, scores_all = [], []
        for case_id in tqdm(val_ids, desc="validate", unit="case", leave=False, disable=not self.progress):
            data = cache.load(case_id)
            probabilities = predict_probabilities(net, data["ct"], data["pet"], settings)
            pred = probabilities_to_label(probabilities).numpy() > 0
            gt = data["label"][0] > 0
            score = dice(pred, gt)
            scores_all.append(score)
            if gt.any():
                scores.append(score)
        net.train()
        chosen = scores or scores_all
        return float(np.mean(chosen)) if chosen else float("nan")

    def _update_best(self, epoch: int, val_dice: float) -> bool:
        """Record ``val_dice`` as the best when it is; returns whether it was."""
        # A Dice of 0 is never "best": a run whose validation never rises above 0 keeps no best.pt, and
        # `predict` then takes last.pt (the most-trained weights) instead of the first validated epoch.
        improved = not math.isnan(val_dice) and val_dice > max(self.state.best, 0.0)
        if improved:
            self.state.best, self.state.best_epoch = val_dice, epoch
        return improved

    # -------------------------------------------------------------------------------------- record
    def save_checkpoint(self, improved: bool) -> None:
        """``last.pt`` after every epoch; ``best.pt`` too when validation improved or the run has none."""
        s = self.state
        saved = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_seconds": s.train_seconds,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": s.epoch,
            "step": s.step,
            "best_metric": s.best,
            "best_epoch": s.best_epoch,
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }
        write_checkpoint(saved, self.last_path)
        if improved or not self.validating:
            write_checkpoint(saved, self.out_dir / "best.pt")

    def log_epoch(self, record: EpochRecord) -> None:
        """One epoch into ``metrics.csv``, TensorBoard and the log."""
        row = {
            "epoch": record.epoch,
            "step": self.state.step,
            "train_loss": f"{record.train_loss:.5f}",
            "val_dice": "" if math.isnan(record.val_dice) else f"{record.val_dice:.5f}",
            "lr": f"{record.lr:.3g}",
            "epoch_seconds": f"{record.seconds:.1f}",
        }
        self._append_log(row)
        if self.board is not None:
            self.board.add_scalar("train/loss", record.train_loss, record.epoch)
            self.board.add_scalar("train/lr", record.lr, record.epoch)
            if not math.isnan(record.val_dice):
                self.board.add_scalar("val/dice", record.val_dice, record.epoch)
        self.log(
            f"epoch {record.epoch}: loss {record.train_loss:.4f}, val Dice {row['val_dice'] or '-'}, "
            f"{row['epoch_seconds']} s" + (" (best)" if record.improved else "")
        )

    def _append_log(self, row: dict) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
