"""Moved to :mod:`h2aseg.checkpoint` (prediction reads checkpoints without importing ``training``);
kept importable."""

from h2aseg.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

__all__ = ["load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state"]
