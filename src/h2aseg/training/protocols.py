"""Named training protocols: a preset of settings that ``h2aseg train --protocol NAME`` starts from.

A protocol is applied to a fresh :class:`~h2aseg.config.RunConfig` before the command-line options, so
every option still overrides it; the run's ``config.yaml`` records the protocol's name and every value it
set, so a run is reproducible from its folder alone.

- ``paper`` (default): the paper's Sec. 3.1 settings as written (the dataclass defaults).
- ``release``: what the authors' ``train.py`` does (batches of 2 volumes × 2 crops, rotation by any axial
  angle, softmax CE + Dice with background on 2 classes, dropout 0.5); with ``--model h2aseg_release`` it
  trains the network behind Table 1 (see ``docs/fidelity.md``).
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


register_protocol(
    Protocol(
        "paper",
        "the paper's Sec. 3.1: Adam lr 1e-4, weight decay 1e-5, x0.99 per epoch, 200 epochs, batch 2, "
        "patch 128x128x64, pos 1 / neg 1 crops, axial rotation p 0.8",
    )
)


H2ASEG_FAMILY = ("h2aseg", "h2aseg_no_mcsa", "h2aseg_no_tamw", "dual_resunet3d")
WITH_MCSA = ("h2aseg", "h2aseg_no_tamw")
CPU_CHANNELS = (4, 8, 16, 32, 64)
MCSA_GATES = {"mcsa_gate_init": 0.0}

register_protocol(
    Protocol(
        "cpu",
        "minutes on a CPU (the demo's): patch 32x32x32, batch 2, Adam lr 1e-3 with the poly schedule, "
        "gradient cap 12, no rotation, lesion within +-7 voxels of the patch centre, channels-last, "
        "dropout 0, H2ASeg family at channels 4-64, MCSA's branches gated from 0 (mcsa_gate_init 0; "
        "benchmarks/results/small_lesions.md 10.1)",
        train={
            "patch": [32, 32, 32],
            "batch": 2,
            "lr": 1e-3,
            "lr_schedule": "poly",
            "grad_clip": 12.0,
            "rotate_prob": 0.0,
            "lesion_offset": 0.5,
            "channels_last": True,
        },
        # MCSA starts as the identity (where there is MCSA): with full-strength branches from step 1 the
        # networks with MCSA called hot organs lesion on large-lesion cohorts (small_lesions.md 10); not in
        # the paper
        model={
            "*": {"dropout": 0.0},
            **{
                name: {"channels": list(CPU_CHANNELS), **(MCSA_GATES if name in WITH_MCSA else {})}
                for name in H2ASEG_FAMILY
            },
        },
    )
)

#: MONAI's ``RandRotated(range_z=45)`` in the release's train.py reads 45 as radians: angles uniform in ±45
#: rad, which wrap round the circle 14.3 times, so every axial angle occurs (densities within 5 % of uniform).
#: ±180° gives every angle with exactly uniform density.
RELEASE_ROTATE_DEGREES = 180.0

register_protocol(
    Protocol(
        "release",
        "the authors' train.py (the run behind Table 1): 2 volumes x 2 crops = 4 patches per step, centred "
        "pos 1 / neg 1 crops, axial rotation p 0.8 by any angle (+-180 deg; MONAI reads the release's "
        "range_z=45 as radians), 2-class softmax CE + Dice with background, dropout 0.5 (H2ASeg family and "
        "h2aseg_release), Adam lr 1e-4, weight decay 1e-5, x0.99 per epoch, 200 epochs, patch 128x128x64; "
        "use --model h2aseg_release for the release's network",
        train={
            "epochs": 200,
            "batch": 4,
            "samples_per_volume": 2,
            "patch": [128, 128, 64],
            "lr": 1e-4,
            "weight_decay": 1e-5,
            "lr_decay": 0.99,
            "lr_schedule": "exponential",
            "rotate_prob": 0.8,
            "rotate_degrees": RELEASE_ROTATE_DEGREES,
            "lesion_offset": 0.0,
            "loss": "release",
            "deep_supervision_weights": [5.0, 4.0, 3.0, 2.0, 1.0],
        },
        model={
            "*": {"num_classes": 2},
            **{
                name: {"dropout": 0.5, "attention_dropout": 0.5}
                for name in (*H2ASEG_FAMILY, "h2aseg_release")
            },
        },
    )
)


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
