"""Predictions as DICOM objects that viewers open beside the source study: SEG and RTSTRUCT.

Both reference the PET series the prediction was made on (same FrameOfReferenceUID, study, patient) and
carry one segment / ROI per label:

- binary models: segment 1 "lesion" (SCT 52988006 Lesion);
- multiclass (HECKTOR) models: 1 "GTVp" (SCT 86049000 Malignant neoplasm, primary), 2 "GTVn"
  (SCT 14799000 Neoplasm, metastatic, in SCT 59441001 Lymph node); category SCT 49755003 Morphologically
  abnormal structure, algorithm type AUTOMATIC (family DCM 123110 Artificial Intelligence).

**SEG** (highdicom): a binary Segmentation whose frames lie on the PET slices (the prediction is on
the PET grid; a prediction moved to the CT grid, ``predict --grid ct``, references the CT series when that
is DICOM); each frame references its source instance. Frames with nothing in them are left out, except
when the whole prediction is empty: then every frame is written (all zeros), so the object still holds
each segment and loads in viewers.

**RTSTRUCT** (pydicom): per label and PET slice, the closed planar contours of the mask, traced by
marching squares at level 0.5 on the slice (contourpy, which matplotlib already brings): each contour
runs half-way between a mask voxel centre and its background neighbour, so every voxel centre lies on the
right side of it. Holes are separate contours; :func:`rtstruct_to_label` rasterises with the even–odd
rule (a voxel centre inside an odd number of contours is in the ROI), as viewers do. An empty label
gives an ROI without contours.

Both need the optional extra ``pip install 'h2aseg[dicom]'`` (highdicom); :func:`require_dicom` says so
in one line when it is missing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from h2aseg import __version__
from h2aseg.atomic import atomic_path
from h2aseg.errors import ConfigError, DataError

__all__ = [
    "SegmentLabel",
    "labels_for",
    "require_dicom",
    "read_series",
    "write_seg",
    "write_rtstruct",
    "rtstruct_to_label",
    "series_for",
    "RTSTRUCT_STORAGE",
]

RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
CATEGORY = Code("49755003", "SCT", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class SegmentLabel:
    """One label value of the prediction and how it is named and coded in DICOM."""

    value: int
    name: str
    property_type: Code
    color: tuple[int, int, int]
    region: Code | None = None
    rt_type: str = ""


LABELS = {
    "binary": (SegmentLabel(1, "lesion", Code("52988006", "SCT", "Lesion"), (230, 40, 40)),),
    "multiclass": (
        SegmentLabel(
            1, "GTVp", Code("86049000", "SCT", "Malignant neoplasm, primary"), (230, 40, 40), None, "GTV"
        ),
        SegmentLabel(
            2,
            "GTVn",
            Code("14799000", "SCT", "Neoplasm, metastatic"),
            (40, 120, 230),
            Code("59441001", "SCT", "Lymph node"),
            "GTV",
        ),
    ),
}


def labels_for(label_mode: str) -> tuple[SegmentLabel, ...]:
    """The segments of a model trained with ``label_mode`` (binary | multiclass)."""
    return LABELS[label_mode]


def require_dicom():
    """highdicom, or a one-line ConfigError naming the extra that installs it."""
    try:
        import highdicom
    except ImportError:
        raise ConfigError("DICOM SEG/RTSTRUCT output needs highdicom: pip install 'h2aseg[dicom]'") from None
    return highdicom


def read_series(folder: Path) -> list[Dataset]:
    """Headers of the largest DICOM series in ``folder`` (no pixels),
    sorted along the slice normal as ITK sorts."""
    series: dict[str, list[Dataset]] = {}
    for file in sorted(Path(folder).iterdir()):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not a DICOM file: skipped as ITK's series scan skips it
            continue
        if "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if not series:
        raise DataError(
            f"{folder}: no DICOM image series to reference; give the PET as a DICOM series folder"
        )
    slices = max(series.values(), key=len)
    orientation = np.asarray(slices[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(slices, key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))


def series_for(label: sitk.Image, folders: list[Path]) -> Path:
    """The first DICOM series folder whose slices carry ``label``'s grid (PET, or CT for a CT-grid label)."""
    reasons = []
    for folder in folders:
        try:
            _frames(label, read_series(folder), folder)
            return Path(folder)
        except DataError as err:
            reasons.append(str(err))
    raise DataError(reasons[0] if reasons else "no DICOM series to reference; DICOM output needs DICOM input")


def _frames(label: sitk.Image, sources: list[Dataset], pet_dir: Path) -> np.ndarray:
    """The label as (frames, rows, columns), checked to lie on the PET slices of ``sources``."""
    array = sitk.GetArrayFromImage(label)
    first = sources[0]
    if array.shape != (len(sources), int(first.Rows), int(first.Columns)):
        raise DataError(
            f"{pet_dir}: prediction of size {label.GetSize()} is not on this PET series "
            f"({first.Columns}x{first.Rows}x{len(sources)}); predict on the PET grid"
        )
    for k in (0, len(sources) - 1):
        expected = label.TransformIndexToPhysicalPoint((0, 0, k))
        if not np.allclose(np.asarray(sources[k].ImagePositionPatient, float), expected, atol=1e-2):
            raise DataError(
                f"{pet_dir}: slice {k + 1} lies at {list(sources[k].ImagePositionPatient)}, the "
                f"prediction at {expected}; predict on this PET series"
            )
    return array


def write_seg(
    label: sitk.Image,
    pet_dir: Path,
    path: Path,
    labels: tuple[SegmentLabel, ...],
    model_name: str = "h2aseg",
    description: str = "",
) -> Path:
    """Write ``label`` (values = ``labels[i].value``, on the PET grid) as a DICOM SEG referencing
    ``pet_dir``."""
    hd = require_dicom()
    from pydicom.sr.codedict import codes

    sources = read_series(pet_dir)
    array = _frames(label, sources, pet_dir)
    masks = np.stack([array == item.value for item in labels], axis=-1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"h2aseg {model_name}"[:64], family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    segments = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=item.name,
            segmented_property_category=CATEGORY,
            segmented_property_type=item.property_type,
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
            anatomic_regions=[item.region] if item.region else None,
            display_color=hd.color.CIELabColor.from_rgb(*item.color) if hasattr(hd, "color") else None,
        )
        for n, item in enumerate(labels, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=masks,
        segmentation_type="BINARY",
        segment_descriptions=segments,
        series_instance_uid=generate_uid(),
        series_number=901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="h2aseg",
        manufacturer_model_name=model_name[:64],
        software_versions=__version__,
        device_serial_number="0",
        content_label="H2ASEG",
        content_description=(description or "h2aseg")[:64],
        omit_empty_frames=bool(masks.any()),
    )
    seg.SeriesDescription = f"h2aseg {model_name}"[:64]
    with atomic_path(Path(path)) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _contours(mask2d: np.ndarray) -> list[np.ndarray]:
    """Closed contours (N, 2) of a (rows, columns) mask in (column, row) index coordinates,
    no repeated end."""
    import contourpy

    padded = np.pad(mask2d.astype(np.float64), 1)
    generator = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    lines = []
    for line in generator.lines(0.5):
        line = np.asarray(line) - 1.0
        if len(line) > 1 and np.allclose(line[0], line[-1]):
            line = line[:-1]
        if len(line) >= 3:
            lines.append(line)
    return lines


def _reference(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop_instance
    return item


def _rt_header(first: Dataset, model_name: str, description: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = RTSTRUCT_STORAGE, ExplicitVRLittleEndian
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, meta.MediaStorageSOPInstanceUID
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyDescription",
    ):
        setattr(ds, keyword, first.get(keyword, ""))
    now = dt.datetime.now()
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 902
    ds.SeriesDescription = f"h2aseg {model_name}"[:64]
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "h2aseg", model_name[:64], __version__
    ds.InstanceNumber, ds.StructureSetLabel = 1, "h2aseg"
    ds.StructureSetDescription = (description or "h2aseg")[:1024]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ApprovalStatus = "UNAPPROVED"
    return ds


def write_rtstruct(
    label: sitk.Image,
    pet_dir: Path,
    path: Path,
    labels: tuple[SegmentLabel, ...],
    model_name: str = "h2aseg",
    description: str = "",
) -> Path:
    """Write ``label`` (on the PET grid) as an RT Structure Set: one ROI per label, contours per PET slice."""
    sources = read_series(pet_dir)
    array = _frames(label, sources, pet_dir)
    first = sources[0]
    ds = _rt_header(first, model_name, description)
    images = [_reference(s.SOPClassUID, s.SOPInstanceUID) for s in sources]
    series = Dataset()
    series.SeriesInstanceUID, series.ContourImageSequence = first.SeriesInstanceUID, images
    study = _reference("1.2.840.10008.3.1.2.3.1", first.StudyInstanceUID)  # Detached Study Management
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID, frame.RTReferencedStudySequence = first.FrameOfReferenceUID, [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    # physical point of index (x, y, k): origin + D·diag(spacing)·(x, y, k)
    matrix = np.asarray(label.GetDirection(), float).reshape(3, 3) * np.asarray(label.GetSpacing(), float)
    origin = np.asarray(label.GetOrigin(), float)
    rois, roi_contours, observations = [], [], []
    for number, item in enumerate(labels, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = (
            number,
            first.FrameOfReferenceUID,
            item.name,
        )
        roi.ROIGenerationAlgorithm, roi.ROIGenerationDescription = "AUTOMATIC", f"h2aseg {model_name}"[:64]
        rois.append(roi)
        contour_set = Dataset()
        contour_set.ReferencedROINumber, contour_set.ROIDisplayColor = number, list(item.color)
        contours = []
        for k in range(array.shape[0]):
            for line in _contours(array[k] == item.value):
                index = np.column_stack([line, np.full(len(line), float(k))])
                points = origin + index @ matrix.T
                contour = Dataset()
                contour.ContourImageSequence = [images[k]]
                contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
                contour.ContourData = [f"{v:.4f}" for v in points.ravel()]
                contours.append(contour)
        if contours:
            contour_set.ContourSequence = contours
        roi_contours.append(contour_set)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType, observation.ROIInterpreter = item.rt_type, ""
        observations.append(observation)
    ds.StructureSetROISequence, ds.ROIContourSequence = rois, roi_contours
    ds.RTROIObservationsSequence = observations
    with atomic_path(Path(path)) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


def rtstruct_to_label(path: Path, reference: sitk.Image) -> sitk.Image:
    """Rasterise every ROI of an RTSTRUCT onto ``reference`` (even–odd rule per slice); value = ROI number."""
    from matplotlib.path import Path as Polygon

    ds = pydicom.dcmread(path)
    matrix = np.asarray(reference.GetDirection(), float).reshape(3, 3) * np.asarray(
        reference.GetSpacing(), float
    )
    inverse, origin = np.linalg.inv(matrix), np.asarray(reference.GetOrigin(), float)
    size = reference.GetSize()
    label = np.zeros(size[::-1], np.uint8)  # (Z, Y, X)
    rows, cols = np.mgrid[0 : size[1], 0 : size[0]]
    centres = np.column_stack([cols.ravel(), rows.ravel()]).astype(float)
    for contour_set in ds.ROIContourSequence:
        inside = np.zeros_like(label, dtype=bool)
        for contour in contour_set.get("ContourSequence", []):
            index = (np.asarray(contour.ContourData, float).reshape(-1, 3) - origin) @ inverse.T
            k = int(round(float(index[0, 2])))
            if 0 <= k < size[2]:
                hit = Polygon(index[:, :2]).contains_points(centres).reshape(size[1], size[0])
                inside[k] ^= hit
        label[inside] = int(contour_set.ReferencedROINumber)
    image = sitk.GetImageFromArray(label)
    image.CopyInformation(reference)
    return image
