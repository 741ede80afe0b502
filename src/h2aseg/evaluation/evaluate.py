"""Evaluate a folder of predictions against labels: per-case CSV, summary JSON and Markdown.

Predictions are label maps named ``<case_id>.nii.gz`` (or ``.nii`` / ``.mha``) in one folder, on the
label's grid (same shape and spacing); a ``probabilities/`` subfolder beside them is ignored. Labels come
from a flat folder of ``<case_id>.<ext>`` files, or from a dataset root read with
:func:`h2aseg.data.layouts.discover_cases` when a layout is named.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from h2aseg.errors import DataError
from h2aseg.evaluation.metrics import case_metrics
from h2aseg.evaluation.report import summarise, summary_markdown, write_csv, write_json, write_text

__all__ = ["IMAGE_SUFFIXES", "evaluate_arrays", "evaluate_folders", "read_label"]

#: File endings read as images, longest first so ``.nii.gz`` wins over ``.gz``.
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".mha")
_SPACING_TOLERANCE_MM = 1e-3


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


def read_label(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read a NIfTI/MHA label map with SimpleITK; returns the (X, Y, Z) array and spacing in mm.

    Raises:
        DataError: the file cannot be read or is not 3-D.
    """
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise DataError(
            f"{path}: cannot be read as an image ({str(err).strip().splitlines()[-1]}); re-export it"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: expected a 3-D single-channel label map, got {image.GetDimension()}-D; re-export it"
        )
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    return array, tuple(float(s) for s in image.GetSpacing())


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


def _label_files(gt_dir: Path, layout: str | None) -> tuple[dict[str, Path], list[str]]:
    if layout is None:
        files = _image_files(gt_dir)
        return files, []
    from h2aseg.data.layouts import discover_cases

    found = discover_cases(gt_dir, layout)
    problems = [str(p) for p in getattr(found, "problems", [])]
    files = {}
    for case in found.cases:
        if getattr(case, "label", None) is None:
            problems.append(f"{case.case_id}: no label file in the {layout} layout; not evaluated")
        else:
            files[case.case_id] = Path(case.label)
    return files, problems


def _load_pair(case_id: str, pred_path: Path, gt_path: Path) -> tuple[_Volume, _Volume]:
    gt, gt_spacing = read_label(gt_path)
    pred, pred_spacing = read_label(pred_path)
    if pred.shape != gt.shape:
        raise DataError(
            f"{case_id}: prediction {pred_path} has shape {pred.shape} but the label {gt_path} has {gt.shape}; "
            "resample the prediction onto the label grid"
        )
    if not np.allclose(pred_spacing, gt_spacing, atol=_SPACING_TOLERANCE_MM, rtol=0):
        raise DataError(
            f"{case_id}: prediction {pred_path} has spacing {pred_spacing} mm but the label has {gt_spacing} mm; "
            "resample the prediction onto the label grid"
        )
    if np.issubdtype(pred.dtype, np.floating) and not np.array_equal(pred, np.round(pred)):
        raise DataError(
            f"{case_id}: prediction {pred_path} holds non-integer values; save a label map (threshold the probabilities)"
        )
    return _Volume(pred, pred_spacing), _Volume(gt, gt_spacing)


def evaluate_folders(
    pred_dir: Path,
    gt_dir: Path,
    out_dir: Path,
    layout: str | None = None,
    labels: Sequence[int] = (1,),
    progress: bool = True,
    case_ids: Sequence[str] | None = None,
) -> dict:
    """Evaluate every labelled case that has a prediction; write ``per_case.csv``, ``summary.json``, ``summary.md``.

    A case whose prediction is missing, unreadable, or on another grid is reported on stderr (one line
    naming the case and file) and in ``summary["problems"]``, and left out; the rest are evaluated.
    Predictions without a label are reported the same way.

    With ``case_ids`` (e.g. a test split) only those cases are evaluated: other labels and other
    predictions in the folders are ignored silently, and a listed case without a label is a problem.

    Returns:
        The :func:`h2aseg.evaluation.report.summarise` dict, plus ``problems`` and ``settings``.

    Raises:
        DataError: a folder is missing, no label is found, or no case could be evaluated.
    """
    pred_dir, gt_dir, out_dir = Path(pred_dir), Path(gt_dir), Path(out_dir)
    for name, folder in (("prediction", pred_dir), ("label", gt_dir)):
        if not folder.is_dir():
            raise DataError(f"{name} folder {folder} does not exist; check the path")
    gt_files, problems = _label_files(gt_dir, layout)
    if not gt_files:
        where = (
            f"in the {layout} layout under {gt_dir}" if layout else f"in {gt_dir} (*.nii.gz, *.nii, *.mha)"
        )
        raise DataError(f"no label files found {where}; point --gt at the labels or name the --layout")
    pred_files = _image_files(pred_dir)
    if case_ids is not None:
        wanted = list(dict.fromkeys(str(c) for c in case_ids))
        problems = [p for p in problems if any(c in p for c in wanted)]
        for case_id in wanted:
            if case_id not in gt_files:
                problems.append(f"{case_id}: listed for evaluation but has no label under {gt_dir}; not evaluated")
        gt_files = {c: gt_files[c] for c in wanted if c in gt_files}
        pred_files = {c: p for c, p in pred_files.items() if c in gt_files}
    for case_id in sorted(set(pred_files) - set(gt_files)):
        problems.append(f"{case_id}: prediction {pred_files[case_id]} has no label; not evaluated")

    case_ids = sorted(gt_files)
    if progress:
        from tqdm import tqdm

        case_ids = tqdm(case_ids, desc="evaluate", unit="case", file=sys.stderr)
    rows = []
    for case_id in case_ids:
        pred_path = pred_files.get(case_id)
        if pred_path is None:
            problems.append(
                f"{case_id}: no prediction {pred_dir / (case_id + '.nii.gz')} (or .nii/.mha); run predict for it"
            )
            continue
        try:
            pred, gt = _load_pair(case_id, pred_path, gt_files[case_id])
        except DataError as err:
            problems.append(str(err) if str(err).startswith(case_id) else f"{case_id}: {err}")
            continue
        rows.extend(evaluate_arrays([(case_id, pred.array, gt.array, gt.spacing)], labels=labels))
    for line in problems:
        print(f"h2aseg evaluate: {line}", file=sys.stderr)
    if not rows:
        raise DataError(
            f"no case could be evaluated ({len(problems)} problems, first: {problems[0]})"
            if problems
            else "no case could be evaluated"
        )

    summary = summarise(rows)
    summary["problems"] = problems
    summary["settings"] = {
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
        "layout": layout,
        "labels": list(labels),
        "case_ids": None if case_ids is None else list(gt_files),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "per_case.csv")
    write_json(summary, out_dir / "summary.json")
    text = summary_markdown(summary, title=f"Evaluation of {pred_dir.name}")
    if problems:
        text += "\nProblems (cases left out):\n\n" + "".join(f"- {p}\n" for p in problems)
    write_text(text, out_dir / "summary.md")
    return summary
