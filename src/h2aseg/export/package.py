"""Model packages: one zip that carries a trained network, its settings and a model card.

``h2aseg export RUN_DIR --out model.h2aseg.zip`` writes::

    metadata.json        the model card (below); written last, read first
    model.pt             the run's best.pt (else last.pt) reduced to weights, config, epoch and best metric
    config.yaml          the run's resolved config (network, patch, label mode, training protocol)
    preprocessing.json   the preprocessing settings prediction applies (grid, clipping, label mode)

``metadata.json`` (format ``h2aseg-model``, :data:`FORMAT_VERSION`): name, licence, creation time (UTC),
h2aseg / torch / Python versions, the network (registry name, options, parameter count, classes,
segment names, patch), inputs (CT in HU, PET in SUVbw), training data (root, layout, number of cases and
patients, split sizes, sha256 of ``splits.json``), training (epochs, best epoch, stop reason, seconds),
metrics (validation Dice of the kept weights; test metrics from an ``h2aseg evaluate`` summary.json when
one is given or found in the run folder) and the weights (file, sha256, size, source checkpoint).

``h2aseg predict --model model.h2aseg.zip`` loads it with :func:`load_package`: the metadata is read,
a package of a newer format version or whose ``model.pt`` does not match its sha256 is refused in one
line, and the network is built exactly as from the run folder (same weights, same config), so its
predictions equal the run folder's bit for bit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import platform
import tempfile
import zipfile
from pathlib import Path

import torch

from h2aseg import __version__
from h2aseg.atomic import atomic_path
from h2aseg.config import RunConfig
from h2aseg.errors import DataError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PACKAGE_SUFFIX",
    "is_package",
    "export_package",
    "read_metadata",
    "load_package",
    "model_card",
]

FORMAT = "h2aseg-model"
FORMAT_VERSION = 1
PACKAGE_SUFFIX = ".h2aseg.zip"
WEIGHTS = "model.pt"


def is_package(path: Path) -> bool:
    """True for a file that is a zip (model packages are zips; checkpoints are torch zips without
    metadata)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "metadata.json" in archive.namelist()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _training_data(run_dir: Path, config: RunConfig) -> dict:
    """Layout, case and patient counts, split sizes and the split file's sha256 (what the run trained on)."""
    from h2aseg.data.layouts import discover_cases, guess_patient_id, load_splits

    info: dict = {
        "root": config.data.root,
        "layout": config.data.layout,
        "label_mode": config.data.label_mode,
    }
    splits_file = run_dir / "splits.json"
    if not splits_file.is_file():
        return {**info, "splits": None}
    splits = load_splits(splits_file)
    case_ids = [c for name in ("train", "val", "test") for c in splits[name]]
    patients = {c: guess_patient_id(c) for c in case_ids}
    if config.data.root and Path(config.data.root).exists():
        try:  # the dataset's own patient ids when it is still there (file names only, nothing is read)
            found = discover_cases(Path(config.data.root), config.data.layout, require_labels=False)
            patients.update({c.case_id: c.patient_id for c in found.cases if c.case_id in patients})
        except DataError:
            pass
    return {
        **info,
        "cases": len(case_ids),
        "patients": len(set(patients.values())),
        "splits": {name: len(ids) for name, ids in splits.items()},
        "patients_per_split": {name: len({patients[c] for c in ids}) for name, ids in splits.items()},
        "splits_sha256": _sha256(splits_file.read_bytes()),
    }


def _test_metrics(run_dir: Path, metrics_file: Path | None) -> dict | None:
    """An ``h2aseg evaluate`` summary.json: the one given, else a single ``RUN_DIR/*/summary.json``."""
    if metrics_file is None:
        found = sorted(run_dir.glob("*/summary.json"))
        if len(found) != 1:
            return None
        metrics_file = found[0]
    try:
        summary = json.loads(Path(metrics_file).read_text())
    except (OSError, ValueError) as err:
        raise DataError(
            f"{metrics_file}: unreadable metrics summary ({err}); give an h2aseg evaluate summary.json"
        ) from None
    problems = summary.pop("problems", [])
    return {"source": Path(metrics_file).name, **summary, "n_problems": len(problems)}


def model_card(
    run_dir: Path,
    checkpoint: Path,
    state: dict,
    weights: bytes,
    name: str,
    licence: str,
    metrics_file: Path | None = None,
) -> dict:
    """The ``metadata.json`` of a package made from ``run_dir`` (see the module docstring)."""
    from h2aseg.inference.dicom_export import labels_for
    from h2aseg.inference.predictor import build_network, num_classes_for, preprocess_config_for

    config = RunConfig.from_dict(state["config"])
    network = build_network(config)
    summary_file = run_dir / "train_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "licence": licence,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"h2aseg": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "network": {
            "name": config.model.name,
            "options": config.model.options,
            "parameters": sum(p.numel() for p in network.parameters()),
            "num_classes": num_classes_for(config),
            "label_mode": config.data.label_mode,
            "segments": [s.name for s in labels_for(config.data.label_mode)],
            "patch": list(config.train.patch),
        },
        "inputs": {"ct": "CT in Hounsfield units", "pet": "PET in SUVbw (DICOM Bq/ml is converted)"},
        "preprocessing": dataclasses.asdict(preprocess_config_for(config)),
        "training_data": _training_data(run_dir, config),
        "training": {
            "protocol": config.train.protocol,
            "epochs": state.get("epoch"),
            "best_epoch": state.get("best_epoch"),
            "stopped_by": summary.get("stopped_by"),
            "seconds": summary.get("seconds"),
        },
        "metrics": {
            "validation": {
                "dice": state.get("best_metric"),
                "epoch": state.get("best_epoch"),
                "rule": "mean Dice over lesion-positive validation cases",
            },
            "test": _test_metrics(run_dir, metrics_file),
        },
        "weights": {
            "file": WEIGHTS,
            "sha256": _sha256(weights),
            "bytes": len(weights),
            "from": checkpoint.name,
        },
    }


def export_package(
    run_dir: Path,
    out: Path,
    name: str | None = None,
    licence: str = "unspecified",
    metrics_file: Path | None = None,
) -> dict:
    """Write the package of ``run_dir`` to ``out`` (atomically); returns its metadata."""
    from h2aseg.checkpoint import load_checkpoint
    from h2aseg.inference.predictor import preprocess_config_for, resolve_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a run folder; give the --out folder of h2aseg train")
    checkpoint = resolve_checkpoint(run_dir)
    state = load_checkpoint(checkpoint)
    kept = {k: state[k] for k in ("model", "config", "epoch", "best_metric", "best_epoch") if k in state}
    buffer = io.BytesIO()
    torch.save(kept, buffer)
    weights = buffer.getvalue()
    card = model_card(run_dir, checkpoint, state, weights, name or run_dir.name, licence, metrics_file)
    config = RunConfig.from_dict(state["config"])
    with tempfile.TemporaryDirectory() as tmp:
        config.save(Path(tmp) / "config.yaml")
        config_text = (Path(tmp) / "config.yaml").read_text()
    preprocessing = json.dumps(dataclasses.asdict(preprocess_config_for(config)), indent=2)
    with atomic_path(Path(out)) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(WEIGHTS, weights)
        archive.writestr("config.yaml", config_text)
        archive.writestr("preprocessing.json", preprocessing + "\n")
        archive.writestr("metadata.json", json.dumps(card, indent=2) + "\n")
    return card


def read_metadata(path: Path) -> dict:
    """The package's metadata.json, checked for format and version (DataError in one line otherwise)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            card = json.loads(archive.read("metadata.json"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise DataError(f"{path}: not a readable h2aseg model package ({err}); export it again") from None
    if card.get("format") != FORMAT:
        raise DataError(f"{path}: not an h2aseg model package (format {card.get('format')!r})")
    version = card.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(
            f"{path}: package format version {version} is newer than this h2aseg reads "
            f"({FORMAT_VERSION}); upgrade h2aseg (made with h2aseg {card.get('versions', {}).get('h2aseg')})"
        )
    return card


def load_package(path: Path, device: torch.device | str = "cpu"):
    """A :class:`h2aseg.inference.predictor.LoadedModel` from a package; refuses a tampered or newer one."""
    from h2aseg.inference.predictor import load_trained_model

    path = Path(path)
    card = read_metadata(path)
    with zipfile.ZipFile(path) as archive:
        try:
            weights = archive.read(card["weights"]["file"])
        except (KeyError, zipfile.BadZipFile) as err:
            raise DataError(f"{path}: package holds no weights ({err}); export it again") from None
    if _sha256(weights) != card["weights"].get("sha256"):
        raise DataError(
            f"{path}: weights do not match the sha256 in metadata.json (altered or corrupt); "
            "get the package again from its source"
        )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / WEIGHTS
        checkpoint.write_bytes(weights)
        loaded = load_trained_model(checkpoint, device=device)
    return dataclasses.replace(loaded, checkpoint=path)
