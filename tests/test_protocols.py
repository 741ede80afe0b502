"""Named training protocols: `h2aseg train --protocol NAME` starts from a preset the options still
override."""

from __future__ import annotations

import argparse

import pytest

from h2aseg.config import RunConfig
from h2aseg.errors import ConfigError
from h2aseg.training.cli import add_training_options, config_from_args
from h2aseg.training.protocols import PROTOCOLS, apply_protocol


def _config(*argv: str) -> RunConfig:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_training_options(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_paper_protocol_is_the_dataclass_defaults():
    assert _config("--protocol", "paper").train == RunConfig().train
    assert _config("--protocol", "paper").model.options == {}


def test_cpu_protocol_sets_the_cpu_recipe_and_options_still_win():
    config = _config("--protocol", "cpu", "--lr", "3e-3")
    assert config.train.protocol == "cpu"
    assert (
        config.train.patch == [32, 32, 32]
        and config.train.lr_schedule == "poly"
        and config.train.rotate_prob == 0.0
    )
    assert config.train.lesion_offset == 0.5
    assert config.train.lr == 3e-3  # the option overrides the preset
    assert config.model.options == {"dropout": 0.0, "channels": [4, 8, 16, 32, 64], "mcsa_gate_init": 0.0}


def test_cpu_protocol_gates_mcsa_only_where_there_is_mcsa_and_the_paper_has_no_gates():
    for name in ("h2aseg", "h2aseg_no_tamw"):
        assert _config("--protocol", "cpu", "--model", name).model.options["mcsa_gate_init"] == 0.0
    for name in ("h2aseg_no_mcsa", "dual_resunet3d"):
        assert "mcsa_gate_init" not in _config("--protocol", "cpu", "--model", name).model.options
    assert "mcsa_gate_init" not in _config("--protocol", "paper").model.options
    # the paper's parametrisation stays one option away within the cpu recipe
    options = _config("--protocol", "cpu", "--model-options", '{"mcsa_gate_init": null}').model.options
    assert options["mcsa_gate_init"] is None


def test_cpu_protocol_gives_network_keywords_by_network_name():
    # H2ASeg's narrow channels must not reach a network with another channel convention
    assert _config("--protocol", "cpu", "--model", "basicunet").model.options == {"dropout": 0.0}
    assert _config("--protocol", "cpu", "--channels", "2", "4", "8", "8", "8").model.options["channels"] == [
        2,
        4,
        8,
        8,
        8,
    ]


def test_unknown_protocol_is_one_line_config_error():
    with pytest.raises(ConfigError, match="unknown protocol 'fast'"):
        apply_protocol(RunConfig(), "fast")
    assert {"paper", "cpu"} <= set(PROTOCOLS)


def test_every_config_field_with_an_option_is_taken_from_the_command_line():
    config = _config(
        "--patch",
        "64",
        "64",
        "32",
        "--target-spacing",
        "2",
        "2",
        "3",
        "--layout",
        "autopet",
        "--lesion-offset",
        "0.25",
        "--rotate-degrees",
        "10",
        "--max-voxels",
        "1000000",
    )
    assert config.train.patch == [64, 64, 32] and config.data.target_spacing == [2.0, 2.0, 3.0]
    assert config.data.layout == "autopet" and config.data.max_voxels == 1_000_000
    assert config.train.lesion_offset == 0.25 and config.train.rotate_degrees == 10.0
    assert _config().train == RunConfig().train  # options not given leave the config alone
