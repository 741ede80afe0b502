"""The one inference core: (CT, PET) arrays on the processing grid -> class probabilities.

Training validation (:meth:`h2aseg.training.trainer.Trainer._validate`), the benchmark runner and
``h2aseg predict`` all call :func:`predict_probabilities` with an :class:`InferenceSettings`, so the
three measure the same thing. Defaults live here and nowhere else.

Sliding window (the windows MONAI's ``sliding_window_inference`` places): along each axis of length
``n`` with patch ``p`` and overlap ``o`` the step is ``s = int(p (1 − o))`` and the starts are
``min(i s, n − p)`` for ``i = 0 … ceil((n − p) / s)`` (a volume smaller than the patch is zero padded,
which is air and no uptake after scaling). Each window's probabilities are blended with a Gaussian
weight ``g(x) g(y) g(z)``, ``g(t) = exp(−(t − (p − 1)/2)² / (2 (σ p)²))``, σ = 0.125. Because both the
weight and the grid of windows are products over the axes, the sum of the weights at a voxel is a
product ``W_x(x) W_y(y) W_z(z)`` of three 1-D sums; each window is weighted by
``g(x) g(y) g(z) / (W_x W_y W_z)``, so the accumulated sum *is* the probability: no weight volume is
stored and no division pass is needed. The accumulator is float16 (2 bytes a voxel and class; the
weights at a voxel sum to 1, so values stay in [0, 1] where float16 resolves 2⁻¹¹ ≈ 0.0005).

Window skipping (``skip_suv``): a window whose PET never reaches ``skip_suv`` (SUV) holds no FDG-avid
tissue and so no lesion the network could find; it is predicted as background (probability 0 for a
sigmoid network, background 1 for softmax) with its blending weight, without running the network.
Outside the body the PET is 0, so those windows are skipped by the same rule. Default 1.0 SUV, below
blood pool and liver (≈ 1.5–2.5) and below the peak of any lesion the synthetic cohorts paint (SUV 2.5
and up). A lesion's faint rim can fall in a skipped window only if that whole window stays below 1.0;
those rim voxels then blend with the skipped window's background. ``skip_suv=None`` runs every window.
Measured (``benchmarks/results/inference_cpu.md``): on the 400×400×326 whole-body study the rule skips
1,231 of 2,730 32³ windows but none of the 84 128×128×64 ones (every such window reaches body tissue
above SUV 1.5); on the 4 mm demo and small-lesion test studies no window is skipped, so the labels
there are identical with and without it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from h2aseg.errors import ConfigError
from h2aseg.inference.precision import autocast_dtype

#: Sliding-window overlap of validation, the benchmark and ``predict`` (nnU-Net's 0.5; MONAI's default is
#: 0.25). Measured (``benchmarks/results/inference_cpu.md``, 2-core EPYC): 0.5 runs 2–2.9× the windows of 0.25
#: (200 vs 84 windows of 128×128×64 on the whole-body study, 36 vs 18 of 32³ on a 64×64×80 study). On two
#: networks trained on the small-lesion report cohort (H2ASeg and BasicUNet, validation Dice 0.48 and 0.50; 16
#: test studies) the labels at 0.25 and 0.5 differ a lot (Dice between them 0.57 and 0.69) and **0.25 loses
#: detections**: of the components the old exhaustive path (MONAI, fp32, 0.5) finds, 0.25 finds 44 of 63
#: (H2ASeg) and 61 of 71 (BasicUNet); this core at 0.5 finds 60 of 63 and 71 of 71. Dice to the truth on the
#: lesion-positive studies is level (H2ASeg 16.5 % at 0.25 and 18.1 % at 0.5; BasicUNet 17.3 % and 16.8 %).
#: Small lesions near a window border are what a lower overlap misses, so 0.5 is the default;
#: ``--overlap 0.25`` halves the time where that is acceptable.
DEFAULT_OVERLAP = 0.5
#: Windows whose PET maximum stays below this SUV are predicted as background without the network.
DEFAULT_SKIP_SUV = 1.0
#: Gaussian blending width as a fraction of the patch (nnU-Net's and MONAI's 1/8).
SIGMA_SCALE = 0.125

#: Flip sets of mirror TTA: all subsets of the three spatial axes of a (B, C, H, W, D) tensor.
MIRROR_AXES: tuple[tuple[int, ...], ...] = tuple(
    axes for r in range(4) for axes in itertools.combinations((2, 3, 4), r)
)


@dataclass(frozen=True)
class InferenceSettings:
    """How a volume is predicted (one object for validation, benchmark and ``predict``).

    Args:
        patch: window size (X, Y, Z) in voxels, the training patch.
        overlap: sliding-window overlap in [0, 1).
        mirror: mirror TTA, every window also predicted flipped along each subset of the axes (8 passes).
        batch: windows per network call; 0 sizes it to the device (:attr:`windows_per_call`).
        device: where the network runs; the probabilities are accumulated on the CPU.
        precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16`` (:mod:`h2aseg.inference.precision`).
        skip_suv: skip windows whose PET maximum is below this SUV (None: run every window).
        suv_scale: PET array value = SUV / suv_scale (the preprocessing's).
        channels_last: feed windows as channels-last 3-D tensors. Off by default: on this 2-core EPYC the
            paper-width H2ASeg at 128×128×64 took 8.3 s a window channels-last against 6.4 s contiguous (fp32,
            one thread; bf16 4.0 against 3.6 s); for the demo's 4–64 network at 32³, four a call, it was 1.2×
            faster (0.178 against 0.213 s a window), so small networks may want it.
        accumulate: ``float16`` (compact, default) or ``float32`` accumulator.
        compile: ``torch.compile`` backend for the network (e.g. ``inductor``; None: eager). The network is
            compiled once per model object (:func:`compiled_network`) and every call gets the same batch
            size (the last call is padded), so it compiles once. Measured on the 2-core EPYC (paper width,
            bf16, 128×128×64, two threads, quiet; ``benchmarks/results/inference_cpu.md`` §3d): 0.95 s a
            window against 1.02 s eager (1.07×), after ~70 s of compiling (~2 s with a warm inductor cache);
            so off by default on a CPU.
    """

    patch: tuple[int, int, int]
    overlap: float = DEFAULT_OVERLAP
    mirror: bool = False
    batch: int = 0
    device: str = "cpu"
    precision: str = "auto"
    skip_suv: float | None = DEFAULT_SKIP_SUV
    suv_scale: float = 10.0
    channels_last: bool = False
    accumulate: str = "float16"
    compile: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ConfigError(f"patch must be three positive sizes, got {self.patch}")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"overlap must lie in [0, 1), got {self.overlap}")
        if self.accumulate not in ("float16", "float32"):
            raise ConfigError(f"accumulate must be float16 or float32, not {self.accumulate!r}")

    def with_(self, **changes) -> InferenceSettings:
        """A copy with some fields changed (None values are ignored, so CLI options can pass through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def windows_per_call(self) -> int:
        """``batch``, or sized to the device: on a CPU 2¹⁷ voxels a call (128×128×64 windows one at a time:
        their convolutions already fill the cores; 32³ four at a time: 0.39 s a window against 0.53 s singly
        for the demo's 4–64 H2ASeg in bf16, measured round-robin on the 2-core EPYC); on CUDA at least 2,
        up to 2²⁰ voxels."""
        if self.batch > 0:
            return self.batch
        voxels = self.patch[0] * self.patch[1] * self.patch[2]
        if torch.device(self.device).type == "cuda":
            return max(2, min(16, 2**20 // voxels))
        return max(1, min(8, 2**17 // voxels))


@dataclass
class InferenceStats:
    """What one call did: window counts and seconds spent in the network and in the rest."""

    windows: int = 0
    windows_run: int = 0
    network_seconds: float = 0.0
    total_seconds: float = 0.0
    precision: str = "fp32"

    @property
    def windows_skipped(self) -> int:
        return self.windows - self.windows_run


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis (MONAI's placement; ``size >= patch``)."""
    step = max(int(patch * (1.0 - overlap)), 1)
    count = math.ceil(max(size - patch, 0) / step) + 1
    return sorted({min(i * step, size - patch) for i in range(count)})


def gaussian_1d(patch: int, sigma_scale: float = SIGMA_SCALE) -> torch.Tensor:
    """(patch,) float64 Gaussian centred on the window, peak 1, floored at 1e-4 so no voxel has weight 0."""
    t = torch.arange(patch, dtype=torch.float64) - (patch - 1) / 2.0
    return torch.exp(-(t**2) / (2.0 * (sigma_scale * patch) ** 2)).clamp_min(1e-4)


def axis_weights(size: int, patch: int, starts: Sequence[int]) -> list[torch.Tensor]:
    """Per window start: g(t) / W(t) on its span, with W the sum of g over all windows at t (sums to 1)."""
    g = gaussian_1d(patch)
    total = torch.zeros(size, dtype=torch.float64)
    for s in starts:
        total[s : s + patch] += g
    return [(g / total[s : s + patch]).float() for s in starts]


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Logits (B, K, ...) -> probabilities: sigmoid for K = 1, softmax for K > 1."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def _as_volume(array) -> torch.Tensor:
    """(X, Y, Z), (1, X, Y, Z) or (1, 1, X, Y, Z) array/tensor -> (X, Y, Z) float32 CPU tensor
    (no copy if it can)."""
    tensor = torch.as_tensor(array)
    while tensor.dim() > 3:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one volume with one channel, got shape {tuple(tensor.shape)}")
        tensor = tensor[0]
    return tensor.float()


def _padded(volume: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    pad = [max(p - s, 0) for s, p in zip(volume.shape, patch)]
    if not any(pad):
        return volume
    # F.pad orders pairs from the last axis; pad at the far end only (zero is air / no uptake).
    return torch.nn.functional.pad(volume, (0, pad[2], 0, pad[1], 0, pad[0]))


def predict_probabilities(
    model: torch.nn.Module,
    ct,
    pet,
    settings: InferenceSettings,
    stats: InferenceStats | None = None,
) -> torch.Tensor:
    """Class probabilities (K, X, Y, Z) of a whole volume (float16 or float32, CPU; see the module doc).

    ``ct``, ``pet``: (X, Y, Z) arrays or tensors, with optional leading singleton axes, scaled as in
    training (:func:`h2aseg.data.preprocess.preprocess_case`). The model is put in eval mode; callers
    that train switch it back.
    """
    started = time.perf_counter()
    stats = stats if stats is not None else InferenceStats()
    model.eval()
    ct_v, pet_v = _as_volume(ct), _as_volume(pet)
    if ct_v.shape != pet_v.shape:
        raise ValueError(f"CT {tuple(ct_v.shape)} and PET {tuple(pet_v.shape)} differ in shape")
    shape = tuple(ct_v.shape)
    ct_p, pet_p = _padded(ct_v, settings.patch), _padded(pet_v, settings.patch)
    full = tuple(ct_p.shape)
    starts = [window_starts(n, p, settings.overlap) for n, p in zip(full, settings.patch)]
    weights = [axis_weights(n, p, s) for n, p, s in zip(full, settings.patch, starts)]
    dtype = autocast_dtype(settings.precision, settings.device)
    stats.precision = "fp32" if dtype is None else str(dtype).replace("torch.", "")
    windows = [
        (i, j, k) for i in range(len(starts[0])) for j in range(len(starts[1])) for k in range(len(starts[2]))
    ]
    keep = _windows_to_run(pet_p, windows, starts, settings)
    model = compiled_network(model, settings.compile)
    accumulator = None
    queue: list[tuple[int, int, int]] = []
    with torch.inference_mode():
        for index in windows:
            if not keep[index]:
                continue
            queue.append(index)
            if len(queue) == settings.windows_per_call:
                accumulator = _run_batch(
                    model, ct_p, pet_p, queue, starts, weights, settings, dtype, accumulator, stats
                )
                queue = []
        if queue:
            accumulator = _run_batch(
                model, ct_p, pet_p, queue, starts, weights, settings, dtype, accumulator, stats
            )
        _add_skipped_background(accumulator, windows, keep, starts, weights, settings.patch)
    stats.windows += len(windows)
    stats.total_seconds += time.perf_counter() - started
    result = accumulator[:, : shape[0], : shape[1], : shape[2]]
    return result if tuple(result.shape[1:]) == full else result.contiguous()


def _windows_to_run(pet: torch.Tensor, windows, starts, settings: InferenceSettings) -> dict:
    """Window index -> whether the network must run on it (the skipping rule of the module doc)."""
    if settings.skip_suv is None:
        return dict.fromkeys(windows, True)
    level = settings.skip_suv / settings.suv_scale
    px, py, pz = settings.patch
    peaks = {}
    for i, j, k in windows:
        x, y, z = starts[0][i], starts[1][j], starts[2][k]
        peaks[(i, j, k)] = float(pet[x : x + px, y : y + py, z : z + pz].max())
    keep = {index: peak >= level for index, peak in peaks.items()}
    if not any(keep.values()):  # run the hottest window so the class count comes from the network
        keep[max(peaks, key=peaks.get)] = True
    return keep


def _new_accumulator(num_classes: int, shape: Sequence[int], settings: InferenceSettings) -> torch.Tensor:
    dtype = torch.float16 if settings.accumulate == "float16" else torch.float32
    return torch.zeros((num_classes, *shape), dtype=dtype)


def _window_weight(index, weights) -> torch.Tensor:
    i, j, k = index
    return weights[0][i][:, None, None] * weights[1][j][None, :, None] * weights[2][k][None, None, :]


def _run_batch(model, ct, pet, queue, starts, weights, settings, dtype, accumulator, stats) -> torch.Tensor:
    px, py, pz = settings.patch
    spans = [(starts[0][i], starts[1][j], starts[2][k]) for i, j, k in queue]
    batch = torch.stack(
        [
            torch.stack((ct[x : x + px, y : y + py, z : z + pz], pet[x : x + px, y : y + py, z : z + pz]))
            for x, y, z in spans
        ]
    )
    batch = batch.to(settings.device, non_blocking=True)
    if settings.compile and len(queue) < settings.windows_per_call:  # one shape: one compilation
        batch = torch.cat(
            [batch, batch.new_zeros((settings.windows_per_call - len(queue), *batch.shape[1:]))]
        )
    if settings.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last_3d)
    clock = time.perf_counter()
    try:
        probabilities = _network(model, batch, settings.mirror, dtype).cpu()
    except Exception as err:  # noqa: BLE001 - any failure inside a compiled call: name the option
        if settings.compile is None:
            raise
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"the network compiled with backend {settings.compile!r} failed ({type(err).__name__}: {first}); "
            "predict without --compile (or pick another backend)"
        ) from err
    stats.network_seconds += time.perf_counter() - clock
    stats.windows_run += len(queue)
    if accumulator is None:
        accumulator = _new_accumulator(probabilities.shape[1], ct.shape, settings)
    for n, ((x, y, z), index) in enumerate(zip(spans, queue)):
        weighted = probabilities[n] * _window_weight(index, weights)
        accumulator[:, x : x + px, y : y + py, z : z + pz] += weighted.to(accumulator.dtype)
    return accumulator


#: Attribute in the model's ``__dict__`` (not a registered submodule): its compiled wrappers by backend.
_COMPILED_ATTRIBUTE = "_h2aseg_compiled"


def compiled_network(model: torch.nn.Module, backend: str | None) -> torch.nn.Module:
    """``model`` itself (backend None), or its ``torch.compile`` wrapper, made once per model and backend.

    The wrappers live on the model, so they go when the model goes (a global weak-keyed cache would keep
    every compiled model alive: the wrapper refers back to its model)."""
    if backend is None:
        return model
    per_model = model.__dict__.setdefault(_COMPILED_ATTRIBUTE, {})
    if backend not in per_model:
        per_model[backend] = torch.compile(model, backend=backend)
    return per_model[backend]


def _network(model, batch: torch.Tensor, mirror: bool, dtype: torch.dtype | None) -> torch.Tensor:
    """(B, 2, X, Y, Z) windows -> (B, K, X, Y, Z) float32 probabilities, mirror-averaged when asked."""
    flips = MIRROR_AXES if mirror else ((),)
    total = None
    device_type = batch.device.type
    for axes in flips:
        x = batch.flip(axes) if axes else batch
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x[:, :1], x[:, 1:])
        probabilities = class_probabilities(logits.float())
        probabilities = probabilities.flip(axes) if axes else probabilities
        total = probabilities if total is None else total.add_(probabilities)
    return total / len(flips) if len(flips) > 1 else total


def _add_skipped_background(accumulator, windows, keep, starts, weights, patch) -> None:
    """Softmax networks: a skipped window says background with probability 1 (sigmoid: 0, nothing to add)."""
    if accumulator.shape[0] == 1:
        return
    px, py, pz = patch
    for index in windows:
        if not keep[index]:
            x, y, z = starts[0][index[0]], starts[1][index[1]], starts[2][index[2]]
            accumulator[0, x : x + px, y : y + py, z : z + pz] += _window_weight(index, weights).to(
                accumulator.dtype
            )


def probabilities_to_label(probabilities: torch.Tensor) -> torch.Tensor:
    """(K, ...) probabilities -> (...) uint8 label: > 0.5 for K = 1, argmax for K > 1."""
    if probabilities.shape[0] == 1:
        return (probabilities[0] > 0.5).to(torch.uint8)
    return probabilities.argmax(0).to(torch.uint8)


def foreground_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """(K, ...) class probabilities -> (...) foreground probability: the channel for K = 1,
    1 − background else.

    Thresholding it at 0.5 gives the label of :func:`probabilities_to_label` for K = 1 (and any non-background
    class beats background wherever it is above 0.5 for K > 1).
    """
    if probabilities.shape[0] == 1:
        return probabilities[0]
    return 1.0 - probabilities[0]


def settings_for(patch: Sequence[int], suv_scale: float = 10.0, **options) -> InferenceSettings:
    """Settings for a run's patch and preprocessing, with any of the other fields given
    (None: the default)."""
    return InferenceSettings(tuple(patch), suv_scale=suv_scale).with_(**options)


__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_SKIP_SUV",
    "InferenceSettings",
    "InferenceStats",
    "class_probabilities",
    "compiled_network",
    "foreground_from_probabilities",
    "predict_probabilities",
    "probabilities_to_label",
    "settings_for",
    "window_starts",
]
