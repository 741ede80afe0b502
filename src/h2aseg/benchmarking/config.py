"""The benchmark file: one dataset and split, a list of models, seeds, shared training settings.

A benchmark file is YAML with these sections (unknown keys are an error)::

    title: "CPU benchmark (synthetic AutoPET-like cohort)"
    dataset:
      name: AutoPET-like          # column-group title in Table 1
      root: data/autopet          # relative paths are relative to the output folder (see below)
      layout: autopet             # autopet | hecktor | nnunet | manifest | auto
      label_mode: binary          # binary | multiclass
      target_spacing: null        # mm, or null for the PET grid
      splits_seed: 0              # seed of the patient-grouped 6:2:2 split, shared by every run
      cache_dir: null             # preprocessed arrays; default <out>/cache (one cache for all runs)
      synthetic:                  # optional: generate the cohort into `root` when it is not there
        kind: autopet             # autopet | hecktor (h2aseg.data.synthetic.generate_cohort)
        cases: 36
        seed: 0
        options: {}               # generate_cohort size options (pet_shape, ...)
    seeds: [0, 1]
    steps:                        # optional: every run trains the same number of optimizer steps
      total: 1500                 # -> train.epochs = total / per_epoch
      per_epoch: 50               # -> train.steps_per_epoch (the learning rate and last.pt move per epoch)
      validate_every: 100         # -> train.val_every = validate_every / per_epoch (the learning curves)
    train: {...}                  # TrainConfig fields shared by every run (seed is set per run)
    predict: {overlap: null, mirror: false}  # overlap null: the inference core's default
    models:
      - name: unet3d              # registry name
        id: unet3d                # run-folder name and --only key (default: name); unique
        label: UNet-3D            # row title (default: the registry name's paper title)
        options: {channels: [8, 16, 32, 64]}
        protocol: null            # a named training protocol for this row (h2aseg.training.protocols)
        train: {max_minutes: 2.5} # per-model TrainConfig overrides
    threshold_methods: [suv2.5, suv41]

Relative paths (``dataset.root``, ``dataset.cache_dir``) are resolved against the benchmark's output
folder, so a shipped file works from any working directory; absolute paths are taken as they are.

A row's training settings are, in order of precedence: its own ``train``, its ``protocol``'s settings
(e.g. ``release`` for ``h2aseg_release`` rows trained as the authors did), the file's shared ``train``;
the protocol's network keywords go under the row's ``options``. With a ``steps`` section the step
count is the file's alone: it sets ``epochs``, ``steps_per_epoch`` and ``val_every`` of every run and no
time budget (``max_minutes``), and a ``train`` section (shared or a row's) that sets one of those is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from h2aseg.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from h2aseg.errors import ConfigError

__all__ = [
    "BenchmarkConfig",
    "DatasetSpec",
    "ModelSpec",
    "PredictSpec",
    "StepsSpec",
    "SyntheticSpec",
    "load_benchmark_config",
]


@dataclass
class SyntheticSpec:
    """A phantom cohort written by :func:`h2aseg.data.synthetic.generate_cohort` when ``root`` has none."""

    kind: str = "autopet"
    cases: int = 36
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetSpec:
    """The one dataset and split of a benchmark (see the module docstring for each key)."""

    name: str = "dataset"
    root: str = ""
    layout: str = "auto"
    label_mode: str = "binary"
    target_spacing: list[float] | None = None
    splits_seed: int = 0
    cache_dir: str | None = None
    synthetic: SyntheticSpec | None = None


@dataclass
class ModelSpec:
    """One row of the benchmark: a registered network, its options and per-model training overrides."""

    name: str
    id: str = ""
    label: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None

    def __post_init__(self) -> None:
        self.id = self.id or self.name


@dataclass
class PredictSpec:
    """Sliding-window settings used to predict the test split (overlap None: the inference core's default)."""

    overlap: float | None = None
    mirror: bool = False


@dataclass
class StepsSpec:
    """Equal optimizer steps for every run: ``total`` steps in epochs of ``per_epoch`` steps, validation every
    ``validate_every`` steps (0: never; both multiples of ``per_epoch``)."""

    total: int
    per_epoch: int = 50
    validate_every: int = 100

    #: TrainConfig fields this section decides (a ``train`` section may not set them as well).
    FIELDS = ("epochs", "steps_per_epoch", "val_every", "max_minutes")

    def train_fields(self) -> dict[str, Any]:
        return {
            "epochs": self.total // self.per_epoch,
            "steps_per_epoch": self.per_epoch,
            "val_every": self.validate_every // self.per_epoch,
            "max_minutes": None,
        }

    def problem(self) -> str | None:
        """What is wrong with these numbers, or None."""
        numbers = (self.total, self.per_epoch, self.validate_every)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
            return f"steps: total, per_epoch and validate_every must be whole numbers, got {numbers}"
        if self.total < 1 or self.per_epoch < 1 or self.validate_every < 0:
            return f"steps: total and per_epoch must be >= 1 and validate_every >= 0, got {numbers}"
        if self.total % self.per_epoch or self.validate_every % self.per_epoch:
            return (
                f"steps: total ({self.total}) and validate_every ({self.validate_every}) must be "
                f"multiples of per_epoch ({self.per_epoch})"
            )
        return None


@dataclass
class BenchmarkConfig:
    """A parsed benchmark file (see the module docstring)."""

    title: str = "Benchmark"
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: StepsSpec | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictSpec = field(default_factory=PredictSpec)
    models: list[ModelSpec] = field(default_factory=list)
    threshold_methods: list[str] = field(default_factory=list)
    source: str = ""

    # ------------------------------------------------------------------------------------- queries
    def model(self, model_id: str) -> ModelSpec:
        for spec in self.models:
            if spec.id == model_id:
                return spec
        raise ConfigError(f"{self.source}: no model with id {model_id!r}")

    def run_ids(self) -> list[str]:
        """Every model id, then every threshold method (the names ``--only`` accepts)."""
        return [m.id for m in self.models] + list(self.threshold_methods)

    def resolve(self, path: str, out_dir: Path) -> Path:
        """``path`` as an absolute path: relative paths are relative to ``out_dir``."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(out_dir) / p

    def run_config(self, spec: ModelSpec, seed: int, root: Path, cache_dir: Path) -> RunConfig:
        """The :class:`RunConfig` of one (model, seed) run: shared ``train``, the row's protocol and
        overrides, ``seed``, and the ``steps`` section's epochs."""
        from h2aseg.training.protocols import PROTOCOLS

        protocol = PROTOCOLS[spec.protocol] if spec.protocol else None
        preset = protocol.train if protocol else {}
        train = {**asdict(self.train), **preset, **spec.train, "seed": int(seed)}
        if self.steps is not None:
            train.update(self.steps.train_fields())
        if protocol:
            train["protocol"] = protocol.name
        options = {**(protocol.model_options(spec.name) if protocol else {}), **spec.options}
        ds = self.dataset
        return RunConfig(
            data=DataConfig(
                root=str(root),
                layout=ds.layout,
                cache_dir=str(cache_dir),
                target_spacing=list(ds.target_spacing) if ds.target_spacing else None,
                label_mode=ds.label_mode,
                splits_seed=ds.splits_seed,
            ),
            model=ModelConfig(name=spec.name, options=options),
            train=TrainConfig(**train),
        )

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("source")
        return out


# ----------------------------------------------------------------------------------------- parsing
def _mapping(raw: Any, where: str, source: str) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}; fix the file")
    return raw


def _build(cls, raw: Any, where: str, source: str, nested: dict[str, type] | None = None):
    raw = dict(_mapping(raw, where, source))
    known = {f.name for f in fields(cls)} - {"source"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) in {where}: {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    for key, sub in (nested or {}).items():
        if raw.get(key) is not None:
            raw[key] = _build(sub, raw[key], f"{where}.{key}", source)
    try:
        return cls(**raw)
    except TypeError as err:
        raise ConfigError(f"{source}: {where} is incomplete ({err}); fix the file") from None


def _train_config(raw: Any, where: str, source: str) -> TrainConfig:
    raw = _mapping(raw, where, source)
    try:
        return RunConfig.from_dict({"train": raw}).train
    except ConfigError as err:
        raise ConfigError(f"{source}: {where}: {err}; see h2aseg.config.TrainConfig for the fields") from None


def _check_steps_owned(steps: StepsSpec | None, train: Any, where: str, source: str) -> None:
    """With a ``steps`` section, a ``train`` section may not set the fields it decides."""
    if steps is None or not isinstance(train, dict):
        return
    clash = [key for key in StepsSpec.FIELDS if key in train]
    if clash:
        raise ConfigError(
            f"{source}: {where} sets {', '.join(clash)}, which the steps section decides for "
            "every run; remove them (or the steps section)"
        )


def parse_benchmark_config(raw: Any, source: str = "<benchmark>") -> BenchmarkConfig:
    """Build and check a :class:`BenchmarkConfig` from a parsed YAML mapping.

    Raises:
        ConfigError: one line naming ``source`` and what is wrong (unknown key, unknown model or
            threshold method, duplicate model id, no seed, bad synthetic kind, a step count that does not
            divide into epochs, a ``train`` section that sets what ``steps`` decides).
    """
    from h2aseg.data.layouts import LAYOUTS
    from h2aseg.data.synthetic import KINDS
    from h2aseg.models.baselines.threshold import THRESHOLD_METHODS
    from h2aseg.models.registry import get_entry
    from h2aseg.training.protocols import PROTOCOLS

    raw = dict(_mapping(raw, "the file", source))
    allowed = {f.name for f in fields(BenchmarkConfig)} - {"source"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    dataset = _build(DatasetSpec, raw.get("dataset"), "dataset", source, {"synthetic": SyntheticSpec})
    if dataset.layout not in LAYOUTS:
        raise ConfigError(f"{source}: dataset.layout {dataset.layout!r} is not one of {', '.join(LAYOUTS)}")
    if dataset.synthetic is not None and dataset.synthetic.kind not in KINDS:
        raise ConfigError(
            f"{source}: dataset.synthetic.kind {dataset.synthetic.kind!r} is not one of {', '.join(KINDS)}"
        )
    if not dataset.root and dataset.synthetic is None:
        raise ConfigError(
            f"{source}: dataset.root is empty; give the dataset folder (or a synthetic section)"
        )
    if not dataset.root:
        dataset.root = f"data/{dataset.synthetic.kind}"
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{source}: seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds {seeds} repeat a value; list each seed once")
    steps = _build(StepsSpec, raw.get("steps"), "steps", source) if raw.get("steps") is not None else None
    if steps is not None and steps.problem():
        raise ConfigError(f"{source}: {steps.problem()}; fix the file")
    _check_steps_owned(steps, raw.get("train"), "train", source)
    models_raw = raw.get("models") or []
    if not isinstance(models_raw, list):
        raise ConfigError(f"{source}: models must be a list of mappings with at least a name")
    models = []
    for i, item in enumerate(models_raw):
        if isinstance(item, str):
            item = {"name": item}
        spec = _build(ModelSpec, item, f"models[{i}]", source)
        try:
            get_entry(spec.name)
        except ConfigError as err:
            raise ConfigError(f"{source}: models[{i}]: {err}") from None
        _train_config({**spec.train}, f"models[{i}] ({spec.id}).train", source)
        _check_steps_owned(steps, spec.train, f"models[{i}] ({spec.id}).train", source)
        if spec.protocol is not None and spec.protocol not in PROTOCOLS:
            raise ConfigError(
                f"{source}: models[{i}] ({spec.id}): unknown protocol {spec.protocol!r}; "
                f"choose one of {', '.join(PROTOCOLS)}"
            )
        models.append(spec)
    methods = list(raw.get("threshold_methods") or [])
    for method in methods:
        if method not in THRESHOLD_METHODS:
            raise ConfigError(
                f"{source}: threshold method {method!r} is unknown; "
                f"choose from {', '.join(THRESHOLD_METHODS)}"
            )
    ids = [m.id for m in models] + methods
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(
            f"{source}: run id(s) {', '.join(duplicates)} appear twice; give each model a unique id"
        )
    if not ids:
        raise ConfigError(f"{source}: lists no model and no threshold method; nothing to benchmark")
    return BenchmarkConfig(
        title=str(raw.get("title", "Benchmark")),
        dataset=dataset,
        seeds=list(seeds),
        steps=steps,
        train=_train_config(raw.get("train"), "train", source),
        predict=_build(PredictSpec, raw.get("predict"), "predict", source),
        models=models,
        threshold_methods=methods,
        source=source,
    )


def load_benchmark_config(path: Path) -> BenchmarkConfig:
    """Read a benchmark YAML file (see the module docstring).

    Raises:
        ConfigError: the file is missing, not YAML, or its settings are wrong (one line, naming the file).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read benchmark config {path}: {err.strerror}; check the path") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix the file") from None
    return parse_benchmark_config(raw, str(path))
