"""One config object for a run: data, model and training settings, with YAML in and out.

Defaults are the paper's protocol (Sec. 3.1; DESIGN.md §3): Adam, lr 1e-4, weight decay 1e-5, 200
epochs, batch 2, patch 128×128×64, lr × 0.99 per epoch, RandCropByPosNegLabel with 2 samples per volume,
axial rotation ±45° with p = 0.8. A run folder keeps the resolved config as ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from h2aseg.atomic import atomic_write_text
from h2aseg.errors import ConfigError


@dataclass
class DataConfig:
    """Where the cases are and how they are put on one grid.

    ``root``: dataset folder (or manifest file); ``layout``: autopet | hecktor | nnunet | manifest | auto;
    ``cache_dir``: preprocessed arrays (default ``<run>/cache``); ``target_spacing``: mm or None for the
    PET grid; ``label_mode``: binary | multiclass; ``splits_seed``: seed of the 6:2:2 patient split.
    """

    root: str = ""
    layout: str = "auto"
    cache_dir: str | None = None
    target_spacing: list[float] | None = None
    label_mode: str = "binary"
    splits_seed: int = 0


@dataclass
class ModelConfig:
    """A registered network and the keywords passed to its factory (e.g. ``channels``)."""

    name: str = "h2aseg"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation and schedule.

    ``batch`` counts patches per optimizer step; each loaded volume gives ``samples_per_volume``
    patches, so a step reads ``ceil(batch / samples_per_volume)`` volumes. An epoch is one pass over
    the training volumes unless ``steps_per_epoch`` is set. ``val_every`` = 0 never validates (``best.pt``
    is then the last epoch). ``max_minutes`` stops a run by wall time
    (it still validates and saves at the end). ``grad_clip`` caps the gradient norm (None: no clipping, as
    the paper; nnU-Net uses 12). ``channels_last`` stores activations as (B, H, W, D, C), which makes
    oneDNN's 3-D convolutions faster on CPUs (same results up to rounding). ``hot_negatives_suv``
    (not in the paper; None keeps its pos 1 / neg 1 crops) also centres negative crops on PET-avid
    non-lesion tissue at or above this SUV (lesion : body : hot = 2 : 1 : 1). ``amp``: auto (on for CUDA) | on | off.
    ``lr_schedule``: ``exponential`` (``lr · lr_decay^epoch``) or ``poly`` (nnU-Net's, to 0 at the last
    epoch or at the end of ``max_minutes``, whichever comes first); see :mod:`h2aseg.training.schedule`.
    ``protocol`` records the named preset the run started from (:mod:`h2aseg.training.protocols`).
    ``compile`` names a ``torch.compile`` backend (``inductor`` fuses normalisation, activation and
    element-wise work into generated kernels) for the training forward/backward; None runs eager PyTorch.
    Validation and checkpoints always use the plain module, so checkpoints load without compiling.
    """

    protocol: str = "paper"
    epochs: int = 200
    steps_per_epoch: int | None = None
    batch: int = 2
    patch: list[int] = field(default_factory=lambda: [128, 128, 64])
    samples_per_volume: int = 2
    lr: float = 1e-4
    weight_decay: float = 1e-5
    lr_decay: float = 0.99
    lr_schedule: str = "exponential"
    seed: int = 0
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    val_every: int = 1
    sw_overlap: float = 0.25
    max_minutes: float | None = None
    grad_clip: float | None = None
    channels_last: bool = False
    compile: str | None = None
    hot_negatives_suv: float | None = None
    rotate_prob: float = 0.8
    rotate_degrees: float = 45.0
    deep_supervision_weights: list[float] = field(default_factory=lambda: [5.0, 4.0, 3.0, 2.0, 1.0])


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> RunConfig:
        return _from_dict(cls, raw, "config")

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
        return cls.from_dict(raw)


def _from_dict(cls, raw: dict, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}")
    values = {}
    for name, value in raw.items():
        default = getattr(cls(), name) if name in known else None
        values[name] = _from_dict(type(default), value, f"{where}.{name}") if is_dataclass(default) else value
    return cls(**values)
