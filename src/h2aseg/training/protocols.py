"""Named training protocols: a preset of settings that ``h2aseg train --protocol NAME`` starts from.

A protocol is applied to a fresh :class:`~h2aseg.config.RunConfig` before the command-line options, so
every option still overrides it; the run's ``config.yaml`` records the protocol's name and every value it
set, so a run is reproducible from its folder alone.

- ``paper`` (default): the paper's Sec. 3.1 settings as written (the dataclass defaults).
- ``cpu``: the recipe that trains H2ASeg in minutes on two CPU cores (the demo's), measured in
  ``benchmarks/results/small_lesions.md``.

A protocol may also set network keywords per network name (``model``; ``"*"`` for every network), e.g.
narrower channels for the H2ASeg family; those go under any the user gives (``--channels``,
``--model-options``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from h2aseg.config import RunConfig
from h2aseg.errors import ConfigError

__all__ = ["Protocol", "PROTOCOLS", "apply_protocol"]


@dataclass(frozen=True)
class Protocol:
    """A named preset: ``train`` overrides TrainConfig fields; ``model`` maps a network name (or ``"*"``)
    to network keywords."""

    name: str
    description: str
    train: dict[str, Any] = field(default_factory=dict)
    model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def model_options(self, model_name: str) -> dict[str, Any]:
        """Keywords this protocol gives network ``model_name`` (``"*"`` first, then the name's own)."""
        return {**self.model.get("*", {}), **self.model.get(model_name, {})}


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS[protocol.name] = protocol
    return protocol


register_protocol(Protocol(
    "paper",
    "the paper's Sec. 3.1: Adam lr 1e-4, weight decay 1e-5, x0.99 per epoch, 200 epochs, batch 2, "
    "patch 128x128x64, pos 1 / neg 1 crops, axial rotation p 0.8",
))


H2ASEG_FAMILY = ("h2aseg", "h2aseg_no_mcsa", "h2aseg_no_tamw", "dual_resunet3d")

register_protocol(Protocol(
    "cpu",
    "minutes on a CPU (the demo's): patch 32x32x32, batch 2, Adam lr 1e-3 with the poly schedule, gradient cap 12, "
    "no rotation, lesion anywhere in the patch, channels-last, dropout 0, H2ASeg family at channels 4-64",
    train={"patch": [32, 32, 32], "batch": 2, "lr": 1e-3, "lr_schedule": "poly", "grad_clip": 12.0,
           "rotate_prob": 0.0, "lesion_offset": 1.0, "channels_last": True},
    model={"*": {"dropout": 0.0}, **{name: {"channels": [4, 8, 16, 32, 64]} for name in H2ASEG_FAMILY}},
))


def apply_protocol(config: RunConfig, name: str, network_options: bool = True) -> RunConfig:
    """Set ``config`` to protocol ``name`` (in place, returned); unknown names are a one-line ConfigError.

    With ``network_options``, the keywords for ``config.model.name`` go under the options already there;
    the CLI sets them with :func:`protocol_model_options` once the network is chosen.
    """
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    for key, value in protocol.train.items():
        if not hasattr(config.train, key):
            raise ConfigError(f"protocol {name!r} sets unknown training setting {key!r}")
        setattr(config.train, key, list(value) if isinstance(value, tuple) else value)
    if network_options:
        config.model.options = {**protocol.model_options(config.model.name), **config.model.options}
    config.train.protocol = name
    return config


def protocol_model_options(name: str, model_name: str) -> dict[str, Any]:
    """The network keywords protocol ``name`` gives ``model_name`` (empty for an unknown protocol)."""
    protocol = PROTOCOLS.get(name)
    return protocol.model_options(model_name) if protocol else {}
