"""Reading and writing PET/CT images with their geometry (spacing, origin, direction).

One interface for every format h2aseg meets on disk:

- NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``) and NRRD (``.nrrd``, ``.nhdr``) files;
- DICOM series, given as the folder that holds the slices. A folder may hold several series (CT, PT, a
  localizer, a SEG): :func:`read_ct` takes the series whose Modality is ``CT`` and :func:`read_pet` the
  one whose Modality is ``PT``, leaving out one-slice series (localizers, SEG/RT objects) when a volume is
  there; ``series_uid`` (``--ct-series``/``--pet-series``) picks one SeriesInstanceUID, and a choice that
  is still ambiguous is refused with the series found named.

Every image's header is read first: an image declaring more than ``max_voxels`` voxels (default
:data:`MAX_VOXELS` = 2^30, e.g. 1024 × 1024 × 1024 or 512 × 512 × 4096 — more than any whole-body CT)
is refused before its data are read (a decompression bomb or a corrupt header); the ``--max-voxels``
option raises the limit. A NIfTI file is decoded completely before use (a truncated or corrupt
``.nii.gz`` is refused, where ITK would fill it up silently).

Images stay :class:`SimpleITK.Image` objects (geometry attached) until a caller asks for a numpy
array with :func:`to_array`. Array convention everywhere in h2aseg: ``(X, Y, Z)`` = ``(H, W, D)`` with
Z the axial (slice) axis, i.e. ``sitk.GetArrayFromImage(img).transpose(2, 1, 0)``.

Intensities:

- CT: Hounsfield units. DICOM RescaleSlope/RescaleIntercept are applied by the reader; NIfTI/MHA CT
  is assumed to be stored in HU already (as in AutoPET-II and HECKTOR).
- PET: SUVbw (body-weight standardised uptake value, g/ml). DICOM PET in Bq/ml (Units ``BQML``) is
  converted with ``SUV = C * weight[g] / (dose[Bq] * 2**(-dt / half_life))``, where ``dt`` runs from
  the injection (RadiopharmaceuticalStartDateTime, else SeriesDate + RadiopharmaceuticalStartTime)
  to the series start (SeriesDate/SeriesTime, else AcquisitionDate/AcquisitionTime) when
  DecayCorrection is ``START``; with ``ADMIN`` the images are already decay corrected to the injection
  and ``dt = 0``. Units ``GML`` are taken as SUV already. NIfTI/MHA PET is assumed to be SUV already
  (AutoPET-II ``SUV.nii.gz``, HECKTOR ``__PT.nii.gz``).

Every failure a user can cause raises :class:`h2aseg.errors.DataError` with one line that names the
file and says what to do. Every write is atomic (temporary name in the same folder, then
``os.replace``), so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from h2aseg.atomic import atomic_path
from h2aseg.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "read_image",
    "read_ct",
    "read_pet",
    "read_label",
    "check_static_3d",
    "read_geometry",
    "write_image",
    "to_array",
    "from_array",
    "suv_factor_from_dicom",
    "image_suffix",
    "MAX_VOXELS",
    "DicomSeries",
    "list_dicom_series",
]

#: Largest number of voxels an image header may declare (raise with ``--max-voxels``).
MAX_VOXELS = 2**30
#: Errors of decoding a damaged file (truncated gzip, bad CRC, short read) turned into one-line DataErrors.
_DECODE_ERRORS = (OSError, EOFError, zlib.error, ValueError, RuntimeError, MemoryError)

#: File endings read as single-file images (DICOM series are folders).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
_WRITE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")


def image_suffix(path: Path) -> str:
    """The image file ending of ``path`` (``".nii.gz"`` counts as one ending), lower case."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def _short(err: Exception) -> str:
    """First meaningful line of an ITK/pydicom message (ITK messages span many lines)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "Description:" in line:
            return line.split("Description:", 1)[1].strip()
    return lines[-1] if lines else type(err).__name__


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series of a folder: its SeriesInstanceUID, Modality, description and slice files."""

    uid: str
    modality: str
    description: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        text = f"{self.uid} ({self.modality or 'no Modality'}, {len(self.files)} file(s)"
        return text + (f", '{self.description}')" if self.description else ")")


def _tag(reader: sitk.ImageFileReader, key: str) -> str:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def list_dicom_series(folder: Path) -> list[DicomSeries]:
    """Every DICOM series in ``folder`` (headers of one file per series are read, no pixels).

    Raises:
        DataError: the folder cannot be scanned or holds no DICOM series.
    """
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        raise DataError(f"{folder}: cannot scan folder for DICOM ({_short(err)})") from None
    if not series_ids:
        raise DataError(
            f"{folder}: folder holds no DICOM series; give a NIfTI/MHA/NRRD file or a folder of DICOM slices"
        )
    found = []
    for series_id in series_ids:
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id))
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        try:
            reader.ReadImageInformation()
        except RuntimeError as err:
            raise DataError(f"{files[0]}: unreadable DICOM header ({_short(err)})") from None

        uid, modality, description = (_tag(reader, key) for key in ("0020|000e", "0008|0060", "0008|103e"))
        found.append(DicomSeries(uid or series_id, modality.upper(), description, files))
    return found


_MODALITY_NAMES = {"CT": ("CT",), "PT": ("PT", "PET")}
_SERIES_OPTION = {"CT": "--ct-series", "PT": "--pet-series"}


def _select_series(folder: Path, modality: str | None, series_uid: str | None) -> DicomSeries:
    series = list_dicom_series(folder)
    listing = "; ".join(str(s) for s in series)
    option = _SERIES_OPTION.get(modality or "", "a series UID")
    if series_uid:
        chosen = [s for s in series if s.uid == series_uid]
        if not chosen:
            raise DataError(f"{folder}: no DICOM series {series_uid}; found {listing}")
        return chosen[0]
    volumes = [s for s in series if len(s.files) > 1] or series
    if modality is None:
        return max(volumes, key=lambda s: len(s.files))
    matching = [s for s in volumes if s.modality in _MODALITY_NAMES[modality]]
    if not matching and len(volumes) == 1 and not volumes[0].modality:
        matching = volumes  # an anonymised series without Modality, alone in its folder
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise DataError(
            f"{folder}: holds no {modality} DICOM series with more than one slice; found {listing}"
        )
    raise DataError(
        f"{folder}: holds {len(matching)} {modality} series, cannot choose: {listing}; pass {option} UID"
    )


def _dicom_series_files(
    folder: Path, modality: str | None = None, series_uid: str | None = None
) -> list[str]:
    return list(_select_series(folder, modality, series_uid).files)


def _check_size(path: Path, size: tuple[int, ...], max_voxels: int | None) -> None:
    limit = MAX_VOXELS if max_voxels is None else int(max_voxels)
    count = 1
    for n in size:
        count *= int(n)
    if count > limit:
        raise DataError(
            f"{path}: header declares {count} voxels (size {tuple(int(n) for n in size)}), more than the "
            f"limit of {limit}; a corrupt header or not a medical volume — if it is real, raise --max-voxels"
        )


def _header_size(path: Path) -> tuple[int, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return tuple(reader.GetSize())


def read_image(
    path: Path, max_voxels: int | None = None, modality: str | None = None, series_uid: str | None = None
) -> sitk.Image:
    """Read a NIfTI/MHA/NRRD file or a DICOM series folder, geometry included.

    Args:
        path: an image file, or a folder of DICOM slices (slices sorted by position).
        max_voxels: refuse an image whose header declares more voxels (None: :data:`MAX_VOXELS`).
        modality: ``"CT"`` or ``"PT"``: which series of a DICOM folder to take (see the module docstring);
            None takes the series with the most slices.
        series_uid: take this SeriesInstanceUID of a DICOM folder.

    Returns:
        The image as stored (pixel type unchanged for files; float32 for DICOM series, with each
        slice's RescaleSlope/Intercept applied).

    Raises:
        DataError: the path does not exist, holds no image, is too large, or cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path or the dataset layout")
    kind = "DICOM series" if path.is_dir() else "image file"
    try:
        if path.is_dir():
            files = _dicom_series_files(path, modality, series_uid)
            _check_size(path, (*_header_size(Path(files[0]))[:2], len(files)), max_voxels)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            reader.SetOutputPixelType(sitk.sitkFloat32)
            return reader.Execute()
        _check_size(path, _header_size(path), max_voxels)
        image = sitk.ReadImage(str(path))
        if image_suffix(path) in (".nii", ".nii.gz"):
            _check_nifti_complete(path, image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64))
    except DataError:
        raise
    except _DECODE_ERRORS as err:
        raise DataError(
            f"{path}: unreadable {kind} ({_short(err)}); check that it is complete and in a supported format"
        ) from None
    return image


def _check_nifti_complete(path: Path, check_finite: bool, chunk_bytes: int = 1 << 24) -> None:
    """Decode the whole file: ITK fills a truncated ``.nii.gz`` up without a word and turns NaN into 0.

    Streams the voxel data in chunks of ``chunk_bytes`` (reading a ``.nii.gz`` to its end also checks the
    gzip length and CRC), so the check holds one chunk in memory, not a second copy of the volume.
    """
    import nibabel
    from nibabel.filebasedimages import ImageFileError

    try:
        image = nibabel.load(str(path))  # the header only; voxels stay on disk
    except ImageFileError as err:
        raise DataError(
            f"{path}: unreadable NIfTI header ({err}); check that it is a complete NIfTI file"
        ) from None
    header, offset = image.header, int(image.dataobj.offset)  # offset: vox_offset, or 352 where it is 0
    dtype = header.get_data_dtype()
    expected = int(np.prod(header.get_data_shape(), dtype=np.int64)) * dtype.itemsize
    compressed = image_suffix(path) == ".nii.gz"
    if not compressed and not (check_finite and dtype.kind == "f"):
        present = path.stat().st_size - offset  # nothing to decode: the size tells truncation
        if present < expected:
            raise DataError(
                f"{path}: truncated ({max(present, 0)} of {expected} bytes of voxel data); "
                "copy or export the file again"
            )
        return
    chunk_bytes -= chunk_bytes % dtype.itemsize
    opener = gzip.open if compressed else open
    with opener(path, "rb") as handle:
        handle.seek(offset)
        remaining = expected
        while remaining > 0:
            block = handle.read(min(chunk_bytes, remaining))
            if not block:
                raise DataError(
                    f"{path}: truncated ({expected - remaining} of {expected} bytes of voxel data); "
                    "copy or export the file again"
                )
            remaining -= len(block)
            if check_finite and dtype.kind == "f":
                usable = len(block) - len(block) % dtype.itemsize
                if not np.isfinite(np.frombuffer(block[:usable], dtype=dtype)).all():
                    raise DataError(f"{path}: contains NaN or infinite values; fix or exclude the file")
        while handle.read(chunk_bytes):  # to the end: the gzip trailer's length and CRC
            pass


def _check_static_3d(image: sitk.Image, path: Path, what: str) -> None:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
            "give a single-channel (scalar) image"
        )
    if image.GetDimension() == 4:
        raise DataError(
            f"{path}: {what} is 4-D (size {image.GetSize()}); h2aseg needs one static 3-D frame, "
            "extract or sum the frames first"
        )
    if image.GetDimension() != 3:
        raise DataError(f"{path}: {what} is {image.GetDimension()}-D; h2aseg needs a 3-D volume")


def read_ct(path: Path, max_voxels: int | None = None, series_uid: str | None = None) -> sitk.Image:
    """Read a CT volume in Hounsfield units as float32 (DICOM rescale applied; files assumed HU).

    A DICOM folder gives its ``CT`` series (or ``series_uid``); ``max_voxels`` as :func:`read_image`.

    Raises:
        DataError: unreadable, too large, not a scalar 3-D volume, or no/ambiguous CT series.
    """
    path = Path(path)
    image = read_image(path, max_voxels, modality="CT", series_uid=series_uid)
    _check_static_3d(image, path, "CT")
    return sitk.Cast(image, sitk.sitkFloat32)


def read_pet(path: Path, max_voxels: int | None = None, series_uid: str | None = None) -> sitk.Image:
    """Read a PET volume as SUVbw, float32.

    DICOM series (the folder's ``PT`` series, or ``series_uid``) are converted from the header (see the
    module docstring); files are assumed to hold SUV already (:mod:`h2aseg.data.content` checks that).

    Raises:
        DataError: unreadable, too large, not a scalar 3-D volume, no/ambiguous PT series, or (DICOM) a
            header tag needed for SUV is missing; the message names the tag.
    """
    path = Path(path)
    image = read_image(path, max_voxels, modality="PT", series_uid=series_uid)
    _check_static_3d(image, path, "PET")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if path.is_dir():
        first = _dicom_series_files(path, "PT", series_uid)[0]
        image = image * suv_factor_from_dicom(Path(first))
    return image


def read_label(path: Path, max_voxels: int | None = None) -> sitk.Image:
    """Read a label map (reference or prediction) as stored, geometry included; ``max_voxels`` as
    :func:`read_image`. Values are not checked here: each caller knows which it allows.

    Raises:
        DataError: unreadable, too large, or not one scalar 3-D volume.
    """
    path = Path(path)
    image = read_image(path, max_voxels)
    _check_static_3d(image, path, "label map")
    return image


def read_geometry(path: Path) -> sitk.Image:
    """An empty uint8 image with the size, spacing, origin and direction of an image file's header (the
    voxels are not read): the reference grid to resample a label onto.

    Raises:
        DataError: the file does not exist or its header cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path or the dataset layout")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except _DECODE_ERRORS as err:
        raise DataError(
            f"{path}: unreadable image header ({_short(err)}); check that the file is complete"
        ) from None
    reference = sitk.Image([int(n) for n in reader.GetSize()], sitk.sitkUInt8)
    reference.SetSpacing(reader.GetSpacing())
    reference.SetOrigin(reader.GetOrigin())
    reference.SetDirection(reader.GetDirection())
    return reference


def check_static_3d(image: sitk.Image, path: Path, what: str) -> None:
    """Refuse an image that is not one scalar 3-D volume (a vector image, a 4-D series, a 2-D slice).

    Raises:
        DataError: one line naming ``path`` and ``what`` (e.g. ``"CT"``) and saying what to give instead.
    """
    _check_static_3d(image, Path(path), what)


def _parse_dicom_datetime(date: str | None, time: str | None) -> _dt.datetime | None:
    if not date or not time:
        return None
    date = str(date).strip()
    time = str(time).strip().replace(":", "")
    hh, mm, ss = int(time[0:2]), int(time[2:4] or 0), time[4:] or "0"
    seconds = float(ss)
    day = _dt.datetime.strptime(date[:8], "%Y%m%d")
    return day + _dt.timedelta(hours=hh, minutes=mm, seconds=seconds)


def _parse_dicom_dt(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    value = str(value).strip()
    value = value.split("+")[0].split("-")[0] if len(value) > 14 else value
    return _parse_dicom_datetime(value[:8], value[8:] or "000000")


def suv_factor_from_dicom(dicom_file: Path) -> float:
    """The factor that turns the stored PET values (after rescale) of one DICOM series into SUVbw.

    Args:
        dicom_file: one slice of the PET series (its header is read, pixels are not).

    Returns:
        ``weight_g / decayed_dose_Bq`` for Units ``BQML``; ``1.0`` for Units ``GML``.

    Raises:
        DataError: a tag the formula needs is missing or unusable; the message names it.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(dicom_file), stop_before_pixels=True)
    except Exception as err:  # pydicom raises several unrelated types for broken files
        raise DataError(f"{dicom_file}: unreadable DICOM header ({_short(err)})") from None

    def missing(tag: str, hint: str = "") -> DataError:
        return DataError(
            f"{dicom_file}: cannot compute SUV, DICOM tag {tag} is missing or empty{hint}; "
            "fill it in or give the PET as an SUV NIfTI"
        )

    units = str(getattr(ds, "Units", "") or "").upper()
    if not units:
        raise missing("Units (0054,1001)")
    if units == "GML":
        return 1.0
    if units != "BQML":
        raise DataError(
            f"{dicom_file}: cannot compute SUV from PET Units {units!r}; h2aseg converts BQML (Bq/ml) "
            "or takes GML as SUV, export the series in Bq/ml"
        )
    weight = getattr(ds, "PatientWeight", None)
    if weight in (None, "") or float(weight) <= 0:
        raise missing("PatientWeight (0010,1030)")
    seq = getattr(ds, "RadiopharmaceuticalInformationSequence", None)
    if not seq:
        raise missing("RadiopharmaceuticalInformationSequence (0054,0016)")
    info = seq[0]
    dose = getattr(info, "RadionuclideTotalDose", None)
    if dose in (None, "") or float(dose) <= 0:
        raise missing("RadionuclideTotalDose (0018,1074)")
    correction = str(getattr(ds, "DecayCorrection", "") or "").upper()
    if not correction:
        raise missing("DecayCorrection (0054,1102)")
    if correction == "ADMIN":
        decay = 1.0
    elif correction == "START":
        half_life = getattr(info, "RadionuclideHalfLife", None)
        if half_life in (None, "") or float(half_life) <= 0:
            raise missing("RadionuclideHalfLife (0018,1075)")
        scan = _parse_dicom_datetime(getattr(ds, "SeriesDate", None), getattr(ds, "SeriesTime", None))
        if scan is None:
            scan = _parse_dicom_datetime(
                getattr(ds, "AcquisitionDate", None), getattr(ds, "AcquisitionTime", None)
            )
        if scan is None:
            raise missing("SeriesDate/SeriesTime (0008,0021)/(0008,0031)")
        injection = _parse_dicom_dt(getattr(info, "RadiopharmaceuticalStartDateTime", None))
        if injection is None:
            start_time = getattr(info, "RadiopharmaceuticalStartTime", None)
            if not start_time:
                raise missing("RadiopharmaceuticalStartTime (0018,1072)")
            injection = _parse_dicom_datetime(scan.strftime("%Y%m%d"), start_time)
            if injection > scan:  # injected the evening before a scan after midnight
                injection -= _dt.timedelta(days=1)
        elapsed = (scan - injection).total_seconds()
        if elapsed < 0:
            raise DataError(
                f"{dicom_file}: injection time is after the series time; check RadiopharmaceuticalStartTime"
            )
        decay = 2.0 ** (-elapsed / float(half_life))
    else:
        raise DataError(
            f"{dicom_file}: cannot compute SUV with DecayCorrection {correction!r}; "
            "h2aseg handles START and ADMIN, export the series decay corrected to its start"
        )
    return float(weight) * 1000.0 / (float(dose) * decay)


def write_image(image: sitk.Image, path: Path) -> None:
    """Write ``image`` to ``path`` (``.nii.gz``, ``.nii``, ``.mha`` or ``.nrrd``) atomically.

    ``.nii.gz`` and ``.mha`` are compressed. The parent folder is created if needed.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix not in _WRITE_SUFFIXES:
        raise ValueError(f"cannot write {path}: use one of {', '.join(_WRITE_SUFFIXES)}")
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=suffix in (".nii.gz", ".mha", ".nrrd"))


def to_array(image: sitk.Image) -> np.ndarray:
    """The voxels of a 3-D image as a numpy array indexed ``(X, Y, Z)`` (Z axial)."""
    array = sitk.GetArrayFromImage(image)
    return np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]))


def from_array(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """An image holding ``array`` (indexed ``(X, Y, Z)``) with the geometry of ``reference``.

    Raises:
        ValueError: the array shape differs from the reference size.
    """
    array = np.asarray(array)
    if tuple(array.shape) != tuple(reference.GetSize()):
        raise ValueError(f"array shape {array.shape} differs from the reference size {reference.GetSize()}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1])))
    image.CopyInformation(reference)
    return image
