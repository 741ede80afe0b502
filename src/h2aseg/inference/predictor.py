"""Whole-volume prediction: sliding-window inference, optional mirror TTA, back to the original PET grid.

Memory stays bounded on whole-body volumes: the network only ever sees one batch of patches; mirror
test-time augmentation flips each *patch* (not the volume) inside the sliding-window predictor, so no
augmented full-volume copy is made; MONAI accumulates one probability volume on the CPU (or the
``accumulate_device``) with Gaussian blending.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from tqdm import tqdm

from h2aseg.config import RunConfig
from h2aseg.data.io import from_array, read_pet, to_array, write_image
from h2aseg.data.layouts import Case
from h2aseg.data.preprocess import PreprocessConfig, preprocess_case, restore_to_original
from h2aseg.errors import DataError, H2ASegError
from h2aseg.models.baselines.threshold import THRESHOLD_METHODS
from h2aseg.models.registry import build_model, model_options_for
from h2aseg.training.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

#: Flip sets of mirror TTA: all subsets of the three spatial axes of a (B, C, H, W, D) tensor.
MIRROR_AXES: tuple[tuple[int, ...], ...] = tuple(
    axes for r in range(4) for axes in itertools.combinations((2, 3, 4), r)
)


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Logits (B, K, ...) -> probabilities: sigmoid for K = 1, softmax for K > 1."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def probabilities_to_label(probabilities: torch.Tensor) -> torch.Tensor:
    """(K, ...) probabilities -> (...) uint8 label: > 0.5 for K = 1, argmax for K > 1."""
    if probabilities.shape[0] == 1:
        return (probabilities[0] > 0.5).to(torch.uint8)
    return probabilities.argmax(0).to(torch.uint8)


def foreground_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(K, ...) class probabilities -> (...) foreground probability: the channel for K = 1, 1 − background else.

    Thresholding it at 0.5 gives the label of :func:`probabilities_to_label` for K = 1 (and any non-background
    class beats background wherever it is above 0.5 for K > 1).
    """
    if probabilities.shape[0] == 1:
        return probabilities[0]
    return 1.0 - probabilities[0]


@torch.no_grad()
def sliding_window_probabilities(
    model: torch.nn.Module,
    ct: torch.Tensor,
    pet: torch.Tensor,
    patch_size: Sequence[int],
    overlap: float = 0.25,
    mirror: bool = False,
    sw_batch_size: int = 2,
    device: torch.device | str = "cpu",
    accumulate_device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Class probabilities (1, K, X, Y, Z) of a whole volume; ct, pet: (1, 1, X, Y, Z) scaled as in training.

    Gaussian-weighted sliding window of ``patch_size`` (MONAI); with ``mirror`` every patch is also
    predicted flipped along each subset of the three axes (8 passes) and the probabilities averaged.
    """
    model.eval()
    flips = MIRROR_AXES if mirror else ((),)

    def predict_patch(patch: torch.Tensor) -> torch.Tensor:
        total = None
        for axes in flips:
            x = patch.flip(axes) if axes else patch
            prob = class_probabilities(model(x[:, :1], x[:, 1:]).float())
            prob = prob.flip(axes) if axes else prob
            total = prob if total is None else total.add_(prob)
        return total / len(flips)

    volume = torch.cat((ct, pet), dim=1)
    return sliding_window_inference(
        volume,
        roi_size=tuple(patch_size),
        sw_batch_size=sw_batch_size,
        predictor=predict_patch,
        overlap=overlap,
        mode="gaussian",
        sw_device=device,
        device=accumulate_device,
        progress=False,
    )


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
            logger.warning("%s has no best.pt (validation never rose above Dice 0, or was off): using last.pt", path)
            return path / "last.pt"
        raise DataError(f"run folder {path} holds no best.pt or last.pt: train first or give a checkpoint file")
    return path


def preprocess_config_for(config: RunConfig) -> PreprocessConfig:
    spacing = config.data.target_spacing
    return PreprocessConfig(target_spacing=tuple(spacing) if spacing else None, label_mode=config.data.label_mode)


def num_classes_for(config: RunConfig) -> int:
    return 1 if config.data.label_mode == "binary" else len(PreprocessConfig().label_values)


def build_network(config: RunConfig) -> torch.nn.Module:
    options = {"num_classes": num_classes_for(config), **config.model.options}
    return build_model(config.model.name, **model_options_for(config.model.name, options, tuple(config.train.patch)))


def load_trained_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    checkpoint = resolve_checkpoint(path)
    state = load_checkpoint(checkpoint)
    config = RunConfig.from_dict(state["config"])
    model = build_network(config)
    model.load_state_dict(state["model"])
    return LoadedModel(model.to(device).eval(), config, checkpoint, preprocess_config_for(config))


@dataclass
class PredictOptions:
    overlap: float = 0.25
    mirror: bool = False
    save_probabilities: bool = False
    file_ending: str = ".nii.gz"
    device: str = "cpu"


def predict_case(loaded: LoadedModel, case: Case, out_dir: Path, options: PredictOptions) -> Path:
    """Predict one case and write ``<out_dir>/<case_id><ending>`` on the case's original PET grid."""
    data = preprocess_case(case, loaded.preprocess)
    ct = torch.from_numpy(data["ct"])[None]
    pet = torch.from_numpy(data["pet"])[None]
    probabilities = sliding_window_probabilities(
        loaded.model, ct, pet, loaded.patch_size, options.overlap, options.mirror, device=options.device
    )[0]
    label = probabilities_to_label(probabilities).numpy()
    target = Path(out_dir) / f"{case.case_id}{options.file_ending}"
    write_image(restore_to_original(label, data["meta"], is_label=True), target)
    if options.save_probabilities:
        # ``probabilities`` are already softmax/sigmoid outputs: the foreground map is taken from them
        # directly (sigmoid channel, or 1 − background), never passed through an activation again.
        foreground = foreground_from_probabilities(probabilities).numpy()
        write_image(
            restore_to_original(foreground, data["meta"], is_label=False),
            Path(out_dir) / "probabilities" / f"{case.case_id}{options.file_ending}",
        )
    return target


def threshold_mask(case: Case, method: str) -> sitk.Image:
    """A training-free SUV rule (``THRESHOLD_METHODS``) applied on the case's own PET grid (SUV, DICOM too)."""
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
            tqdm.write(f"skipped: {err}")
    return written, problems


__all__ = [
    "LoadedModel",
    "PredictOptions",
    "load_trained_model",
    "predict_case",
    "predict_cases",
    "sliding_window_probabilities",
]
