"""h2aseg_release: the release's parameter count and names, weight import,
and the release training protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch
import yaml

from h2aseg.cli import main as cli_main
from h2aseg.config import RunConfig
from h2aseg.data.layouts import discover_cases
from h2aseg.data.synthetic import generate_cohort
from h2aseg.errors import ConfigError
from h2aseg.models.h2aseg_release import H2ASegRelease
from h2aseg.models.registry import build_model
from h2aseg.models.release_import import convert_state_dict, export_state_dict
from h2aseg.training.losses import DeepSupervisionLoss
from h2aseg.training.protocols import PROTOCOLS, apply_protocol

RELEASE_KEYS = json.loads((Path(__file__).parent / "data" / "release_keys.json").read_text())
TINY = {"channels": (4, 8, 8, 16, 16), "patch_size": (32, 32, 16)}


def random_release_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the release's key names and shapes (128×128×64, 1 channel, 2 classes),
    random values."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen) for name, shape in RELEASE_KEYS["keys"]}


def test_release_network_has_the_release_parameter_count():
    model = build_model("h2aseg_release", patch_size=(128, 128, 64), num_classes=2)
    assert sum(p.numel() for p in model.parameters()) == RELEASE_KEYS["parameters"] == 7_164_869
    assert len(model.state_dict()) == len(RELEASE_KEYS["keys"])


def test_binary_data_builds_the_two_class_release_network():
    assert build_model("h2aseg_release", num_classes=1, **TINY).heads["1"][-1].out_channels == 2


def test_release_keys_import_and_round_trip():
    state = random_release_state()
    model = H2ASegRelease()
    model.load_state_dict(convert_state_dict(state, model))
    back = export_state_dict(model)
    assert list(back) == list(state)
    for name, tensor in state.items():
        assert torch.equal(back[name], tensor), name


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.update(
                {"encoder.conv1_ct.conv_block.0.weightx": s.pop("encoder.conv1_ct.conv_block.0.weight")}
            ),
            "unexpected key 'encoder.conv1_ct.conv_block.0.weightx'",
        ),
        (lambda s: s.pop("decoder.tamw2.CA_back.fc2.bias"), "missing key 'decoder.tamw2.CA_back.fc2.bias'"),
        (lambda s: s.update({"decoder.output1.conv.2.bias": torch.zeros(3)}), "has shape (3,)"),
    ],
)
def test_wrong_key_is_a_one_line_error_naming_it(edit, message):
    state = random_release_state()
    edit(state)
    with pytest.raises(ConfigError) as err:
        convert_state_dict(state, H2ASegRelease(), source="weights.pth")
    text = str(err.value)
    assert message in text and text.startswith("weights.pth") and "\n" not in text


def test_import_release_refuses_a_wrong_key_on_the_command_line(tmp_path, capsys):
    state = random_release_state()
    state["encoder.sa9.bogus"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    code = cli_main(
        [
            "import-release",
            "--checkpoint",
            str(tmp_path / "bad.pth"),
            "--patch",
            "128",
            "128",
            "64",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unexpected key 'encoder.sa9.bogus'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "best.pt").exists()


def test_release_output_matches_a_hand_written_tamw_step():
    # TAMW of the release: only CT/PET masked, background term subtracted, tanh inside the MLP.
    torch.manual_seed(0)
    model = H2ASegRelease(**TINY).eval()
    tamw = model.tamw["1"]
    skips, rest = torch.randn(1, 8, 4, 4, 2), torch.randn(1, 16, 4, 4, 2)
    fore = torch.rand(1, 1, 4, 4, 2)
    features = torch.cat((skips, rest), dim=1)
    m_fore, m_back = torch.cat((skips * fore, rest), 1), torch.cat((skips * (1 - fore), rest), 1)

    def weights(module, x):
        fc1, fc2 = module.mlp[0], module.mlp[2]
        return torch.tanh(fc2(torch.tanh(fc1(x.mean(dim=(2, 3, 4))))))[:, :, None, None, None]

    expected = (
        features + weights(tamw.fore_weights, m_fore) * m_fore - weights(tamw.back_weights, m_back) * m_back
    )
    torch.testing.assert_close(tamw(features, fore, 1 - fore), expected)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    generate_cohort(
        "autopet",
        root,
        2,
        seed=3,
        pet_shape=(32, 32, 48),
        pet_spacing=(8.0, 8.0, 8.0),
        ct_spacing=(4.0, 4.0, 4.0),
    )
    return root


def test_imported_run_folder_predicts_a_synthetic_case(cohort, tmp_path):
    model = H2ASegRelease(**TINY)
    release_state = {k: v + 0.01 * torch.randn_like(v) for k, v in export_state_dict(model).items()}
    torch.save({"state_dict": release_state}, tmp_path / "release.pth")
    assert (
        cli_main(
            [
                "import-release",
                "--checkpoint",
                str(tmp_path / "release.pth"),
                "--patch",
                "32",
                "32",
                "16",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    config = RunConfig.load(tmp_path / "run" / "config.yaml")
    assert config.model.name == "h2aseg_release" and config.model.options["channels"] == [4, 8, 8, 16, 16]
    case = discover_cases(cohort, "autopet").cases[0]
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(tmp_path / "run"),
                "--input",
                str(cohort),
                "--cases",
                case.case_id,
                "--out",
                str(tmp_path / "pred"),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    pred = sitk.ReadImage(str(tmp_path / "pred" / f"{case.case_id}.nii.gz"))
    assert pred.GetSize() == sitk.ReadImage(str(case.pet)).GetSize()
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    torch.testing.assert_close(
        saved["model"]["heads.1.2.weight"], release_state["decoder.output1.conv.2.weight"]
    )


def test_release_protocol_trains_four_patches_per_step(cohort, tmp_path):
    out = tmp_path / "run"
    code = cli_main(
        [
            "train",
            "--protocol",
            "release",
            "--model",
            "h2aseg_release",
            "--data",
            str(cohort),
            "--out",
            str(out),
            "--channels",
            "4",
            "8",
            "8",
            "16",
            "16",
            "--patch",
            "32",
            "32",
            "16",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--val-every",
            "0",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    train = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert train["protocol"] == "release" and train["loss"] == "release"
    assert train["batch"] == 4 and train["samples_per_volume"] == 2  # 2 volumes x 2 crops per step
    assert train["rotate_degrees"] == 180  # the release's range_z=45 is radians: any axial angle
    model = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert model["options"]["dropout"] == 0.5 and model["options"]["num_classes"] == 2
    assert (out / "last.pt").exists()


def test_release_protocol_sets_the_release_loss_and_dropout_for_h2aseg():
    config = apply_protocol(RunConfig(), "release")
    assert (
        "release" in PROTOCOLS and config.train.loss == "release" and config.model.options["dropout"] == 0.5
    )
    outputs = build_model(
        "h2aseg",
        **{
            **config.model.options,
            "channels": (2, 4, 4, 8, 8),
            "window_size": (4, 4, 2),
            "patch_size": (32, 32, 32),
        },
    ).train()(torch.randn(2, 1, 32, 32, 32), torch.randn(2, 1, 32, 32, 32))
    loss = DeepSupervisionLoss(kind="release")(outputs, (torch.rand(2, 1, 32, 32, 32) > 0.9).float())
    assert loss.requires_grad and torch.isfinite(loss)


def test_table3_counts_the_release_background_term_with_its_minus_sign_and_ct_first():
    from h2aseg.benchmarking.tamw_analysis import TAMWRecorder, has_tamw

    model = H2ASegRelease(**TINY).eval()
    assert has_tamw(model)
    for k, tamw in model.tamw.items():
        c = model.channels[int(k) - 1]
        for weights, first, rest in ((tamw.fore_weights, 5.0, -5.0), (tamw.back_weights, 5.0, 5.0)):
            last = weights.mlp[2]
            torch.nn.init.zeros_(last.weight)
            last.bias.data.fill_(rest)
            last.bias.data[:c] = first  # the release's first C^k channels are CT
    recorder = TAMWRecorder(model)
    with torch.no_grad(), recorder.attached():
        model(torch.randn(1, 1, 32, 32, 16), torch.randn(1, 1, 32, 32, 16))
    rows = recorder.case_rows("case")
    assert [r["depth"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert (row["fore_ct"], row["fore_pet"]) == (100.0, 0.0)
        # raw W_back > 0 everywhere, but the release subtracts that term:
        # no channel's background is emphasised
        assert (row["back_ct"], row["back_pet"]) == (0.0, 0.0)


def test_h2aseg_accepts_mcsa_at_level_1_as_the_paper_words_it():
    model = build_model(
        "h2aseg",
        mcsa_levels=(1, 2, 3, 4, 5),
        channels=(2, 4, 4, 8, 8),
        window_size=(4, 4, 2),
        patch_size=(32, 32, 32),
    ).eval()
    assert "1" in model.mcsa and model.mcsa["1"].has_inter_window
    assert model(torch.randn(1, 1, 32, 32, 32), torch.randn(1, 1, 32, 32, 32)).shape == (1, 1, 32, 32, 32)
