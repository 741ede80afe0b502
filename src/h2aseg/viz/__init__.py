"""Pictures: PET MIPs with segmentation overlays (:mod:`.mip`), axial CT/PET fusion slices (:mod:`.slices`),
training curves (:mod:`.curves`). All drawn with matplotlib's Agg canvas into PNG files; arrays are
(X, Y, Z) in LPS index order and every picture keeps the physical aspect ratio of the voxels.
"""

from __future__ import annotations

__all__ = ["fusion_slices", "mip_overlay", "training_curves"]


def __getattr__(name: str):
    # Lazy, so that ``h2aseg --help`` does not import matplotlib.
    if name == "mip_overlay":
        from h2aseg.viz.mip import mip_overlay

        return mip_overlay
    if name == "fusion_slices":
        from h2aseg.viz.slices import fusion_slices

        return fusion_slices
    if name == "training_curves":
        from h2aseg.viz.curves import training_curves

        return training_curves
    raise AttributeError(f"module 'h2aseg.viz' has no attribute {name!r}")
