"""One config object for a run: data, model and training settings, with YAML in and out.

Defaults are the paper's protocol (Sec. 3.1; docs/architecture.md §3): Adam, lr 1e-4, weight decay 1e-5, 200
epochs, batch 2, patch 128×128×64, lr × 0.99 per epoch, RandCropByPosNegLabel with 2 samples per volume,
axial rotation ±45° with p = 0.8. A run folder keeps the resolved config as ``config.yaml``.

Validation (one check for the CLI, ``--config`` files, protocols and the Python API): every assignment to
a field — the dataclass constructor, :meth:`RunConfig.from_dict`, ``config.train.lr = ...`` — converts
the value to the field's annotated type or refuses it, and checks the field's choices and range
(:data:`CHOICES`, :data:`RANGES`, :data:`LENGTHS`; fields added later are converted from their annotation
without further edits). YAML 1.1 reads ``1e-4`` (no dot) as text; it is converted to 0.0001 here.
Unknown keys are refused with the closest valid name. Every refusal is one :class:`ConfigError` line
naming the key, e.g. ``train.epochs: must be >= 1, got -3``.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from h2aseg.atomic import atomic_write_text
from h2aseg.errors import ConfigError


def _layouts() -> tuple[str, ...]:
    from h2aseg.data.layouts import LAYOUTS

    return tuple(LAYOUTS)


def _schedules() -> tuple[str, ...]:
    from h2aseg.training.schedule import SCHEDULES

    return tuple(SCHEDULES)


def _protocols() -> tuple[str, ...]:
    from h2aseg.training.protocols import PROTOCOLS  # imported late: protocols imports this module

    return tuple(PROTOCOLS)


def _losses() -> tuple[str, ...]:
    from h2aseg.training.losses import LOSS_KINDS

    return tuple(LOSS_KINDS)


def _content_checks() -> tuple[str, ...]:
    from h2aseg.data.content import CONTENT_CHECKS

    return (*CONTENT_CHECKS, "all")


#: Fields whose value (or, for lists, every element) must be one of a set of names.
CHOICES: dict[str, Callable[[], tuple[str, ...]]] = {
    "data.layout": _layouts,
    "data.label_mode": lambda: ("binary", "multiclass"),
    "data.skip_content_checks": _content_checks,
    "train.amp": lambda: ("auto", "on", "off"),
    "train.lr_schedule": _schedules,
    "train.protocol": _protocols,
    "train.loss": _losses,
}


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``lo`` ≤ value ≤ ``hi`` (strict where ``*_open``); None = unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def text(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {self.hi:g}")
        return " and ".join(parts)

    def holds(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


_POSITIVE, _NON_NEGATIVE, _AT_LEAST_1 = Range(0, lo_open=True), Range(0), Range(1)
_UNIT = Range(0, 1)

#: Numeric ranges; for list fields every element is checked. None (where the type allows it) always passes.
RANGES: dict[str, Range] = {
    "data.target_spacing": _POSITIVE,
    "data.ct_channel": _NON_NEGATIVE,
    "data.pet_channel": _NON_NEGATIVE,
    "data.max_voxels": _AT_LEAST_1,
    "train.epochs": _AT_LEAST_1,
    "train.steps_per_epoch": _AT_LEAST_1,
    "train.batch": _AT_LEAST_1,
    "train.patch": _AT_LEAST_1,
    "train.samples_per_volume": _AT_LEAST_1,
    "train.lr": _NON_NEGATIVE,
    "train.weight_decay": _NON_NEGATIVE,
    "train.lr_decay": Range(0, lo_open=True),
    "train.seed": _NON_NEGATIVE,
    "train.num_workers": _NON_NEGATIVE,
    "train.val_every": _NON_NEGATIVE,
    "train.sw_overlap": Range(0, 1, hi_open=True),
    "train.max_minutes": _POSITIVE,
    "train.grad_clip": _POSITIVE,
    "train.hot_negatives_suv": _NON_NEGATIVE,
    "train.rotate_prob": _UNIT,
    "train.rotate_degrees": Range(0, 180),
    "train.lesion_offset": _UNIT,
    "train.deep_supervision_weights": _NON_NEGATIVE,
    "data.splits_seed": _NON_NEGATIVE,
}

#: Lists of a fixed length.
LENGTHS: dict[str, int] = {"data.target_spacing": 3, "train.patch": 3}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert_scalar(value: Any, kind: type, key: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {_show(value)}")
    if kind in (int, float):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip()) if kind is float else int(value.strip())
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{key}: expected {what}, got {_show(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
        if kind is int:
            if number != int(number):
                raise ConfigError(f"{key}: expected a whole number, got {_show(value)}")
            return int(number)
        return float(number)
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool) and key in CHOICES and "on" in CHOICES[key]():
            return "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
        raise ConfigError(f"{key}: expected text, got {_show(value)}")
    if isinstance(value, kind):
        return value
    raise ConfigError(f"{key}: expected {kind.__name__}, got {_show(value)}")


def _convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` as type ``hint`` (a field annotation), or a ConfigError naming ``key``."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if value is None:
        raise ConfigError(f"{key}: a value is required, got nothing (null)")
    if is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return _from_dict(hint, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {_show(value)}")
        return dict(value)
    return _convert_scalar(value, hint, key)


def _check_rules(key: str, value: Any) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    if key in LENGTHS and len(items) != LENGTHS[key]:
        raise ConfigError(f"{key}: expected {LENGTHS[key]} values, got {len(items)} ({_show(value)})")
    if key in CHOICES and items:
        allowed = CHOICES[key]()
        for item in items:
            if item not in allowed:
                close = difflib.get_close_matches(str(item), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"{key}: {item!r} is not one of {', '.join(allowed)}{hint}")
    rule = RANGES.get(key)
    if rule is not None:
        for item in items:
            if not rule.holds(item):
                raise ConfigError(f"{key}: must be {rule.text()}, got {_show(value)}")


def _unknown(key: str, name: str, known: typing.Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(known)}"
    return ConfigError(f"{key}: unknown setting; {hint}")


_HINTS: dict[type, dict[str, Any]] = {}


class _Validated:
    """Mixin for the config dataclasses: every assignment to a field is converted and checked."""

    _section: ClassVar[str] = ""

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if cls not in _HINTS:
            hints = typing.get_type_hints(cls)
            _HINTS[cls] = {f.name: hints[f.name] for f in fields(cls)}
        key = f"{self._section}.{name}" if self._section else name
        if name not in _HINTS[cls]:
            if name.startswith("_"):
                object.__setattr__(self, name, value)
                return
            raise _unknown(key, name, _HINTS[cls])
        value = _convert(value, _HINTS[cls][name], key)
        _check_rules(key, value)
        object.__setattr__(self, name, value)


@dataclass
class DataConfig(_Validated):
    """Where the cases are and how they are put on one grid.

    ``root``: dataset folder (or manifest file); ``layout``: autopet | hecktor | nnunet | manifest | auto;
    ``cache_dir``: preprocessed arrays (default ``<run>/cache``); ``target_spacing``: mm or None for the
    PET grid; ``label_mode``: binary | multiclass; ``splits_seed``: seed of the 6:2:2 patient split;
    ``ct_channel``/``pet_channel``: nnU-Net channel numbers of CT and PET (None: from ``dataset.json`` or the
    image content); ``skip_content_checks``: content checks to skip for unusual data (names in
    :data:`h2aseg.data.content.CONTENT_CHECKS`, or ``all``); ``max_voxels``: largest image a header may
    declare (None: :data:`h2aseg.data.io.MAX_VOXELS`).
    """

    root: str = ""
    layout: str = "auto"
    cache_dir: str | None = None
    target_spacing: list[float] | None = None
    label_mode: str = "binary"
    splits_seed: int = 0
    ct_channel: int | None = None
    pet_channel: int | None = None
    skip_content_checks: list[str] = field(default_factory=list)
    max_voxels: int | None = None

    _section: ClassVar[str] = "data"


@dataclass
class ModelConfig(_Validated):
    """A registered network and the keywords passed to its factory (e.g. ``channels``)."""

    name: str = "h2aseg"
    options: dict[str, Any] = field(default_factory=dict)

    _section: ClassVar[str] = "model"


@dataclass
class TrainConfig(_Validated):
    """Optimisation and schedule.

    ``batch`` counts patches per optimizer step; each loaded volume gives ``samples_per_volume``
    patches, so a step reads ``ceil(batch / samples_per_volume)`` volumes. An epoch is one pass over
    the training volumes unless ``steps_per_epoch`` is set. ``val_every`` = 0 never validates (``best.pt``
    is then the last epoch). ``max_minutes`` stops a run by wall time
    (it still validates and saves at the end). ``grad_clip`` caps the gradient norm (None: no clipping, as
    the paper; nnU-Net uses 12). ``channels_last`` stores activations as (B, H, W, D, C), which makes
    oneDNN's 3-D convolutions faster on CPUs (same results up to rounding). ``hot_negatives_suv``
    (not in the paper; None keeps its pos 1 / neg 1 crops) also centres negative crops on PET-avid
    non-lesion tissue at or above this SUV (lesion : body : hot = 2 : 1 : 1). ``amp``: auto (on for CUDA) | on
    (CUDA: fp16; CPU: bf16 where it has AVX512-BF16/AMX) | off.
    ``lr_schedule``: ``exponential`` (``lr · lr_decay^epoch``) or ``poly`` (nnU-Net's, to 0 at the last
    epoch or at the end of ``max_minutes``, whichever comes first); see :mod:`h2aseg.training.schedule`.
    ``lesion_offset`` (not in the paper, which leaves crop placement open; the release centres crops, 0)
    puts a crop's chosen lesion voxel anywhere within ±lesion_offset·(patch/2 − 1) voxels of the patch centre
    (0.5 chosen by validation Dice on a small-lesion cohort: 0.38 against 0.27 centred and 0.20 at 1.0,
    ``benchmarks/results/small_lesions.md``),
    so the network cannot learn "lesion = patch centre" (see :func:`h2aseg.data.transforms.train_transforms`).
    ``keep_lesion_whole`` (with ``lesion_offset`` > 0) moves a lesion only as far as it stays whole inside
    the patch, so large lesions are not cut by the patch border
    (:class:`h2aseg.data.transforms.LesionKeepingCropd`); measured no better than the plain offset on a
    large-lesion cohort (``benchmarks/results/small_lesions.md`` §5.3), so off.
    ``sw_overlap``: validation's sliding-window overlap (None: the inference core's default,
    :data:`h2aseg.inference.core.DEFAULT_OVERLAP`, as ``predict`` and the benchmark).
    ``protocol`` records the named preset the run started from (:mod:`h2aseg.training.protocols`).
    ``loss``: ``paper`` (Eq. 5's BCE + Dice) or ``release`` (the release's softmax CE + Dice with background;
    :data:`h2aseg.training.losses.LOSS_KINDS`).
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
    sw_overlap: float | None = None
    max_minutes: float | None = None
    grad_clip: float | None = None
    channels_last: bool = False
    compile: str | None = None
    hot_negatives_suv: float | None = None
    rotate_prob: float = 0.8
    rotate_degrees: float = 45.0
    lesion_offset: float = 0.5
    keep_lesion_whole: bool = False
    deep_supervision_weights: list[float] = field(default_factory=lambda: [5.0, 4.0, 3.0, 2.0, 1.0])
    loss: str = "paper"

    _section: ClassVar[str] = "train"


@dataclass
class RunConfig(_Validated):
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
        """Read a YAML config; a bad value or key is one ConfigError line naming the file and the key."""
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot read config {path}: {first}") from None
        try:
            return cls.from_dict(raw)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None


def _from_dict(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping; unknown keys are refused with the closest valid name."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {_show(raw)}")
    known = [f.name for f in fields(cls)]
    prefix = f"{where}." if where != "config" else ""
    for name in raw:
        if name not in known:
            raise _unknown(f"{prefix}{name}", str(name), known)
    return cls(**raw)
