"""PET maximum-intensity projections with label and prediction overlaid, coloured like the paper's Fig. 3.

Arrays are indexed (X, Y, Z) in LPS index order (what ``sitk.DICOMOrient(image, "LPS")`` gives: X towards
the patient's left, Y towards posterior, Z towards the head). Pictures follow radiological convention:
the patient's right on the viewer's left in the coronal view, anterior on the left in the sagittal view,
head at the top; each pixel is drawn with its physical size, so anisotropic voxels keep their shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["COLOURS", "SUV_RANGE", "error_overlay", "legend_handles", "mip_overlay", "new_figure"]

#: Overlay colours (RGB) of the paper's Fig. 3.
COLOURS: dict[str, tuple[float, float, float]] = {
    "true positive": (1.0, 0.0, 0.0),  # red
    "false negative": (0.0, 0.35, 1.0),  # blue
    "false positive": (1.0, 0.9, 0.0),  # yellow
}
#: SUV window of PET pictures (inverted grey: SUV 0 white, SUV ≥ 10 black).
SUV_RANGE: tuple[float, float] = (0.0, 10.0)


def new_figure(figsize: tuple[float, float]):
    """A matplotlib Figure drawn with the Agg canvas, without pyplot's global state or GUI backends."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def error_overlay(
    gt: np.ndarray | None, pred: np.ndarray | None, alpha: float = 0.6
) -> tuple[np.ndarray, list[str]]:
    """RGBA image (…, 4) colouring true positives red, false negatives blue, false positives yellow.

    ``gt`` and ``pred`` are boolean maps of the same shape (a slice, or a projection of each class along one
    axis). Where the maps of several classes overlap, true positive is drawn over false negative over false
    positive. When only one of the two is given, it is drawn in red alone.

    Returns:
        The RGBA array and the names of the classes present (for a legend).
    """
    ref = gt if gt is not None else pred
    if ref is None:
        raise ValueError("error_overlay needs a label or a prediction")
    rgba = np.zeros((*ref.shape, 4), dtype=np.float32)
    if gt is None or pred is None:
        layers = [("prediction" if gt is None else "label", ref.astype(bool), COLOURS["true positive"])]
    else:
        gt, pred = gt.astype(bool), pred.astype(bool)
        layers = [
            ("false positive", pred & ~gt, COLOURS["false positive"]),
            ("false negative", gt & ~pred, COLOURS["false negative"]),
            ("true positive", gt & pred, COLOURS["true positive"]),
        ]
    present = []
    for name, where, colour in layers:
        if where.any():
            rgba[where] = (*colour, alpha)
            present.append(name)
    return rgba, present


def _projected_classes(
    gt: np.ndarray | None, pred: np.ndarray | None, axis: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Project TP/FN/FP voxels (not the masks) so a ray's colour says what lies on it."""
    if gt is None or pred is None:
        mask = gt if gt is not None else pred
        return (None if gt is None else mask.any(axis=axis)), (None if pred is None else mask.any(axis=axis))
    tp = (gt & pred).any(axis=axis)
    fn = (gt & ~pred).any(axis=axis)
    fp = (pred & ~gt).any(axis=axis)
    # Encode back into a (gt, pred) pair that error_overlay colours with TP > FN > FP priority.
    gt_proj = tp | fn
    pred_proj = tp | (fp & ~fn)
    return gt_proj, pred_proj


def legend_handles(names: Sequence[str]):
    """Matplotlib patches for the overlay classes in ``names``."""
    from matplotlib.patches import Patch

    colour = {**COLOURS, "label": COLOURS["true positive"], "prediction": COLOURS["true positive"]}
    return [Patch(facecolor=colour[n], edgecolor="none", label=n) for n in names]


def mip_overlay(
    pet_suv: np.ndarray,
    gt: np.ndarray | None,
    pred: np.ndarray | None,
    spacing: Sequence[float],
    out_png: Path,
    title: str | None = None,
) -> Path:
    """Save a coronal and a sagittal PET MIP with the label and prediction overlaid as a PNG.

    PET is shown in inverted grey over SUV 0–10. Masks (``> 0``) are classified voxel by voxel into
    true positive (red), false negative (blue) and false positive (yellow), each class is projected along
    the same axis as the PET, and a pixel gets the colour of the highest-priority class on its ray
    (TP over FN over FP). Either mask may be ``None``; the other is then drawn in red.

    Args:
        pet_suv: PET in SUV, (X, Y, Z) in LPS index order.
        gt, pred: label and prediction on the PET grid, or ``None``.
        spacing: voxel size in mm (sx, sy, sz).
        out_png: file to write (parent folders are created).
        title: figure title.

    Returns:
        ``out_png``.
    """
    pet = np.asarray(pet_suv, dtype=np.float32)
    if pet.ndim != 3:
        raise ValueError(f"mip_overlay: PET must be 3-D (X, Y, Z), got shape {pet.shape}")
    masks = [None if m is None else np.asarray(m) > 0 for m in (gt, pred)]
    for m in masks:
        if m is not None and m.shape != pet.shape:
            raise ValueError(f"mip_overlay: mask shape {m.shape} differs from PET shape {pet.shape}")
    sx, sy, sz = (float(s) for s in spacing)
    nx, ny, nz = pet.shape
    views = [  # (title, projection axis, horizontal extent mm, left, right)
        ("coronal MIP", 1, nx * sx, "R", "L"),
        ("sagittal MIP", 0, ny * sy, "A", "P"),
    ]
    height_mm = nz * sz
    widths = [v[2] for v in views]
    fig_h = 7.0
    fig_w = max(4.0, fig_h * sum(widths) / height_mm * 0.95 + 0.6)
    fig = new_figure((fig_w, fig_h))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": widths})
    present: list[str] = []
    for ax, (name, axis, width, left, right) in zip(axes, views):
        extent = (0.0, width, 0.0, height_mm)
        ax.imshow(
            pet.max(axis=axis).T,
            cmap="gray_r",
            vmin=SUV_RANGE[0],
            vmax=SUV_RANGE[1],
            origin="lower",
            extent=extent,
            interpolation="bilinear",
        )
        if any(m is not None for m in masks):
            gt_p, pred_p = _projected_classes(masks[0], masks[1], axis)
            rgba, names = error_overlay(gt_p, pred_p)
            ax.imshow(np.transpose(rgba, (1, 0, 2)), origin="lower", extent=extent, interpolation="nearest")
            present += [n for n in names if n not in present]
        ax.set_title(name)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        for x, letter in ((0.02, left), (0.98, right)):
            ax.text(x, 0.98, letter, transform=ax.transAxes, ha="center", va="top", color="0.3", fontsize=9)
    fig.suptitle(title or "PET MIP", fontsize=11)
    order = [
        n
        for n in ("true positive", "false negative", "false positive", "label", "prediction")
        if n in present
    ]
    if order:
        fig.legend(
            handles=legend_handles(order), loc="lower center", ncol=len(order), frameon=False, fontsize=9
        )
    fig.text(0.99, 0.01, "PET SUV 0–10, inverted grey", ha="right", va="bottom", fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png
