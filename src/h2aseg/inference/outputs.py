"""What ``h2aseg predict`` writes for each case: label files, DICOM objects and optional post-processing.

Formats (several at once): ``nifti`` (``<case>.nii.gz``), ``mha`` (``<case>.mha``), ``dicom-seg``
(``<case>.seg.dcm``) and ``rtstruct`` (``<case>.rtstruct.dcm``); the DICOM formats need the case's PET as a
DICOM series folder and reference it (:mod:`h2aseg.inference.dicom_export`).

Post-processing, off by default, runs on the label on the original PET grid before anything is written,
per label value, on connected components with 18-connectivity (as the metrics count lesions):

- ``min_volume_ml``: a component of fewer than ``min_volume_ml`` ml (voxel count × voxel volume) is removed;
- ``min_suvmax``: a component whose highest PET SUV is below ``min_suvmax`` is removed (the usual
  autoPET false-positive filter: FDG-avid lesions have SUVmax of at least about 2-3).

Every removed component (label, voxels, ml, SUVmax) is recorded per case in :attr:`LabelWriter.records`,
which ``h2aseg predict`` saves as ``predict.json`` beside the outputs; the DICOM objects carry the
settings in their description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from h2aseg.data.io import from_array, read_pet, to_array, write_image
from h2aseg.data.layouts import Case
from h2aseg.errors import ConfigError, DataError
from h2aseg.evaluation.metrics import voxel_volume_ml

__all__ = ["FORMATS", "DICOM_FORMATS", "PostProcess", "LabelWriter", "parse_formats", "remove_components"]

FORMATS = ("nifti", "mha", "dicom-seg", "rtstruct")
DICOM_FORMATS = ("dicom-seg", "rtstruct")
SUFFIXES = {"nifti": ".nii.gz", "mha": ".mha", "dicom-seg": ".seg.dcm", "rtstruct": ".rtstruct.dcm"}
CONNECTIVITY_18 = ndimage.generate_binary_structure(3, 2)


def parse_formats(values: list[str] | str) -> tuple[str, ...]:
    """``"nifti,dicom-seg"`` or ``["nifti", "rtstruct"]`` -> the formats in order, each once;
    ConfigError else."""
    items = [values] if isinstance(values, str) else list(values)
    formats: list[str] = []
    for item in items:
        for name in (part.strip().lower() for part in item.split(",")):
            if name and name not in FORMATS:
                raise ConfigError(f"unknown output format {name!r}; choose from {', '.join(FORMATS)}")
            if name and name not in formats:
                formats.append(name)
    if not formats:
        raise ConfigError(f"no output format given; choose from {', '.join(FORMATS)}")
    return tuple(formats)


@dataclass(frozen=True)
class PostProcess:
    """Connected-component filters (0 = off); see the module docstring."""

    min_volume_ml: float = 0.0
    min_suvmax: float = 0.0

    def __post_init__(self) -> None:
        if self.min_volume_ml < 0 or self.min_suvmax < 0:
            raise ConfigError("post-processing thresholds must be >= 0 (0 turns a filter off)")

    @property
    def active(self) -> bool:
        return self.min_volume_ml > 0 or self.min_suvmax > 0

    def describe(self) -> str:
        parts = [f"removed components < {self.min_volume_ml:g} ml"] if self.min_volume_ml > 0 else []
        parts += [f"removed components with SUVmax < {self.min_suvmax:g}"] if self.min_suvmax > 0 else []
        return "; ".join(parts) or "no post-processing"


def remove_components(
    label: np.ndarray, suv: np.ndarray | None, spacing, rule: PostProcess
) -> tuple[np.ndarray, list[dict]]:
    """``label`` (X, Y, Z) without the components ``rule`` rejects; returns (label, removed components).

    ``suv`` (same shape) is needed when ``rule.min_suvmax`` > 0. Volumes: voxels × prod(spacing) / 1000 ml.
    """
    if rule.min_suvmax > 0 and suv is None:
        raise ValueError("the SUVmax filter needs the PET SUV volume")
    voxel_ml = voxel_volume_ml(spacing)
    label = label.copy()
    removed = []
    for value in (int(v) for v in np.unique(label) if v):
        components, count = ndimage.label(label == value, structure=CONNECTIVITY_18)
        for index, where in enumerate(ndimage.find_objects(components), start=1):
            voxels = components[where] == index
            n = int(voxels.sum())
            suvmax = float(suv[where][voxels].max()) if suv is not None else None
            if n * voxel_ml < rule.min_volume_ml or (suvmax is not None and suvmax < rule.min_suvmax):
                label[where][voxels] = 0
                removed.append(
                    {
                        "label": value,
                        "voxels": n,
                        "ml": round(n * voxel_ml, 4),
                        "suvmax": None if suvmax is None else round(suvmax, 3),
                    }
                )
    return label, removed


def _suv_on(label: sitk.Image, case: Case) -> sitk.Image:
    """The case's PET in SUV on ``label``'s grid (resampled linearly when the label is on another grid)."""
    pet = read_pet(case.pet)
    same = (
        pet.GetSize() == label.GetSize()
        and np.allclose(pet.GetOrigin(), label.GetOrigin(), atol=1e-3)
        and np.allclose(pet.GetSpacing(), label.GetSpacing())
        and np.allclose(pet.GetDirection(), label.GetDirection())
    )
    return (
        pet if same else sitk.Resample(pet, label, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    )


@dataclass
class LabelWriter:
    """Writes one case's label in every requested format; pass it as ``PredictOptions.write_label``.

    Args:
        formats: from :data:`FORMATS`.
        label_mode: binary | multiclass (the model's), names the DICOM segments.
        model_name: recorded in the DICOM objects.
        postprocess: connected-component filters applied first.
    """

    formats: tuple[str, ...] = ("nifti",)
    label_mode: str = "binary"
    model_name: str = "h2aseg"
    postprocess: PostProcess = field(default_factory=PostProcess)
    records: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(f in DICOM_FORMATS for f in self.formats):
            from h2aseg.inference.dicom_export import require_dicom

            require_dicom()  # before any case is predicted: the one-line install hint

    def check(self, case: Case) -> None:
        """DataError (one line) when the formats cannot be written for ``case`` (DICOM needs DICOM PET)."""
        wanted = [f for f in self.formats if f in DICOM_FORMATS]
        if wanted and not (Path(case.pet).is_dir() or Path(case.ct).is_dir()):
            raise DataError(
                f"case {case.case_id}: {'/'.join(wanted)} output needs the PET as a DICOM series "
                f"folder, {case.pet} is a file; give DICOM input or --format nifti"
            )

    def description(self) -> str:
        return f"h2aseg {self.model_name}; {self.postprocess.describe()}"

    def __call__(self, label: sitk.Image, case: Case, out_dir: Path) -> Path:
        """Post-process ``label`` (on the case's PET grid) and write every format; returns the first file."""
        from h2aseg.inference import dicom_export

        self.check(case)
        removed: list[dict] = []
        if self.postprocess.active:
            suv = to_array(_suv_on(label, case)) if self.postprocess.min_suvmax > 0 else None
            array, removed = remove_components(to_array(label), suv, label.GetSpacing(), self.postprocess)
            label = from_array(array, label)
        written = []
        if any(
            f in DICOM_FORMATS for f in self.formats
        ):  # the series the label lies on: PET, or CT (--grid ct)
            source = dicom_export.series_for(
                label, [Path(p) for p in (case.pet, case.ct) if Path(p).is_dir()]
            )
        for fmt in self.formats:
            target = Path(out_dir) / f"{case.case_id}{SUFFIXES[fmt]}"
            if fmt in ("nifti", "mha"):
                write_image(label, target)
            else:
                writer = dicom_export.write_seg if fmt == "dicom-seg" else dicom_export.write_rtstruct
                writer(
                    label,
                    source,
                    target,
                    dicom_export.labels_for(self.label_mode),
                    self.model_name,
                    self.description(),
                )
            written.append(target)
        self.records[case.case_id] = {"files": [p.name for p in written], "removed_components": removed}
        return written[0]

    def summary(self) -> dict:
        """What ``predict.json`` records: formats, post-processing settings, per-case files and removals."""
        return {"formats": list(self.formats), "postprocess": asdict(self.postprocess), "cases": self.records}


# --- the options of ``h2aseg predict`` (inference/cli.py calls these) ---


def add_output_options(parser) -> None:
    """``--format``, ``--min-component-ml`` and ``--min-suvmax`` of ``h2aseg predict``."""
    parser.add_argument(
        "--format",
        nargs="+",
        metavar="FORMAT",
        help=f"output formats, several allowed (space or comma separated): {', '.join(FORMATS)}; "
        "dicom-seg and rtstruct need DICOM PET input and reference it (default: from --ending)",
    )
    parser.add_argument(
        "--min-component-ml",
        type=float,
        default=0.0,
        help="remove predicted connected components smaller than this volume in ml (0: off)",
    )
    parser.add_argument(
        "--min-suvmax",
        type=float,
        default=0.0,
        help="remove predicted connected components whose SUVmax is below this (0: off)",
    )


def label_writer(args, loaded) -> LabelWriter:
    """The :class:`LabelWriter` of parsed ``predict`` arguments and a loaded model."""
    formats = (
        parse_formats(args.format)
        if args.format
        else (("mha",) if args.file_ending == ".mha" else ("nifti",))
    )
    return LabelWriter(
        formats,
        loaded.config.data.label_mode,
        loaded.config.model.name,
        PostProcess(args.min_component_ml, args.min_suvmax),
    )


def usable_cases(writer: LabelWriter, cases: list[Case]) -> tuple[list[Case], list[str]]:
    """Cases whose outputs can be written, and one line for each of the others (checked before predicting)."""
    usable, problems = [], []
    for case in cases:
        try:
            writer.check(case)
            usable.append(case)
        except DataError as err:
            problems.append(str(err))
    return usable, problems


def write_predict_record(out_dir: Path, loaded, writer: LabelWriter) -> None:
    """``OUT/predict.json``: model, formats, post-processing and what was removed per case."""
    import json

    from h2aseg.atomic import atomic_write_text

    record = {"model": loaded.config.model.name, "checkpoint": str(loaded.checkpoint), **writer.summary()}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "predict.json", json.dumps(record, indent=2) + "\n")
