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
import math
import sys
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
from h2aseg.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
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
    seconds: float


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel: all parameters updated in one pass (CPU and CUDA; ~6 % of a small CPU step)."""
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 100_003 + epoch * 1_009 + rank * 7_919) % (2**31 - 1)


class Trainer:
    """Train ``config.model`` on ``config.data`` into ``out_dir`` (see the module docstring)."""

    def __init__(self, config: RunConfig, out_dir: Path, resume: bool = False, progress: bool = True) -> None:
        self.config, self.out_dir, self.resume, self.progress = config, Path(out_dir), resume, progress
        self.skipped: list[str] = []  # one line per study left out (discovery or preprocessing), as `check` prints
        self.ctx = dist_utils.init_distributed(config.train.device)
        train = config.train
        if train.batch < 1 or train.samples_per_volume < 1 or train.epochs < 1:
            raise ConfigError("batch, samples_per_volume and epochs must all be at least 1")
        self.volumes_per_step = max(1, math.ceil(train.batch / train.samples_per_volume))
        # --amp: fp16 + gradient scaling on CUDA; bf16 on CPUs with native bf16 (AVX512-BF16/AMX), for "on"
        self.amp_dtype = training_autocast_dtype(train.amp, self.ctx.device)
        self.amp = self.amp_dtype is not None

    # ------------------------------------------------------------------------------------------ data
    def log(self, message: str) -> None:
        if self.ctx.is_main:
            tqdm.write(message, file=sys.stderr)

    def _prepare_data(self) -> tuple[PreprocessedCache, list[str], list[str]]:
        data = self.config.data
        if not data.root:
            raise ConfigError("no dataset given: pass --data DIR")
        discovery = discover_cases(Path(data.root), data.layout, require_labels=True,
                                   ct_channel=data.ct_channel, pet_channel=data.pet_channel)
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
        transform = train_transforms(t.patch, t.samples_per_volume, t.rotate_prob, t.rotate_degrees, hot,
                                     lesion_offset=t.lesion_offset)
        dataset = PatchDataset(cache, train_ids, transform)
        sampler = (
            DistributedSampler(dataset, self.ctx.world_size, self.ctx.rank, shuffle=True, seed=t.seed)
            if self.ctx.enabled else None
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

    # ----------------------------------------------------------------------------------------- model
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

    @property
    def _budget_seconds(self) -> float | None:
        """The run's time budget (``max_minutes``) in seconds, None without one."""
        minutes = self.config.train.max_minutes
        return 60.0 * minutes if minutes else None

    def _set_learning_rate(self, optimizer, epoch: int, train_seconds: float) -> float:
        t = self.config.train
        lr = learning_rate(t.lr_schedule, t.lr, epoch, t.epochs, t.lr_decay, train_seconds, self._budget_seconds)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call: DDP when distributed, then torch.compile when asked."""
        wrapped = model
        if self.ctx.enabled:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        if self.config.train.compile:
            wrapped = torch.compile(wrapped, backend=self.config.train.compile)
        return wrapped

    # ---------------------------------------------------------------------------------------- phases
    def _train_epoch(self, model, loader, transform, optimizer, scaler, loss_fn, epoch, deadline) -> tuple[float, int, bool]:
        t = self.config.train
        seed = epoch_seed(t.seed, epoch, self.ctx.rank)
        torch.manual_seed(seed)
        transform.set_random_state(seed=seed)
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        steps = t.steps_per_epoch or len(loader)
        model.train()
        losses, timed_out = [], False
        bar = tqdm(total=steps, desc=f"epoch {epoch}/{t.epochs}", unit="step", disable=not (self.progress and self.ctx.is_main),
                   leave=False, dynamic_ncols=True)
        iterator = iter(loader)
        for _ in range(steps):
            try:
                batch = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                batch = next(iterator)
            ct, pet, label = (batch[k].to(self.ctx.device, non_blocking=True) for k in ("ct", "pet", "label"))
            if t.channels_last:
                ct, pet = (x.contiguous(memory_format=torch.channels_last_3d) for x in (ct, pet))
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.ctx.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outputs = model(ct, pet)
            loss = loss_fn([o.float() for o in outputs] if isinstance(outputs, (list, tuple)) else outputs.float(), label)
            if not torch.isfinite(loss):
                raise DataError(f"training loss became {loss.item()} at epoch {epoch}: lower --lr or check the data")
            scaler.scale(loss).backward()
            if t.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
            if deadline is not None and self._out_of_time(deadline):
                timed_out = True
                break
        bar.close()
        return float(np.mean(losses)) if losses else float("nan"), len(losses), timed_out

    def _out_of_time(self, deadline: float) -> bool:
        """Whether the time budget is spent; under DDP rank 0 decides for all, so no rank waits alone."""
        return dist_utils.broadcast_flag(self.ctx, time.monotonic() > deadline)

    @torch.no_grad()
    def _validate(self, model, cache, val_ids) -> float:
        net = model.module if hasattr(model, "module") else model
        # the inference core with predict's defaults (window skipping, precision) and the run's overlap
        settings = settings_for(self.config.train.patch, cache.config.suv_scale, overlap=self.config.train.sw_overlap,
                                device=str(self.ctx.device))
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

    # ----------------------------------------------------------------------------------------- run
    def _tensorboard(self):
        """A TensorBoard writer in RUN_DIR/tensorboard when the ``tensorboard`` extra is installed."""
        if not self.ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))

    def _append_log(self, row: dict) -> None:
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def fit(self) -> TrainResult:
        started = time.monotonic()
        t = self.config.train
        self.out_dir.mkdir(parents=True, exist_ok=True)
        last_path = self.out_dir / "last.pt"
        if self.ctx.is_main:
            if last_path.exists() and not self.resume:
                raise ConfigError(f"{self.out_dir} already holds a run (last.pt): pass --resume to continue it or choose another --out")
            self.config.save(self.out_dir / "config.yaml")
        cache, train_ids, val_ids = self._prepare_data()
        self.log(f"{len(train_ids)} training and {len(val_ids)} validation cases; "
                 f"{self.config.model.name} on {self.ctx.device} (world size {self.ctx.world_size})")
        model, optimizer, scaler = self._build()
        start_epoch, step, best, best_epoch, train_seconds = 0, 0, -math.inf, 0, 0.0
        if self.resume and last_path.exists():
            state = load_checkpoint(last_path, map_location=self.ctx.device)
            if state["config"]["model"]["name"] != self.config.model.name:
                raise ConfigError(f"{last_path} was trained as {state['config']['model']['name']}, not {self.config.model.name}")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            train_seconds = float(state.get("train_seconds", 0.0))
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            start_epoch, step = state["epoch"], state["step"]
            best, best_epoch = state["best_metric"], state["best_epoch"]
            self.log(f"resumed from {last_path} after epoch {start_epoch} (step {step})")
        wrapped = self._wrap(model)
        loader, transform = self._loader(cache, train_ids)
        loss_fn = DeepSupervisionLoss(num_classes_for(self.config), t.deep_supervision_weights, kind=t.loss)
        # One clock for the time budget and the schedule: seconds trained = earlier sessions' + this one's,
        # so a resumed run gets what its earlier sessions left over and poly reaches 0 at the deadline.
        budget, earlier_seconds, session_start = self._budget_seconds, train_seconds, time.monotonic()
        deadline = session_start + max(0.0, budget - earlier_seconds) if budget else None
        board = self._tensorboard()
        stopped_by, epoch, epochs_run = "epochs", start_epoch, 0
        validating = bool(val_ids) and t.val_every > 0
        for epoch in range(start_epoch + 1, t.epochs + 1):
            epoch_start = time.monotonic()
            lr = self._set_learning_rate(optimizer, epoch, train_seconds)
            train_loss, n_steps, timed_out = self._train_epoch(
                wrapped, loader, transform, optimizer, scaler, loss_fn, epoch, deadline
            )
            step += n_steps
            last = timed_out or epoch == t.epochs
            val_dice = float("nan")
            if self.ctx.is_main and validating and (epoch % t.val_every == 0 or last):
                val_dice = self._validate(model, cache, val_ids)
            val_dice = dist_utils.broadcast_object(self.ctx, val_dice)
            # Rank 0's clock decides, so every rank sets the same learning rate next epoch.
            train_seconds = dist_utils.broadcast_object(self.ctx, earlier_seconds + time.monotonic() - session_start)
            # A Dice of 0 is never "best": a run whose validation never rises above 0 keeps no best.pt, and
            # `predict` then takes last.pt (the most-trained weights) instead of the first validated epoch.
            improved = not math.isnan(val_dice) and val_dice > max(best, 0.0)
            if improved:
                best, best_epoch = val_dice, epoch
            if self.ctx.is_main:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "train_seconds": train_seconds,
                    "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                    "epoch": epoch,
                    "step": step,
                    "best_metric": best,
                    "best_epoch": best_epoch,
                    "rng": rng_state(),
                    "config": self.config.to_dict(),
                }
                save_checkpoint(state, last_path)
                if improved or not validating:
                    save_checkpoint(state, self.out_dir / "best.pt")
                row = {"epoch": epoch, "step": step, "train_loss": f"{train_loss:.5f}",
                       "val_dice": "" if math.isnan(val_dice) else f"{val_dice:.5f}", "lr": f"{lr:.3g}",
                       "epoch_seconds": f"{time.monotonic() - epoch_start:.1f}"}
                self._append_log(row)
                if board is not None:
                    board.add_scalar("train/loss", train_loss, epoch)
                    board.add_scalar("train/lr", lr, epoch)
                    if not math.isnan(val_dice):
                        board.add_scalar("val/dice", val_dice, epoch)
                self.log(f"epoch {epoch}: loss {train_loss:.4f}, val Dice {row['val_dice'] or '-'}, "
                         f"{row['epoch_seconds']} s" + (" (best)" if improved else ""))
            dist_utils.barrier(self.ctx)
            epochs_run += 1
            if timed_out:
                stopped_by = "time budget"
                break
        if board is not None:
            board.close()
        if validating and self.ctx.is_main and not best > 0.0:
            self.log("validation Dice never rose above 0: no best.pt was written; predict will use last.pt")
        result = TrainResult(epochs_run, epoch, best if best > -math.inf else float("nan"), best_epoch, stopped_by,
                             round(time.monotonic() - started, 1))
        digests = dist_utils.gather_digests(self.ctx, model)
        if self.ctx.is_main:
            summary = {**result.__dict__, "world_size": self.ctx.world_size, "parameter_digests": digests}
            if math.isnan(summary["best_metric"]):
                summary["best_metric"] = None  # strict JSON has no NaN
            atomic_write_text(self.out_dir / "train_summary.json", json.dumps(summary, indent=2))
        dist_utils.cleanup(self.ctx)
        return result

