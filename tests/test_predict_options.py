"""`h2aseg predict`'s options map onto PredictOptions and InferenceSettings fields by name (issue 16)."""

from __future__ import annotations

import argparse
import dataclasses
from types import SimpleNamespace

import pytest

from h2aseg.inference.cli import add_parser
from h2aseg.inference.core import InferenceSettings
from h2aseg.inference.predictor import PredictOptions, inference_settings, predict_options

REQUIRED = ["--model", "run", "--out", "out"]

#: A non-default command line for every PredictOptions field that has an option, and the value it gives.
#: A new option named after a field must be added here (the coverage test below says so).
SAMPLES: dict[str, tuple[list[str], object]] = {
    "overlap": (["--overlap", "0.3"], 0.3),
    "mirror": (["--mirror"], True),
    "save_probabilities": (["--save-probabilities"], True),
    "file_ending": (["--ending", ".mha"], ".mha"),
    "precision": (["--precision", "bf16"], "bf16"),
    "skip_suv": (["--skip-suv", "2.5"], 2.5),
    "batch": (["--window-batch", "3"], 3),
    "compile": (["--compile"], "inductor"),
    "timings": (["--timings"], {}),
}
#: The PredictOptions field with no option: the CLI builds it from --format, --grid and post-processing.
NOT_OPTIONS = {"write_label"}
#: Fields whose option of the same name is resolved before use (pick_device turns ``auto`` into a device).
RESOLVED = {"device"}
#: InferenceSettings fields predict does not set: the model's, or fixed for predict.
CORE_ONLY = {"patch", "suv_scale", "channels_last", "accumulate"}

FIELDS = {f.name for f in dataclasses.fields(PredictOptions)}
LOADED = SimpleNamespace(patch_size=(32, 32, 16), preprocess=SimpleNamespace(suv_scale=10.0))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(["predict", *REQUIRED, *argv])


def test_every_options_field_has_an_option_of_its_name_and_every_such_option_is_sampled():
    dests = set(vars(_parse()))
    assert FIELDS - dests == NOT_OPTIONS, "a PredictOptions field without a same-named option"
    assert (FIELDS & dests) - RESOLVED == set(SAMPLES)
    core = {f.name for f in dataclasses.fields(InferenceSettings)}
    assert core - FIELDS == CORE_ONLY, "a new InferenceSettings field: give predict an option or list it"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_option_reaches_its_field_and_the_core_settings(name):
    argv, expected = SAMPLES[name]
    default = predict_options(_parse())
    options = predict_options(_parse(*argv))
    assert getattr(options, name) == expected != getattr(default, name)
    changed = {
        f.name
        for f in dataclasses.fields(PredictOptions)
        if getattr(options, f.name) != getattr(default, f.name)
    }
    assert changed == {name}
    if name in {f.name for f in dataclasses.fields(InferenceSettings)}:
        assert getattr(inference_settings(LOADED, options), name) == expected


def test_defaults_match_the_dataclass_and_the_resolved_values_win():
    writer = object()
    options = predict_options(_parse(), device="cpu", write_label=writer)
    assert options == PredictOptions(device="cpu", write_label=writer, overlap=options.overlap)
    assert options.overlap == InferenceSettings((8, 8, 8)).overlap
    assert predict_options(_parse("--device", "cuda:1")).device == "cuda:1"
    assert predict_options(_parse("--device", "auto"), device="cpu").device == "cpu"
    assert predict_options(_parse("--no-skip", "--skip-suv", "2")).skip_suv is None
    assert inference_settings(LOADED, predict_options(_parse("--no-skip"))).skip_suv is None
    settings = inference_settings(LOADED, predict_options(_parse(), device="cpu"))
    assert settings == InferenceSettings((32, 32, 16), suv_scale=10.0, device="cpu")
