"""Evaluate a folder of predictions against labels: per-case CSV, summary JSON and Markdown.

Predictions are label maps named ``<case_id>.nii.gz`` (or another ending of
:data:`h2aseg.data.io.IMAGE_SUFFIXES`, e.g. ``.nii`` / ``.mha``) in one folder; a
``probabilities/`` subfolder beside them is ignored. Labels come from a flat folder of
``<case_id>.<ext>`` files, or from a dataset root read with :func:`h2aseg.data.layouts.discover_cases`
when a layout is named.

Metrics are computed on the label's grid. A prediction on another grid (e.g. the PET grid of a HECKTOR
case, whose label lies on the CT grid) that covers at least :data:`MIN_COVERAGE` (90 %) of the label's
field is resampled onto the label grid by nearest neighbour (label voxels outside the prediction's
field count as background); the summary lists those cases. A prediction covering less is refused.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from h2aseg.data.io import IMAGE_SUFFIXES, read_label, to_array
from h2aseg.errors import DataError
from h2aseg.evaluation.metrics import case_metrics
from h2aseg.evaluation.report import summarise, summary_markdown, write_csv, write_json, write_text

__all__ = ["evaluate_arrays", "evaluate_folders"]

logger = logging.getLogger(__name__)
_SPACING_TOLERANCE_MM = 1e-3
_ORIGIN_TOLERANCE_MM = 1e-2
#: Smallest share of the label's field a prediction on another grid must cover to be resampled onto it.
MIN_COVERAGE = 0.9


@dataclass(frozen=True)
class _Volume:
    array: np.ndarray  # (X, Y, Z)
    spacing: tuple[float, float, float]


def _case_id(path: Path) -> str | None:
    for suffix in IMAGE_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def _image_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        case_id = _case_id(path)
        if path.is_file() and case_id and not path.name.startswith("."):
            files.setdefault(case_id, path)
    return files


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when two images share size, spacing, origin and direction (within 0.001 mm / 0.01 mm / 1e-4)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=_SPACING_TOLERANCE_MM, rtol=0)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=_ORIGIN_TOLERANCE_MM, rtol=0)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4, rtol=0)
    )


def field_coverage(image: sitk.Image, reference: sitk.Image, points_per_axis: int = 16) -> float:
    """Share of ``reference``'s field that lies inside ``image``'s field (on a lattice of voxel centres)."""
    axes = [np.unique(np.linspace(0, n - 1, min(n, points_per_axis)).round()) for n in reference.GetSize()]
    upper = np.array(image.GetSize(), float) - 0.5
    inside = total = 0
    for index in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3):
        point = reference.TransformContinuousIndexToPhysicalPoint(index.tolist())
        where = np.array(image.TransformPhysicalPointToContinuousIndex(point))
        inside += bool(np.all(where >= -0.5) and np.all(where <= upper))
        total += 1
    return inside / max(total, 1)


def evaluate_arrays(
    pairs: Iterable[tuple[str, np.ndarray, np.ndarray, Sequence[float]]], labels: Sequence[int] = (1,)
) -> list[dict]:
    """Per-case metrics for ``(case_id, pred, gt, spacing)`` tuples; one row per case, ``case_id`` first.

    See :func:`h2aseg.evaluation.metrics.case_metrics` for the columns and empty-mask conventions.
    """
    rows = []
    for case_id, pred, gt, spacing in pairs:
        rows.append({"case_id": case_id, **case_metrics(pred, gt, spacing, labels=labels)})
    return rows


def _label_files(
    gt_dir: Path, layout: str | None, channels: dict | None = None
) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Label files by case id and the (case id, message) problems of discovery."""
    if layout is None:
        files = _image_files(gt_dir)
        return files, []
    from h2aseg.data.layouts import discover_cases

    found = discover_cases(gt_dir, layout, **{k: v for k, v in (channels or {}).items() if v is not None})
    problems = [(str(getattr(p, "case_id", "")), str(p)) for p in getattr(found, "problems", [])]
    files = {}
    for case in found.cases:
        if getattr(case, "label", None) is None:
            problems.append(
                (case.case_id, f"{case.case_id}: no label file in the {layout} layout; not evaluated")
            )
        else:
            files[case.case_id] = Path(case.label)
    return files, problems


def _load_pair(
    case_id: str, pred_path: Path, gt_path: Path, max_voxels: int | None = None
) -> tuple[_Volume, _Volume, str | None]:
    """Prediction and label on the label's grid, and a note when the prediction had to be resampled."""
    gt_image = read_label(gt_path, max_voxels)
    pred_image = read_label(pred_path, max_voxels)
    note = None
    if not same_grid(pred_image, gt_image):
        coverage = field_coverage(pred_image, gt_image)
        if coverage < MIN_COVERAGE:
            raise DataError(
                f"{case_id}: prediction {pred_path} (shape {pred_image.GetSize()}, spacing "
                f"{pred_image.GetSpacing()}) covers {coverage:.0%} of the field of the label {gt_path} "
                f"(shape {gt_image.GetSize()}); at least {MIN_COVERAGE:.0%} is needed: predict this case "
                "again (predict --grid ct for labels on the CT grid)"
            )
        note = (
            f"{case_id}: prediction on another grid (shape {pred_image.GetSize()}) "
            f"resampled onto the label grid (nearest neighbour, {coverage:.0%} of the label's field covered)"
        )
        pred_image = sitk.Resample(
            pred_image, gt_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, pred_image.GetPixelID()
        )
    pred, gt = to_array(pred_image), to_array(gt_image)
    if np.issubdtype(pred.dtype, np.floating) and not np.array_equal(pred, np.round(pred)):
        raise DataError(
            f"{case_id}: prediction {pred_path} holds non-integer values; save a label map "
            "(threshold the probabilities)"
        )
    spacing = tuple(float(v) for v in gt_image.GetSpacing())
    return _Volume(pred, spacing), _Volume(gt, spacing), note


def evaluate_folders(
    pred_dir: Path,
    gt_dir: Path,
    out_dir: Path,
    layout: str | None = None,
    labels: Sequence[int] = (1,),
    progress: bool = True,
    case_ids: Sequence[str] | None = None,
    max_voxels: int | None = None,
    ct_channel: int | None = None,
    pet_channel: int | None = None,
) -> dict:
    """Evaluate every labelled case that has a prediction; write ``per_case.csv``, ``summary.json``,
    ``summary.md``.

    A case whose prediction is missing, unreadable, or does not cover its label's field is reported on
    stderr (one line naming the case and file) and in ``summary["problems"]``, and left out; the rest are
    evaluated (a prediction on another grid covering the label's field is resampled onto it, see the
    module docstring, and listed in ``summary["resampled"]``). Predictions without a label and studies
    that discovery left out are reported the same way.

    With ``case_ids`` (e.g. a test split) only those cases are evaluated: other labels and other
    predictions in the folders are ignored silently (matched by exact case id), and a listed case
    without a label is a problem.

    Returns:
        The :func:`h2aseg.evaluation.report.summarise` dict, plus ``problems``,
        ``resampled`` and ``settings``.

    Raises:
        DataError: a folder is missing, no label is found, or no case could be evaluated.
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    for name, folder in (("prediction", pred_dir), ("label", gt_dir)):
        if not folder.is_dir():
            raise DataError(f"{name} folder {folder} does not exist; check the path")
    gt_files, pred_files, problems = _select_cases(
        pred_dir, gt_dir, layout, case_ids, {"ct_channel": ct_channel, "pet_channel": pet_channel}
    )
    rows, resampled = _score_cases(pred_dir, gt_files, pred_files, labels, max_voxels, progress, problems)
    for line in problems:
        logger.warning("%s", line)
    if not rows:
        raise DataError(
            f"no case could be evaluated ({len(problems)} problems, first: {problems[0]})"
            if problems
            else "no case could be evaluated"
        )
    summary = summarise(rows)
    summary["problems"] = problems
    summary["resampled"] = resampled
    summary["settings"] = {
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "layout": layout,
        "labels": list(labels),
        "case_ids": None if case_ids is None else list(gt_files),
    }
    _write_reports(rows, summary, out_dir, title=f"Evaluation of {pred_dir.name}")
    return summary


def _select_cases(
    pred_dir: Path, gt_dir: Path, layout: str | None, case_ids: Sequence[str] | None, channels: dict
) -> tuple[dict[str, Path], dict[str, Path], list[str]]:
    """Labels and predictions to score (restricted to ``case_ids`` when given) and the problems found."""
    gt_files, found_problems = _label_files(gt_dir, layout, channels)
    if not gt_files:
        where = (
            f"in the {layout} layout under {gt_dir}"
            if layout
            else f"in {gt_dir} ({', '.join('*' + s for s in IMAGE_SUFFIXES)})"
        )
        raise DataError(f"no label files found {where}; point --gt at the labels or name the --layout")
    pred_files = _image_files(pred_dir)
    problems: list[str] = []
    if case_ids is not None:
        wanted = list(dict.fromkeys(str(c) for c in case_ids))
        found_problems = [(c, p) for c, p in found_problems if c in wanted]
        dropped = {c for c, _ in found_problems}
        for case_id in wanted:
            if case_id not in gt_files and case_id not in dropped:
                problems.append(
                    f"{case_id}: listed for evaluation but has no label under {gt_dir}; not evaluated"
                )
        gt_files = {c: gt_files[c] for c in wanted if c in gt_files}
        pred_files = {c: p for c, p in pred_files.items() if c in gt_files}
    problems = [p for _, p in found_problems] + problems
    for case_id in sorted(set(pred_files) - set(gt_files)):
        problems.append(f"{case_id}: prediction {pred_files[case_id]} has no label; not evaluated")
    return gt_files, pred_files, problems


def _score_cases(
    pred_dir: Path,
    gt_files: dict[str, Path],
    pred_files: dict[str, Path],
    labels: Sequence[int],
    max_voxels: int | None,
    progress: bool,
    problems: list[str],
) -> tuple[list[dict], list[str]]:
    """Per-case metric rows and resampling notes; a case that cannot be scored goes to ``problems``."""
    ids = sorted(gt_files)
    if progress:
        from tqdm import tqdm

        ids = tqdm(ids, desc="evaluate", unit="case", file=sys.stderr)
    rows, resampled = [], []
    for case_id in ids:
        pred_path = pred_files.get(case_id)
        if pred_path is None:
            problems.append(
                f"{case_id}: no prediction {pred_dir / (case_id + '.nii.gz')} (or .nii/.mha); run predict "
                "for it"
            )
            continue
        try:
            pred, gt, note = _load_pair(case_id, pred_path, gt_files[case_id], max_voxels)
        except DataError as err:
            problems.append(str(err) if str(err).startswith(case_id) else f"{case_id}: {err}")
            continue
        if note:
            resampled.append(note)
        rows.extend(evaluate_arrays([(case_id, pred.array, gt.array, gt.spacing)], labels=labels))
    return rows, resampled


def _write_reports(rows: list[dict], summary: dict, out_dir: Path, title: str) -> None:
    """``per_case.csv``, ``summary.json`` and ``summary.md`` (with the resampled and left-out cases)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "per_case.csv")
    write_json(summary, out_dir / "summary.json")
    text = summary_markdown(summary, title=title)
    resampled, problems = summary["resampled"], summary["problems"]
    if resampled:
        text += (
            f"\n{len(resampled)} prediction(s) on another grid than their label were resampled onto the "
            "label grid (nearest neighbour) before scoring:\n\n" + "".join(f"- {p}\n" for p in resampled)
        )
    if problems:
        text += f"\n{len(problems)} case(s) left out:\n\n" + "".join(f"- {p}\n" for p in problems)
    write_text(text, out_dir / "summary.md")
