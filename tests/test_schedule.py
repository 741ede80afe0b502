"""Learning-rate schedules as functions of (epoch, seconds trained)."""

from __future__ import annotations

import math

import pytest

from h2aseg.errors import ConfigError
from h2aseg.training.schedule import learning_rate


def test_exponential_schedule_multiplies_by_the_decay_each_epoch():
    assert learning_rate("exponential", 1e-3, 1, 100, 0.5) == pytest.approx(1e-3)
    assert learning_rate("exponential", 1e-3, 4, 100, 0.5) == pytest.approx(1e-3 / 8)
    assert learning_rate("exponential", 1e-4, 50, 100, 1.0) == pytest.approx(
        1e-4
    )  # the paper's constant rate


def test_poly_schedule_follows_the_epochs_without_a_budget():
    assert learning_rate("poly", 1e-2, 1, 10) == pytest.approx(1e-2)
    assert learning_rate("poly", 1e-2, 6, 10) == pytest.approx(1e-2 * 0.5**0.9)
    assert learning_rate("poly", 1e-2, 11, 10) == 0.0


def test_poly_schedule_uses_the_time_budget_when_it_runs_out_first():
    # 1000 planned epochs, but 3 of 4 budgeted minutes are gone: progress 0.75, not 0.002.
    lr = learning_rate("poly", 1e-3, 3, 1000, seconds=180.0, budget_seconds=240.0)
    assert lr == pytest.approx(1e-3 * 0.25**0.9)
    assert learning_rate("poly", 1e-3, 3, 1000, seconds=300.0, budget_seconds=240.0) == 0.0
    # The epoch count still wins when it is further along than the clock.
    assert learning_rate("poly", 1e-3, 901, 1000, seconds=1.0, budget_seconds=240.0) == pytest.approx(
        1e-3 * 0.1**0.9
    )
    assert not math.isnan(learning_rate("poly", 1e-3, 1, 0))


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="cosine"):
        learning_rate("cosine", 1e-3, 1, 10)
