"""The one inference core: blending, window skipping, precision, and the same probabilities everywhere."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from h2aseg.inference.core import (
    InferenceSettings,
    InferenceStats,
    axis_weights,
    predict_probabilities,
    probabilities_to_label,
    window_starts,
)
from h2aseg.inference.precision import autocast_dtype, cpu_has_native_bf16, training_autocast_dtype

SUV_SCALE = 10.0


class SuvRule(nn.Module):
    """A stand-in network: lesion logit = SUV − 3 (so 'lesion' wherever SUV > 3); counts its windows."""

    def __init__(self, classes: int = 1) -> None:
        super().__init__()
        self.classes, self.windows = classes, 0
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        self.windows += ct.shape[0]
        fg = self.scale * (pet * SUV_SCALE - 3.0)
        return fg if self.classes == 1 else torch.cat([-fg, fg, -fg - 5], dim=1)


class TinyConvNet(nn.Module):
    """Two 3-D convolutions on (CT, PET) with fixed random weights: varied logits, for precision checks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 1, 3, padding=1))

    def forward(self, ct: torch.Tensor, pet: torch.Tensor) -> torch.Tensor:
        return 20.0 * self.body(torch.cat((ct, pet), dim=1))


def _volume(shape=(64, 32, 32), hot_centre=(48, 16, 16), radius=4):
    """CT in [0, 1]; PET SUV 0.5 in the cold half (x < 32), 1.5 background and an SUV-8 ball in the other."""
    rng = np.random.default_rng(0)
    ct = rng.uniform(0.3, 0.6, shape).astype(np.float32)
    suv = np.full(shape, 1.5, np.float32)
    suv[: shape[0] // 2] = 0.5
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    ball = ((grid - np.array(hot_centre)[:, None, None, None]) ** 2).sum(0) <= radius**2
    suv[ball] = 8.0
    return ct, suv / SUV_SCALE, ball


def test_weights_sum_to_one_so_the_accumulator_is_the_probability():
    for size, patch, overlap in ((100, 32, 0.5), (64, 32, 0.25), (32, 32, 0.5), (77, 16, 0.3)):
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts[-1] == size - patch
        total = torch.zeros(size)
        for s, w in zip(starts, axis_weights(size, patch, starts)):
            total[s : s + patch] += w
        assert torch.allclose(total, torch.ones(size), atol=1e-5)
    # a network of constant probability 0.8 gives 0.8 everywhere, also where the volume is padded
    model = SuvRule()
    ct, pet = (
        np.zeros((40, 20, 36), np.float32),
        np.full((40, 20, 36), (3.0 + np.log(4.0) / 4.0) / SUV_SCALE, np.float32),
    )
    prob = predict_probabilities(
        model, ct, pet, InferenceSettings((32, 32, 32), overlap=0.5, precision="fp32")
    )
    assert prob.shape == (1, 40, 20, 36)
    assert torch.allclose(prob.float(), torch.full_like(prob.float(), 0.8), atol=2e-3)


def test_window_skipping_keeps_the_hot_lesion_and_skips_the_cold_window():
    ct, pet, ball = _volume()
    settings = InferenceSettings(
        (32, 32, 32), overlap=0.0, precision="fp32", skip_suv=1.0, suv_scale=SUV_SCALE
    )
    model, stats = SuvRule(), InferenceStats()
    prob = predict_probabilities(model, ct, pet, settings, stats)
    assert stats.windows == 2 and stats.windows_run == 1 and model.windows == 1  # the cold half never ran
    label = probabilities_to_label(prob).numpy().astype(bool)
    assert label[ball].all() and not label[~ball].any()
    exhaustive = predict_probabilities(
        SuvRule(), ct, pet, InferenceSettings((32, 32, 32), overlap=0.0, precision="fp32", skip_suv=None)
    )
    assert np.array_equal(probabilities_to_label(exhaustive).numpy(), label)
    # softmax networks: the skipped window is background with probability 1
    multi = predict_probabilities(SuvRule(classes=3), ct, pet, settings)
    assert torch.allclose(multi[0, :32].float(), torch.ones(1), atol=1e-3)
    assert (probabilities_to_label(multi).numpy() == 1)[ball].all()


def test_skipping_changes_no_label_where_windows_overlap():
    ct, pet, _ = _volume(shape=(96, 32, 32), hot_centre=(70, 16, 16))
    settings = InferenceSettings((32, 32, 32), overlap=0.5, precision="fp32", suv_scale=SUV_SCALE)
    stats = InferenceStats()
    skipped = predict_probabilities(TinyConvNet(), ct, pet, settings, stats)
    full = predict_probabilities(
        TinyConvNet(), ct, pet, InferenceSettings((32, 32, 32), overlap=0.5, precision="fp32", skip_suv=None)
    )
    assert 0 < stats.windows_run < stats.windows
    hot = slice(48, 96)  # every window covering x >= 48 reaches the SUV-1.5 half and runs in both
    # (equal up to rounding: windows are batched differently when some are skipped)
    assert (skipped[:, hot].float() - full[:, hot].float()).abs().max() < 2e-3
    assert not torch.allclose(
        skipped[:, :16].float(), full[:, :16].float(), atol=0.05
    )  # there, skipping did act


@pytest.mark.parametrize(
    "precision, accumulate", [("bf16", "float16"), ("fp32", "float16"), ("bf16", "float32")]
)
def test_precision_options_keep_labels_within_tolerance(precision, accumulate):
    """bf16 autocast and float16 accumulation: >= 99 % of labels and probabilities within 0.05 of
    fp32/float32."""
    ct, pet, _ = _volume()
    model = TinyConvNet().eval()
    reference = predict_probabilities(
        model, ct, pet, InferenceSettings((32, 32, 32), precision="fp32", accumulate="float32", skip_suv=None)
    )
    reduced = predict_probabilities(
        model,
        ct,
        pet,
        InferenceSettings((32, 32, 32), precision=precision, accumulate=accumulate, skip_suv=None),
    )
    ref_label, label = probabilities_to_label(reference), probabilities_to_label(reduced)
    assert 0.05 < ref_label.float().mean() < 0.95  # the check has both classes to get wrong
    assert (ref_label == label).float().mean() >= 0.99
    assert (reference - reduced.float()).abs().max() < 0.05
    if precision == "fp32":  # float16 accumulation alone: rounding only
        assert (reference - reduced.float()).abs().max() < 2e-3


def test_precision_choices():
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype("auto", "cuda") is None  # fp32 on GPUs: bf16 autocast was slower on an H100
    assert autocast_dtype("fp16", "cuda") is torch.float16
    assert training_autocast_dtype("off", "cpu") is None and training_autocast_dtype("auto", "cpu") is None
    assert training_autocast_dtype("on", "cpu") is (torch.bfloat16 if cpu_has_native_bf16() else None)
    from h2aseg.errors import ConfigError

    with pytest.raises(ConfigError):
        autocast_dtype("fp16", "cpu")


def test_prediction_does_not_import_training():
    code = (
        "import sys, h2aseg.inference.predictor, h2aseg.inference.core; "
        "bad = [m for m in sys.modules if m.startswith('h2aseg.training')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_compiled_network_compiles_once_and_gives_the_eager_probabilities():
    from torch._dynamo import register_backend

    compilations = []

    @register_backend(name="h2aseg_test_counting")
    def counting(graph_module, example_inputs):  # a backend that only counts its graphs
        compilations.append(tuple(example_inputs[0].shape) if example_inputs else ())
        return graph_module.forward

    ct, pet, _ = _volume(shape=(88, 32, 32), hot_centre=(60, 16, 16))
    eager = InferenceSettings((32, 32, 32), overlap=0.5, precision="fp32", skip_suv=None, batch=2)
    model = TinyConvNet()
    stats = InferenceStats()
    expected = predict_probabilities(model, ct, pet, eager, stats)
    assert stats.windows_run == 5  # calls of 2, 2 and 1 window: the last is padded when compiled
    compiled = eager.with_(compile="h2aseg_test_counting")
    got = predict_probabilities(model, ct, pet, compiled)
    again = predict_probabilities(model, ct, pet[:, ::-1].copy(), compiled)  # a second study
    assert torch.allclose(got.float(), expected.float(), atol=1e-3)
    assert again.shape == got.shape
    assert len(compilations) == 1, compilations


def test_a_failing_compile_backend_is_a_one_line_error_naming_the_option():
    from torch._dynamo import register_backend

    @register_backend(name="h2aseg_test_failing")
    def failing(graph_module, example_inputs):  # as a backend without its C++ compiler
        raise RuntimeError("no C++ compiler found")

    ct, pet, _ = _volume(shape=(32, 32, 32))
    settings = InferenceSettings((32, 32, 32), precision="fp32", skip_suv=None, compile="h2aseg_test_failing")
    from h2aseg.errors import ConfigError

    with pytest.raises(ConfigError, match="h2aseg_test_failing.*without --compile"):
        predict_probabilities(TinyConvNet(), ct, pet, settings)
