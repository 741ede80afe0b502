"""Checkpoints that hold tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint is a dict: ``model`` (state dict), ``optimizer`` (its param groups hold the epoch's learning
rate), ``train_seconds`` (training time so far; with the epoch and the config it gives the next learning
rate, see :mod:`h2aseg.training.schedule`), ``scaler`` (AMP, may be None), ``epoch`` (last finished epoch,
1-based), ``step``, ``best_metric``, ``best_epoch``, ``rng`` (Python, NumPy and torch generator states as
lists/tensors) and ``config`` (the run's config as a dict).
Opening one made by someone else never runs code: ``torch.load(..., weights_only=True)`` only builds
tensors and plain containers.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from h2aseg.atomic import atomic_path
from h2aseg.errors import DataError


def rng_state() -> dict:
    """Python, NumPy and torch (CPU and CUDA) generator states as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never a half-written file)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely (tensors and plain data only); DataError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist: give a run folder or a .pt file written by h2aseg train"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise DataError(
            f"checkpoint {path} cannot be read safely ({type(err).__name__}): "
            "use a checkpoint written by h2aseg train"
        ) from err
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise DataError(f"checkpoint {path} is not an h2aseg checkpoint (no model/config entries)")
    return state
