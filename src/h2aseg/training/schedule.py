"""Learning-rate schedules, as a pure function of training progress.

The learning rate of epoch ``e`` (1-based) is computed from the base rate, the epoch and the seconds of
training done before it, so a resumed run needs only those two numbers (both are in ``last.pt``):

* ``exponential``: ``lr · lr_decay^(e − 1)`` (the default; ``lr_decay`` = 1 keeps the paper's constant rate);
* ``poly``: nnU-Net's ``lr · (1 − progress)^0.9``, where progress is the larger of ``(e − 1) / epochs``
  and, when the run has a time budget, ``seconds / budget``. A run stopped by its time budget therefore
  ends near a learning rate of 0 instead of wherever an epoch count it never reaches would have put it.
  Time-based progress depends on the machine's speed, so such runs are not bit-for-bit repeatable.
"""

from __future__ import annotations

from h2aseg.errors import ConfigError

SCHEDULES = ("exponential", "poly")
POLY_EXPONENT = 0.9


def learning_rate(
    kind: str,
    base_lr: float,
    epoch: int,
    epochs: int,
    lr_decay: float = 0.99,
    seconds: float = 0.0,
    budget_seconds: float | None = None,
) -> float:
    """The learning rate for 1-based ``epoch`` after ``seconds`` of training (see the module doc)."""
    if kind == "exponential":
        return base_lr * lr_decay ** (epoch - 1)
    if kind == "poly":
        progress = (epoch - 1) / max(epochs, 1)
        if budget_seconds:
            progress = max(progress, seconds / budget_seconds)
        return base_lr * max(0.0, 1.0 - min(progress, 1.0)) ** POLY_EXPONENT
    raise ConfigError(f"unknown learning-rate schedule {kind!r}: choose one of {', '.join(SCHEDULES)}")
