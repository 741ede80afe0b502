"""``h2aseg import-release``: weights trained with the authors' ``train.py`` as an h2aseg run folder.

The release saves ``torch.save(model.state_dict(), ...)`` of its ``H2ASeg``. :data:`KEY_TABLE` maps every
one of its parameter names onto :class:`~h2aseg.models.h2aseg_release.H2ASegRelease` (the one place where
those names live); shapes are then checked against the network built for the checkpoint. The file is read
with ``torch.load(..., weights_only=True)``, so opening it never runs code. The run folder written
(``config.yaml``, ``best.pt``, ``train_summary.json``) is what ``h2aseg train`` would leave, so ``predict``,
``evaluate`` (on its predictions) and ``benchmark`` (as ``OUT/runs/<id>/seed<N>``) take it as they are.

Inputs must be scaled the way the weights were trained: h2aseg's preprocessing (CT window to [0, 1], SUV / 10)
is applied at prediction; weights trained on other intensities need the same scaling to be meaningful.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from h2aseg.atomic import atomic_write_text
from h2aseg.checkpoint import save_checkpoint
from h2aseg.config import RunConfig
from h2aseg.errors import ConfigError, DataError
from h2aseg.models.registry import build_model

#: Release parameter name -> h2aseg_release parameter name. ``{k}`` is a level digit, ``{i}`` a digit,
#: ``{m}`` ct|pet, ``{w}`` fore|back, ``{rest}`` the remaining dotted path (kept as it is); ``{proj}`` and
#: ``{fc}`` are renamed through :data:`NAME_MAPS`. The first row whose release side matches is used.
KEY_TABLE: tuple[tuple[str, str], ...] = (
    ("encoder.conv{k}_{m}.conv_block.{rest}", "encoder_{m}.{k}.body.{rest}"),
    ("encoder.conv{k}_{m}.conv_skip.{rest}", "encoder_{m}.{k}.skip.{rest}"),
    ("encoder.sa{k}.win_merge_{m}.{rest}", "attention.{k}.pool_{m}.{rest}"),
    ("encoder.sa{k}.inter_window_attention.sa_{m}.{proj}.weight", "attention.{k}.inter.to_{m}.{proj}.weight"),
    (
        "encoder.sa{k}.intra_window_attention.sa.sa_{m}.{proj}.weight",
        "attention.{k}.intra.to_{m}.{proj}.weight",
    ),
    ("encoder.sa{k}.IR_{m}{i}.{rest}", "attention.{k}.norm_{m}{i}.{rest}"),
    ("encoder.sa{k}.sa_{m}.{proj}.weight", "attention.{k}.to_{m}.{proj}.weight"),
    ("decoder.conv{k}.conv_block.{rest}", "decode.{k}.body.{rest}"),
    ("decoder.conv{k}.conv_skip.{rest}", "decode.{k}.skip.{rest}"),
    ("decoder.tamw{k}.CA_{w}.{fc}.{rest}", "tamw.{k}.{w}_weights.{fc}.{rest}"),
    ("decoder.output{k}.conv.{rest}", "heads.{k}.{rest}"),
)
NAME_MAPS: dict[str, dict[str, str]] = {
    "proj": {
        "Q_conv_target_target": "q_intra",
        "Q_conv_source_target": "q_cross",
        "K_conv_target_target": "k_intra",
        "K_conv_source_target": "k_cross",
        "V_conv_target_target": "v_intra",
        "V_conv_source_target": "v_cross",
        "out": "out",
    },
    "fc": {"fc1": "mlp.0", "fc2": "mlp.2"},
}
_PLAIN = {"k": r"\d", "i": r"\d", "m": "ct|pet", "w": "fore|back", "rest": r"[\w.]+"}


def _pattern(template: str, names: Mapping[str, Mapping[str, str]]) -> re.Pattern:
    """A template as a regex with one named group per placeholder (``names`` give each map's spellings)."""
    parts = re.split(r"\{(\w+)\}", template)
    regex = ""
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.escape(part)
        else:
            choices = _PLAIN.get(part) or "|".join(re.escape(v) for v in names[part])
            regex += f"(?P<{part}>{choices})"
    return re.compile(regex)


_INVERSE = {field: {ours: theirs for theirs, ours in table.items()} for field, table in NAME_MAPS.items()}
_FORWARD = [(_pattern(src, NAME_MAPS), dst) for src, dst in KEY_TABLE]
_BACKWARD = [(_pattern(dst, _INVERSE), src) for src, dst in KEY_TABLE]


def _translate(key: str, rules, maps: Mapping[str, Mapping[str, str]]) -> str | None:
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match:
            values = {name: maps[name][v] if name in maps else v for name, v in match.groupdict().items()}
            return template.format(**values)
    return None


def release_to_h2aseg(key: str) -> str | None:
    """The h2aseg_release name of a release parameter name (None when no table row matches)."""
    return _translate(key, _FORWARD, NAME_MAPS)


def h2aseg_to_release(key: str) -> str | None:
    """The release's name of an h2aseg_release parameter name (None when no table row matches)."""
    return _translate(key, _BACKWARD, _INVERSE)


def convert_state_dict(
    release_state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str = "checkpoint"
) -> dict:
    """The release's state dict renamed for ``model`` (an H2ASegRelease); ConfigError naming the first misfit.

    Unexpected keys (no table row, or a name the model lacks) are reported before missing ones, and a
    shape that differs names both shapes.
    """
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    for key, value in release_state.items():
        ours = release_to_h2aseg(key)
        if ours is None or ours not in expected:
            raise ConfigError(
                f"{source}: unexpected key {key!r} (not a parameter of the release's H2ASeg): "
                "give a state dict saved by the release's train.py"
            )
        if tuple(value.shape) != tuple(expected[ours].shape):
            raise ConfigError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, h2aseg_release expects "
                f"{tuple(expected[ours].shape)}: check --window and that the file is the release's H2ASeg"
            )
        converted[ours] = value
    for ours in expected:
        if ours not in converted:
            raise ConfigError(
                f"{source}: missing key {h2aseg_to_release(ours) or ours!r}: the state dict is incomplete "
                "or not the release's H2ASeg"
            )
    return converted


def export_state_dict(model: torch.nn.Module) -> dict:
    """``model``'s weights under the release's names (loads into the release's ``H2ASeg``)."""
    return {h2aseg_to_release(k): v for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------------- reading
def read_release_state(path: Path) -> dict[str, torch.Tensor]:
    """A release state dict from ``path``: the plain dict, or one held under a common key,
    ``module.`` stripped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist: give the .pth file saved by the release's train.py"
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise DataError(
            f"{path} cannot be read as a plain state dict ({type(err).__name__}): "
            "save it with torch.save(model.state_dict(), FILE)"
        ) from err
    state = raw
    if isinstance(raw, dict) and not any(isinstance(v, torch.Tensor) for v in raw.values()):
        held = [
            raw[k] for k in ("state_dict", "model", "model_state_dict", "net") if isinstance(raw.get(k), dict)
        ]
        state = held[0] if held else raw
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise DataError(
            f"{path} holds no state dict of tensors: save it with torch.save(model.state_dict(), FILE)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def architecture_of(state: Mapping[str, torch.Tensor]) -> dict:
    """in_channels, num_classes and channels of the network a release state dict was saved from."""
    try:
        channels = [
            int(state[f"encoder.conv{k}_ct.conv_skip.{0 if k == 1 else 2}.weight"].shape[0])
            for k in range(1, 6)
        ]
        in_channels = int(state["encoder.conv1_ct.conv_skip.0.weight"].shape[1])
        num_classes = int(state["decoder.output1.conv.2.weight"].shape[0])
    except KeyError as err:
        raise ConfigError(f"missing key {err.args[0]!r}: not a state dict of the release's H2ASeg") from None
    return {"in_channels": in_channels, "num_classes": num_classes, "channels": channels}


# ------------------------------------------------------------------------------------------------- writing
def import_release(
    checkpoint: Path, patch: tuple[int, int, int], out_dir: Path, window: tuple[int, int, int] = (8, 8, 4)
) -> Path:
    """Write ``out_dir`` (config.yaml, best.pt, train_summary.json) from a release checkpoint;
    returns best.pt."""
    out_dir = Path(out_dir)
    if (out_dir / "best.pt").exists() or (out_dir / "last.pt").exists():
        raise ConfigError(f"{out_dir} already holds a run: choose another --out")
    release_state = read_release_state(checkpoint)
    options = {**architecture_of(release_state), "window_size": list(window)}
    config = RunConfig()
    config.model.name = "h2aseg_release"
    config.model.options = options
    config.data.label_mode = "binary" if options["num_classes"] == 2 else "multiclass"
    config.train.patch = [int(s) for s in patch]
    config.train.protocol = "release"
    model = build_model("h2aseg_release", **options, patch_size=tuple(config.train.patch))
    state = convert_state_dict(release_state, model, source=str(checkpoint))
    model.load_state_dict(state)
    digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save(out_dir / "config.yaml")
    save_checkpoint(
        {
            "model": model.state_dict(),
            "config": config.to_dict(),
            "epoch": 0,
            "step": 0,
            "best_metric": float("nan"),
            "best_epoch": 0,
            "imported_from": {"file": str(checkpoint), "sha256": digest},
        },
        out_dir / "best.pt",
    )
    summary = {
        "epochs_run": 0,
        "last_epoch": 0,
        "best_metric": None,
        "best_epoch": 0,
        "stopped_by": "imported",
        "seconds": 0.0,
        "imported_from": str(checkpoint),
        "sha256": digest,
    }
    atomic_write_text(out_dir / "train_summary.json", json.dumps(summary, indent=2))
    return out_dir / "best.pt"


def run(args: argparse.Namespace) -> int:
    best = import_release(Path(args.checkpoint), tuple(args.patch), Path(args.out), tuple(args.window))
    print(
        f"imported {args.checkpoint} as h2aseg_release into {best.parent} "
        f"(predict with --model {best.parent})"
    )
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-release",
        help="turn weights trained with the authors' release into a run folder",
        description="Read a state dict saved by the H2ASeg release's train.py (weights_only), map its keys "
        "onto h2aseg_release and write a run folder that predict, evaluate and benchmark accept. In a "
        "benchmark, import into OUT/runs/<id>/seed<N> with a models row 'name: h2aseg_release, id: <id>'.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="the release's .pth state dict")
    parser.add_argument(
        "--patch",
        required=True,
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="patch the weights were trained with (the release's 128 128 64); sliding-window size",
    )
    parser.add_argument(
        "--window",
        type=int,
        nargs=3,
        default=(8, 8, 4),
        metavar=("H", "W", "D"),
        help="MCSA window the weights were trained with",
    )
    parser.add_argument("--out", required=True, type=Path, help="run folder to write")
    parser.set_defaults(func=run)
