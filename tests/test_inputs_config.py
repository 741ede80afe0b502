"""Issue 11: typed, validated run configuration (YAML files, the CLI and the Python API share one check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from h2aseg.cli import main as cli_main
from h2aseg.config import RunConfig, TrainConfig, _Validated
from h2aseg.errors import ConfigError


def load(tmp_path: Path, text: str) -> RunConfig:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return RunConfig.load(path)


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert "\n" not in message and "run.yaml" in message
    return message


def test_yaml_1e_minus_4_without_a_dot_is_converted_to_a_float(tmp_path):
    config = load(tmp_path, "train:\n  lr: 1e-4\n  weight_decay: 3e-5\n  epochs: 5\n")
    assert type(config.train.lr) is float and config.train.lr == 1e-4  # before: the string '1e-4'
    assert config.train.weight_decay == pytest.approx(3e-5) and config.train.epochs == 5


def test_unknown_key_is_refused_with_the_closest_valid_name(tmp_path):
    message = refused(tmp_path, "train:\n  epoch: 5\n")
    assert message.endswith("train.epoch: unknown setting; did you mean 'epochs'?")
    assert "did you mean 'data'" in refused(tmp_path, "dta:\n  root: x\n")


def test_a_wrong_choice_is_refused_naming_the_key_and_the_choices(tmp_path):
    message = refused(tmp_path, "data:\n  label_mode: multi\n")
    assert "data.label_mode: 'multi' is not one of binary, multiclass" in message
    assert "train.lr_schedule" in refused(tmp_path, "train:\n  lr_schedule: cosine\n")
    assert "data.layout" in refused(tmp_path, "data:\n  layout: nnUNet\n")
    assert "train.protocol" in refused(tmp_path, "train:\n  protocol: fast\n")


def test_a_negative_epoch_count_and_other_out_of_range_values_are_refused(tmp_path):
    assert "train.epochs: must be >= 1, got -3" in refused(tmp_path, "train:\n  epochs: -3\n")
    assert "train.rotate_prob" in refused(tmp_path, "train:\n  rotate_prob: 1.5\n")
    assert "train.patch: expected 3 values" in refused(tmp_path, "train:\n  patch: [64, 64]\n")
    assert "train.lr: expected a number, got 'fast'" in refused(tmp_path, "train:\n  lr: fast\n")
    assert "train.batch: expected a whole number" in refused(tmp_path, "train:\n  batch: 2.5\n")


def test_yaml_on_and_off_for_amp_are_read_as_the_choices(tmp_path):
    assert load(tmp_path, "train:\n  amp: off\n").train.amp == "off"  # YAML 1.1 reads a bare off as false


def test_the_python_api_and_assignments_share_the_check():
    config = TrainConfig(lr="2e-3")
    assert config.lr == 0.002
    with pytest.raises(ConfigError, match="train.amp"):
        config.amp = "sometimes"
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        config.epoch = 3  # a typo no longer makes a new attribute in silence


def test_new_fields_are_validated_from_their_annotation():
    @dataclass
    class Extra(_Validated):
        count: int = 1
        ratio: float | None = None
        names: list[str] = field(default_factory=list)

    assert Extra(count="4", ratio="1e-2").ratio == 0.01
    with pytest.raises(ConfigError, match="count: expected a whole number"):
        Extra(count="many")
    with pytest.raises(ConfigError, match=r"names\[1\]: expected text"):
        Extra(names=["a", 3])


def test_train_verb_refuses_a_bad_config_file_in_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("train:\n  epochs: -1\n")
    code = cli_main(
        [
            "train",
            "--config",
            str(tmp_path / "bad.yaml"),
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "train.epochs: must be >= 1" in err
