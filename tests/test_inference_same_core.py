"""Training validation and ``predict`` get the same probabilities from the one inference core."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

import h2aseg.training.trainer as trainer_module
from h2aseg.checkpoint import save_checkpoint
from h2aseg.config import RunConfig
from h2aseg.inference.core import predict_probabilities
from h2aseg.inference.predictor import PredictOptions, inference_settings, load_trained_model
from h2aseg.models.registry import build_network, preprocess_config_for


def _tiny_run(tmp_path):
    config = RunConfig()
    config.model.name = "h2aseg"
    config.model.options = {"channels": [2, 2, 4, 4, 4]}
    config.train.patch = [32, 32, 32]
    config.train.device = "cpu"
    torch.manual_seed(0)
    model = build_network(config)
    with torch.no_grad():  # a head that says "lesion" somewhere, so the labels are not all background
        for head in model.heads.values():
            head.bias.fill_(0.0)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, tmp_path / "best.pt")
    return config


def test_validation_and_predict_share_the_core(tmp_path, monkeypatch):
    config = _tiny_run(tmp_path)
    loaded = load_trained_model(tmp_path)
    rng = np.random.default_rng(1)
    shape = (40, 36, 48)
    data = {
        "ct": rng.uniform(0, 1, (1, *shape)).astype(np.float32),
        "pet": rng.uniform(0, 0.6, (1, *shape)).astype(np.float32),
        "label": (rng.uniform(size=(1, *shape)) > 0.9).astype(np.uint8),
    }
    cache = SimpleNamespace(load=lambda case_id: data, config=preprocess_config_for(config))

    seen = []

    def recording_core(*args, **kwargs):
        out = predict_probabilities(*args, **kwargs)
        seen.append((args[3], out))
        return out

    monkeypatch.setattr(trainer_module, "predict_probabilities", recording_core)
    trainer = trainer_module.Trainer(config, tmp_path / "run", progress=False)
    score = trainer._validate(loaded.model, cache, ["case"])
    assert len(seen) == 1 and 0.0 <= score <= 1.0
    validation_settings, validation_probabilities = seen[0]

    predict_settings = inference_settings(loaded, PredictOptions())
    assert validation_settings == predict_settings  # one set of defaults: overlap, skipping, precision, batch
    predicted = predict_probabilities(loaded.model, data["ct"], data["pet"], predict_settings)
    assert torch.equal(predicted, validation_probabilities)
    assert 0.0 < (predicted > 0.5).float().mean() < 1.0
