"""Axial CT/PET fusion slices through the largest lesion, with label and prediction overlaid.

Arrays are (X, Y, Z) in LPS index order (see :mod:`h2aseg.viz.mip`); axial slices are drawn in
radiological convention (patient's right on the viewer's left, anterior at the top) at their physical
aspect ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from h2aseg.viz.mip import SUV_RANGE, error_overlay, legend_handles, new_figure

__all__ = ["CT_WINDOW", "focus_slices", "fusion_slices"]

#: CT soft-tissue window in HU (level 40, width 400).
CT_WINDOW: tuple[float, float] = (-160.0, 240.0)
_ZOOM_MARGIN_MM = 40.0
_CONNECTIVITY_18 = ndimage.generate_binary_structure(3, 2)


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    labels, n = ndimage.label(mask, structure=_CONNECTIVITY_18)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def focus_slices(
    pet_suv: np.ndarray, gt: np.ndarray | None, pred: np.ndarray | None, n_slices: int = 3
) -> tuple[list[int], np.ndarray, str]:
    """Choose axial slices through the largest lesion.

    The focus is the largest 18-connected component of the label; when the label is empty (or absent)
    the largest predicted component; when both are empty, the voxel of maximal SUV. Slices are the
    component's z quantiles (15 %–85 % of its voxels, so they sample where it is large); a lesion thinner
    than ``n_slices`` is completed with the nearest neighbouring slices.

    Returns:
        Sorted slice indices, the focus mask (bool, (X, Y, Z)), and what it is (``"largest lesion"``,
        ``"largest predicted component"`` or ``"SUVmax"``).
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    focus, kind = None, ""
    for mask, name in ((gt, "largest lesion"), (pred, "largest predicted component")):
        if mask is not None and focus is None:
            focus, kind = _largest_component(np.asarray(mask) > 0), name
    if focus is None:
        focus = np.zeros(pet_suv.shape, dtype=bool)
        focus[np.unravel_index(int(np.argmax(pet_suv)), pet_suv.shape)] = True
        kind = "SUVmax"
    zs = np.nonzero(focus)[2]
    quantiles = np.linspace(0.15, 0.85, n_slices) if n_slices > 1 else np.array([0.5])
    chosen = sorted({int(round(q)) for q in np.quantile(zs, quantiles)})
    centre = int(np.bincount(zs).argmax())
    nz = pet_suv.shape[2]
    offset = 1
    while len(chosen) < min(n_slices, nz):
        for z in (centre - offset, centre + offset):
            if 0 <= z < nz and z not in chosen and len(chosen) < n_slices:
                chosen.append(z)
        offset += 1
    return sorted(chosen), focus, kind


def fusion_slices(
    ct_hu: np.ndarray | None,
    pet_suv: np.ndarray,
    gt: np.ndarray | None,
    pred: np.ndarray | None,
    spacing: Sequence[float],
    out_png: Path,
    n_slices: int = 3,
) -> Path:
    """Save axial CT/PET fusion slices through the largest lesion as a PNG.

    One row per slice (chosen by :func:`focus_slices`). Columns: CT (soft-tissue window −160…240 HU),
    PET (inverted grey, SUV 0–10), CT with PET fused (``hot`` colour map, SUV 0–10, half transparent),
    and CT zoomed on the focus (its extent ±40 mm) with true positives red, false negatives blue and
    false positives yellow. Without CT the CT column is left out and PET stands in for CT.

    Args:
        ct_hu: CT in HU on the PET grid, or ``None``.
        pet_suv: PET in SUV, (X, Y, Z) in LPS index order.
        gt, pred: label and prediction on the PET grid, or ``None``.
        spacing: voxel size in mm (sx, sy, sz).
        out_png: file to write (parent folders are created).
        n_slices: number of axial slices (rows).

    Returns:
        ``out_png``.
    """
    pet = np.asarray(pet_suv, dtype=np.float32)
    arrays = {"CT": ct_hu, "label": gt, "prediction": pred}
    for name, a in arrays.items():
        if a is not None and np.shape(a) != pet.shape:
            raise ValueError(f"fusion_slices: {name} shape {np.shape(a)} differs from PET shape {pet.shape}")
    ct = None if ct_hu is None else np.asarray(ct_hu, dtype=np.float32)
    g = None if gt is None else np.asarray(gt) > 0
    p = None if pred is None else np.asarray(pred) > 0
    zs, focus, kind = focus_slices(pet, g, p, n_slices)
    sx, sy, sz = (float(s) for s in spacing)
    nx, ny, _ = pet.shape

    xs, ys = np.nonzero(focus.any(axis=2))
    cx, cy = (xs.min() + xs.max() + 1) / 2 * sx, (ys.min() + ys.max() + 1) / 2 * sy
    half = max((xs.max() - xs.min() + 1) * sx, (ys.max() - ys.min() + 1) * sy) / 2 + _ZOOM_MARGIN_MM
    zoom = (cx - half, cx + half, cy + half, cy - half)

    columns = (["CT"] if ct is not None else []) + ["PET", "fusion", "zoom"]
    titles = {
        "CT": "CT",
        "PET": "PET (SUV 0–10)",
        "fusion": "CT + PET" if ct is not None else "PET (hot)",
        "zoom": f"{'CT' if ct is not None else 'PET'} + segmentation, zoomed",
    }
    width_mm, height_mm = nx * sx, ny * sy
    panel = 3.0
    fig = new_figure((panel * len(columns), panel * len(zs) * max(height_mm / width_mm, 0.5) + 0.9))
    axes = np.atleast_2d(fig.subplots(len(zs), len(columns), squeeze=False))
    extent = (0.0, width_mm, height_mm, 0.0)  # row 0 (anterior) at the top
    present: list[str] = []
    for row, z in enumerate(zs):
        for col, name in enumerate(columns):
            ax = axes[row, col]
            pet_z = pet[:, :, z].T
            if name == "CT":
                ax.imshow(ct[:, :, z].T, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], extent=extent)
            elif name == "PET":
                ax.imshow(pet_z, cmap="gray_r", vmin=SUV_RANGE[0], vmax=SUV_RANGE[1], extent=extent)
            elif name == "fusion":
                if ct is not None:
                    ax.imshow(ct[:, :, z].T, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], extent=extent)
                alpha = 0.5 if ct is not None else 1.0
                ax.imshow(pet_z, cmap="hot", vmin=SUV_RANGE[0], vmax=SUV_RANGE[1], extent=extent, alpha=alpha)
            else:
                # Grey background so that red/yellow overlays are not confused with the hot PET colours.
                if ct is not None:
                    ax.imshow(ct[:, :, z].T, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], extent=extent)
                else:
                    ax.imshow(pet_z, cmap="gray_r", vmin=SUV_RANGE[0], vmax=SUV_RANGE[1], extent=extent)
                if g is not None or p is not None:
                    rgba, names = error_overlay(
                        None if g is None else g[:, :, z], None if p is None else p[:, :, z], alpha=0.55
                    )
                    ax.imshow(np.transpose(rgba, (1, 0, 2)), extent=extent, interpolation="nearest")
                    present += [n for n in names if n not in present]
                ax.set_xlim(zoom[0], zoom[1])
                ax.set_ylim(zoom[2], zoom[3])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[name], fontsize=10)
            if col == 0:
                ax.set_ylabel(f"slice z = {z}", fontsize=9)
                ax.text(0.02, 0.98, "R", transform=ax.transAxes, ha="left", va="top", color="0.6", fontsize=8)
    fig.suptitle(f"Axial CT/PET fusion through the {kind}", fontsize=11)
    order = [
        n
        for n in ("true positive", "false negative", "false positive", "label", "prediction")
        if n in present
    ]
    if order:
        fig.legend(
            handles=legend_handles(order), loc="lower center", ncol=len(order), frameon=False, fontsize=9
        )
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png
