"""h2aseg: PET/CT tumour segmentation with H2ASeg (Lu et al., MICCAI 2024) and its baselines.

``from h2aseg import H2ASeg`` gives the network alone (it needs torch only), so it can be dropped into
any training loop; ``build_model(name, **options)`` builds any registered network by name.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["H2ASeg", "build_model", "__version__"]


def __getattr__(name: str):
    # Lazy, so that ``import h2aseg`` (e.g. by the CLI) stays cheap and the network needs only torch.
    if name == "H2ASeg":
        from h2aseg.models.h2aseg import H2ASeg

        return H2ASeg
    if name == "build_model":
        from h2aseg.models.registry import build_model

        return build_model
    raise AttributeError(f"module 'h2aseg' has no attribute {name!r}")
