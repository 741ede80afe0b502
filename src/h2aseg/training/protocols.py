"""Named training protocols: a preset of settings that ``h2aseg train --protocol NAME`` starts from.

A protocol is applied to a fresh :class:`~h2aseg.config.RunConfig` before the command-line options, so
every option still overrides it; the run's ``config.yaml`` records the protocol's name and every value it
set, so a run is reproducible from its folder alone.

- ``paper`` (default): the paper's Sec. 3.1 settings as written (the dataclass defaults).
- ``cpu``: the recipe that trains H2ASeg in minutes on two CPU cores (the demo's), measured in
  ``benchmarks/results/small_lesions.md``.

A protocol may also set network keywords (``model``), e.g. narrower channels; those are merged into
``config.model.options`` under any the user gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from h2aseg.config import RunConfig
from h2aseg.errors import ConfigError

__all__ = ["Protocol", "PROTOCOLS", "apply_protocol"]


@dataclass(frozen=True)
class Protocol:
    """A named preset: ``train`` overrides TrainConfig fields, ``model`` network keywords."""

    name: str
    description: str
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS[protocol.name] = protocol
    return protocol


register_protocol(Protocol(
    "paper",
    "the paper's Sec. 3.1: Adam lr 1e-4, weight decay 1e-5, x0.99 per epoch, 200 epochs, batch 2, "
    "patch 128x128x64, pos 1 / neg 1 crops, axial rotation p 0.8",
))


def apply_protocol(config: RunConfig, name: str) -> RunConfig:
    """Set ``config`` to protocol ``name`` (in place, returned); unknown names are a one-line ConfigError."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    for key, value in protocol.train.items():
        if not hasattr(config.train, key):
            raise ConfigError(f"protocol {name!r} sets unknown training setting {key!r}")
        setattr(config.train, key, list(value) if isinstance(value, tuple) else value)
    config.model.options = {**protocol.model, **config.model.options}
    config.train.protocol = name
    return config
