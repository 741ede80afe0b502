"""Model packages (export -> predict from the zip) and ONNX / TorchScript export with a parity check."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from h2aseg import __version__
from h2aseg.cli import main as cli_main
from h2aseg.data.synthetic import generate_cohort
from h2aseg.errors import DataError
from h2aseg.export.package import FORMAT_VERSION, is_package, load_package, read_metadata

TINY_COHORT = {"pet_shape": (32, 32, 32), "pet_spacing": (8.0, 8.0, 8.0), "ct_spacing": (8.0, 8.0, 8.0)}
TINY_TRAIN = [
    "--model",
    "h2aseg",
    "--channels",
    "2",
    "4",
    "4",
    "8",
    "8",
    "--model-options",
    '{"window_size": [4, 4, 4]}',
    "--patch",
    "32",
    "32",
    "32",
    "--batch",
    "2",
    "--steps-per-epoch",
    "1",
    "--epochs",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    generate_cohort("autopet", root / "data", 6, seed=2, lesion_free_fraction=0.0, **TINY_COHORT)
    out = root / "run"
    assert (
        cli_main(
            [
                "train",
                "--data",
                str(root / "data"),
                "--out",
                str(out),
                "--cache",
                str(root / "cache"),
                *TINY_TRAIN,
            ]
        )
        == 0
    )
    return out


def _predict(model: Path, run: Path, out: Path) -> int:
    splits = json.loads((run / "splits.json").read_text())
    return cli_main(
        [
            "predict",
            "--model",
            str(model),
            "--input",
            str(run.parent / "data"),
            "--out",
            str(out),
            "--cases",
            *splits["test"],
            "--save-probabilities",
            "--no-progress",
        ]
    )


def _rewrite(package: Path, target: Path, change) -> Path:
    """Copy ``package`` to ``target`` with ``change(name, bytes) -> bytes`` applied to every member."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, change(name, src.read(name)))
    return target


def test_package_predicts_as_the_run_folder_bit_for_bit_and_carries_a_model_card(run, tmp_path, capsys):
    assert _predict(run, run, tmp_path / "from_run") == 0
    splits = json.loads((run / "splits.json").read_text())
    assert (
        cli_main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "from_run"),
                "--gt",
                str(run.parent / "data"),
                "--layout",
                "autopet",
                "--cases",
                *splits["test"],
                "--out",
                str(run / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    package = tmp_path / "model.h2aseg.zip"
    assert (
        cli_main(["export", str(run), "--out", str(package), "--licence", "CC-BY-4.0", "--name", "tiny"]) == 0
    )
    assert "parameters" in capsys.readouterr().out
    assert is_package(package) and not is_package(run / "last.pt")
    with zipfile.ZipFile(package) as archive:
        assert set(archive.namelist()) == {"model.pt", "config.yaml", "preprocessing.json", "metadata.json"}
        weights = archive.read("model.pt")
    card = read_metadata(package)
    assert (
        card["format_version"] == FORMAT_VERSION and card["licence"] == "CC-BY-4.0" and card["name"] == "tiny"
    )
    assert card["versions"]["h2aseg"] == __version__ and card["versions"]["torch"] == torch.__version__
    assert card["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert card["weights"]["from"] in ("best.pt", "last.pt")
    loaded = load_package(package)
    assert card["network"]["name"] == "h2aseg"
    assert card["network"]["parameters"] == sum(p.numel() for p in loaded.model.parameters())
    data = card["training_data"]
    assert data["cases"] == 6 and 1 <= data["patients"] <= 6 and sum(data["splits"].values()) == 6
    assert data["splits_sha256"] == hashlib.sha256((run / "splits.json").read_bytes()).hexdigest()
    assert "validation" in card["metrics"] and card["created"].endswith("+00:00")
    test_metrics = card["metrics"]["test"]  # found as RUN_DIR/eval/summary.json
    assert test_metrics["source"] == "summary.json" and test_metrics["n_cases"] == len(splits["test"])
    assert card["preprocessing"]["label_mode"] == "binary"

    assert _predict(package, run, tmp_path / "from_zip") == 0
    files = sorted(p.relative_to(tmp_path / "from_run") for p in (tmp_path / "from_run").rglob("*.nii.gz"))
    assert files and files == sorted(
        p.relative_to(tmp_path / "from_zip") for p in (tmp_path / "from_zip").rglob("*.nii.gz")
    )
    for name in files:
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "from_run" / name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "from_zip" / name)))
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (
            name
        )  # labels and probabilities, bit for bit


def test_tampered_or_newer_package_is_refused_in_one_line(run, tmp_path, capsys):
    package = tmp_path / "model.h2aseg.zip"
    assert cli_main(["export", str(run), "--out", str(package)]) == 0

    def flip(name: str, data: bytes) -> bytes:
        if name != "model.pt":
            return data
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]

    tampered = _rewrite(package, tmp_path / "tampered.h2aseg.zip", flip)
    with pytest.raises(DataError, match="do not match the sha256"):
        load_package(tampered)
    capsys.readouterr()
    assert (
        cli_main(
            ["predict", "--model", str(tampered), "--input", str(tmp_path), "--out", str(tmp_path / "p")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err

    def newer(name: str, data: bytes) -> bytes:
        if name != "metadata.json":
            return data
        card = json.loads(data)
        card["format_version"] = FORMAT_VERSION + 1
        return json.dumps(card).encode()

    with pytest.raises(DataError, match="newer than this h2aseg reads"):
        load_package(_rewrite(package, tmp_path / "newer.h2aseg.zip", newer))


def test_export_needs_a_run_folder(tmp_path):
    with pytest.raises(DataError, match="not a run folder"):
        from h2aseg.export.package import export_package

        export_package(tmp_path / "nothing", tmp_path / "m.h2aseg.zip")


def test_onnx_export_matches_pytorch_within_1e_4(run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "model.onnx"
    assert cli_main(["export", str(run), "--onnx", str(target)]) == 0
    line = capsys.readouterr().out
    diff = float(re.search(r"probability difference\| to PyTorch ([0-9.e+-]+)", line).group(1))
    assert diff <= 1e-4
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["ct", "pet"]
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch of patches
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]


def test_torchscript_export_matches_pytorch(run, tmp_path, capsys):
    target = tmp_path / "model.ts"
    assert cli_main(["export", str(run), "--torchscript", str(target)]) == 0
    diff = float(
        re.search(r"probability difference\| to PyTorch ([0-9.e+-]+)", capsys.readouterr().out).group(1)
    )
    assert diff <= 1e-4
    traced = torch.jit.load(str(target))
    logits, probabilities = traced(torch.zeros(3, 1, 32, 32, 32), torch.zeros(3, 1, 32, 32, 32))
    assert logits.shape == probabilities.shape == (3, 1, 32, 32, 32)


def test_attention_network_whose_norms_follow_reshapes_exports_by_moments(tmp_path):
    pytest.importorskip("onnxruntime")
    from h2aseg.export.onnx_export import check_parity, export_onnx
    from h2aseg.models.registry import build_model

    # the authors' release network: ONNX's InstanceNormalization cannot take its run-time reshaped maps
    model = build_model(
        "h2aseg_release", channels=(2, 4, 4, 8, 8), window_size=(4, 4, 4), patch_size=(32, 32, 32)
    )
    path = export_onnx(model.eval(), (32, 32, 32), tmp_path / "release.onnx")
    assert check_parity(model, (32, 32, 32), path) <= 1e-4


@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_by_moments_equals_instance_norm(affine):
    from h2aseg.export.onnx_export import InstanceNormByMoments

    norm = torch.nn.InstanceNorm3d(3, affine=affine, eps=1e-5)
    if affine:
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 3, 4, 5, 6) * 3 + 1
    torch.testing.assert_close(InstanceNormByMoments(norm)(x), norm(x), rtol=1e-5, atol=1e-5)
