"""Whole-volume prediction of cases: read, preprocess, the inference core, back to the original PET grid.

The probabilities come from :func:`h2aseg.inference.core.predict_probabilities` (the one sliding-window
core that validation and the benchmark use too: window skipping, bf16 where the CPU has it, compact
float16 accumulation; mirror TTA flips each window, never the volume). :func:`predict_case` times each
stage (``read+preprocess``, ``network``, ``blend`` = the core's work besides the network, ``restore``,
``write``) and logs them, so the next bottleneck is visible.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
import torch
from tqdm import tqdm

from h2aseg.checkpoint import load_checkpoint
from h2aseg.config import RunConfig
from h2aseg.data.io import from_array, read_pet, to_array, write_image
from h2aseg.data.layouts import Case
from h2aseg.data.preprocess import PreprocessConfig, preprocess_case, restore_to_original
from h2aseg.errors import DataError, H2ASegError
from h2aseg.inference.core import (
    DEFAULT_SKIP_SUV,
    MIRROR_AXES,
    InferenceSettings,
    InferenceStats,
    class_probabilities,
    foreground_from_probabilities,
    predict_probabilities,
    probabilities_to_label,
    settings_for,
)
from h2aseg.inference.precision import PRECISIONS
from h2aseg.models.baselines.threshold import THRESHOLD_METHODS
from h2aseg.models.registry import build_network, num_classes_for, preprocess_config_for

logger = logging.getLogger(__name__)

#: Stages :func:`predict_case` times, in order.
STAGES = ("read+preprocess", "network", "blend", "restore", "write")


@dataclass
class LoadedModel:
    """A network restored from a checkpoint with the settings it was trained with."""

    model: torch.nn.Module
    config: RunConfig
    checkpoint: Path
    preprocess: PreprocessConfig = field(repr=False)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.config.train.patch)  # type: ignore[return-value]


def resolve_checkpoint(path: Path) -> Path:
    """A run folder gives its ``best.pt`` (or ``last.pt``, saying so); a file is taken as it is.

    The trainer writes ``best.pt`` only for a validation Dice above 0, so a run whose validation never
    rose above 0 is predicted with its last weights rather than with its first validated epoch.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "best.pt").is_file():
            return path / "best.pt"
        if (path / "last.pt").is_file():
            logger.warning(
                "%s has no best.pt (validation never rose above Dice 0, or was off): using last.pt", path
            )
            return path / "last.pt"
        raise DataError(
            f"run folder {path} holds no best.pt or last.pt: train first or give a checkpoint file"
        )
    return path


def load_trained_model(
    path: Path, device: torch.device | str = "cpu", channels_last: bool = False
) -> LoadedModel:
    """The network of a run folder or checkpoint, in eval mode on ``device``; ``channels_last`` stores its
    weights channels-last (pair it with ``InferenceSettings.channels_last``; slower for H2ASeg on our CPU,
    see there)."""
    checkpoint = resolve_checkpoint(path)
    state = load_checkpoint(checkpoint)
    config = RunConfig.from_dict(state["config"])
    model = build_network(config)
    model.load_state_dict(state["model"])
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return LoadedModel(model, config, checkpoint, preprocess_config_for(config))


@dataclass
class PredictOptions:
    """How ``predict`` runs; None / 0 fields take the inference core's defaults
    (:mod:`h2aseg.inference.core`).

    ``skip_suv``: windows whose PET maximum stays below this SUV are background without the network
    (None: every window runs, the exhaustive path). ``precision``: auto | fp32 | bf16 | fp16.
    ``batch``: windows per network call (0: sized to the device). ``compile``: a ``torch.compile``
    backend for the network (None: eager). ``timings``: when a dict, each stage's
    seconds (:data:`STAGES`) and the window counts are added to it.
    """

    overlap: float | None = None
    mirror: bool = False
    save_probabilities: bool = False
    file_ending: str = ".nii.gz"
    device: str = "cpu"
    #: writes the label (on the PET grid) in other formats / post-processed, returns the first file written;
    #: None writes ``<case_id><file_ending>`` (see :class:`h2aseg.inference.outputs.LabelWriter`)
    write_label: Callable[[sitk.Image, Case, Path], Path] | None = None
    precision: str = "auto"
    skip_suv: float | None = DEFAULT_SKIP_SUV
    batch: int = 0
    compile: str | None = None
    timings: dict | None = None


#: Fields ``predict`` passes to the inference core by name (the others are the model's or fixed).
SHARED_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(PredictOptions)
    if f.name in {g.name for g in dataclasses.fields(InferenceSettings)}
)


def inference_settings(loaded: LoadedModel, options: PredictOptions) -> InferenceSettings:
    """The core's settings for a loaded network and ``predict`` options: every field of both classes by
    name; None (and a 0 batch) keep the core's default, except ``skip_suv`` where None runs every window."""
    values = {name: getattr(options, name) for name in SHARED_FIELDS}
    values.update(device=str(options.device), batch=options.batch or None)
    settings = settings_for(loaded.patch_size, loaded.preprocess.suv_scale, **values)
    return dataclasses.replace(settings, skip_suv=options.skip_suv)


def _add_time(timings: dict, stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds


def predict_case(loaded: LoadedModel, case: Case, out_dir: Path, options: PredictOptions) -> Path:
    """Predict one case and write ``<out_dir>/<case_id><ending>`` on the case's original PET grid."""
    timings = options.timings if options.timings is not None else {}
    clock = time.perf_counter()
    data = preprocess_case(case, loaded.preprocess)
    _add_time(timings, "read+preprocess", time.perf_counter() - clock)
    stats = InferenceStats()
    probabilities = predict_probabilities(
        loaded.model, data.pop("ct"), data.pop("pet"), inference_settings(loaded, options), stats
    )
    _add_time(timings, "network", stats.network_seconds)
    _add_time(timings, "blend", stats.total_seconds - stats.network_seconds)
    for key in ("windows", "windows_run"):
        timings[key] = timings.get(key, 0) + getattr(stats, key)
    clock = time.perf_counter()
    label = restore_to_original(probabilities_to_label(probabilities).numpy(), data["meta"], is_label=True)
    _add_time(timings, "restore", time.perf_counter() - clock)
    clock = time.perf_counter()
    if options.write_label is not None:
        target = options.write_label(label, case, Path(out_dir))
    else:
        target = Path(out_dir) / f"{case.case_id}{options.file_ending}"
        write_image(label, target)
    if options.save_probabilities:
        # ``probabilities`` are already softmax/sigmoid outputs: the foreground map is taken from them
        # directly (sigmoid channel, or 1 − background), never passed through an activation again.
        foreground = foreground_from_probabilities(probabilities).float().numpy()
        write_image(
            restore_to_original(foreground, data["meta"], is_label=False),
            Path(out_dir) / "probabilities" / f"{case.case_id}{options.file_ending}",
        )
    _add_time(timings, "write", time.perf_counter() - clock)
    logger.info("%s (%s): %s", case.case_id, stats.precision, format_timings(timings))
    return target


def add_inference_options(parser) -> None:
    """``predict``'s options for the inference core (window skipping, precision, window batch, timings)."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network precision: auto = bf16 on CPUs with AVX512-BF16/AMX (1.7x faster there), fp32 "
        "elsewhere, GPUs included (bf16 autocast was slower than fp32 on an H100)",
    )
    parser.add_argument(
        "--skip-suv",
        type=float,
        default=DEFAULT_SKIP_SUV,
        help="windows whose PET stays below this SUV are background without running the network",
    )
    parser.add_argument("--no-skip", action="store_true", help="run the network on every window (exhaustive)")
    parser.add_argument(
        "--window-batch",
        dest="batch",
        metavar="WINDOW_BATCH",
        type=int,
        default=0,
        help="windows per network call (0: sized to the device)",
    )
    parser.add_argument(
        "--timings",
        action="store_true",
        help="print seconds per stage (read+preprocess, network, blend, restore, write)",
    )


#: ``predict`` options whose parsed value is not the field's value: field -> f(value, parsed args).
_CONVERTED: dict[str, Callable] = {
    "skip_suv": lambda value, args: None if getattr(args, "no_skip", False) else value,
    "timings": lambda value, args: {} if value else None,
}


def predict_options(args, **given) -> PredictOptions:
    """PredictOptions from parsed ``predict`` options, by field name.

    Every field with an option of the same ``dest`` takes that option's value (``--window-batch`` is
    stored as ``batch``, ``--ending`` as ``file_ending``), as ``train``'s options map onto its config, so a
    new setting needs only its field and its ``add_argument``. ``given`` (the resolved device, the label
    writer) wins over the options.
    """
    values = {}
    for spec in dataclasses.fields(PredictOptions):
        if hasattr(args, spec.name):
            value = getattr(args, spec.name)
            values[spec.name] = _CONVERTED[spec.name](value, args) if spec.name in _CONVERTED else value
    return PredictOptions(**{**values, **given})


def format_timings(timings: dict) -> str:
    """One line: seconds per stage and the windows run."""
    text = ", ".join(f"{stage} {timings.get(stage, 0.0):.1f} s" for stage in STAGES)
    return f"{text}; {timings.get('windows_run', 0)} of {timings.get('windows', 0)} windows run"


def threshold_mask(case: Case, method: str) -> sitk.Image:
    """A training-free SUV rule (``THRESHOLD_METHODS``) applied on the case's own PET grid
    (SUV, DICOM too)."""
    pet = read_pet(case.pet)
    return from_array(THRESHOLD_METHODS[method](to_array(pet), spacing=pet.GetSpacing()), pet)


def predict_cases(
    loaded: LoadedModel,
    cases: Iterable[Case],
    out_dir: Path,
    options: PredictOptions,
    progress: bool = True,
) -> tuple[list[Path], list[str]]:
    """Predict every case; a bad case is reported (one line) and skipped. Returns (written, problems)."""
    cases = list(cases)
    written, problems = [], []
    for case in tqdm(cases, desc="predict", unit="case", disable=not progress):
        try:
            written.append(predict_case(loaded, case, out_dir, options))
        except H2ASegError as err:
            problems.append(str(err))
            logger.warning("skipped: %s", err)
    return written, problems


__all__ = [
    "MIRROR_AXES",
    "STAGES",
    "LoadedModel",
    "PredictOptions",
    "add_inference_options",
    "build_network",
    "class_probabilities",
    "foreground_from_probabilities",
    "format_timings",
    "inference_settings",
    "load_trained_model",
    "num_classes_for",
    "predict_case",
    "predict_cases",
    "predict_options",
    "preprocess_config_for",
    "probabilities_to_label",
    "threshold_mask",
]
