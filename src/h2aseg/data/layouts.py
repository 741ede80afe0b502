"""Finding PET/CT cases on disk and splitting them by patient.

Layouts understood by :func:`discover_cases` (``layout="auto"`` tells them apart by their files):

``autopet``
    AutoPET-II / FDG-PET-CT-Lesions NIfTI release: ``<root>/<PETCT_id>/<study>/`` with ``CTres.nii.gz``
    (CT on the PET grid; ``CT.nii.gz`` is used when CTres is absent), ``SUV.nii.gz`` (PET in SUV) and
    ``SEG.nii.gz``. Patient id = the ``PETCT_…`` folder; case id = ``<patient>_study<k>`` with ``k``
    the 1-based rank of the study folder in sorted name order.
``hecktor``
    HECKTOR 2022: ``imagesTr/<Center-ID>__CT.nii.gz``, ``imagesTr/<Center-ID>__PT.nii.gz`` (SUV) and
    ``labelsTr/<Center-ID>.nii.gz`` (``imagesTs``/``labelsTs`` too). One study per patient, so the
    patient id is the case id.
``nnunet``
    nnU-Net raw dataset: ``imagesTr/<case>_0000<ending>`` etc., ``labelsTr/<case><ending>`` and
    ``dataset.json``. Which channel is CT and which PET (:func:`resolve_channels`): ``--ct-channel`` /
    ``--pet-channel`` when given; else the names in ``channel_names`` (v2) or ``modality`` (v1) when
    exactly one says CT and one PET (``CT``, ``CTres``…; ``PET``, ``PT``, ``SUV``…); else — names missing,
    duplicated (nnU-Net's own AutoPET conversion names both channels ``CT`` on purpose, so that they are
    normalised alike) or ambiguous — the image content of the first complete case decides: the channel
    holding air (values below −500 HU) is CT, the one without is PET. A dataset where neither decides is
    one error naming the case and the two options. The choice and its reason are a note of the
    :class:`Discovery`, printed by ``check``, ``train`` and ``predict``. nnU-Net has no patient field: the
    patient id is taken from the case id by :func:`guess_patient_id`, or from an optional
    ``"patient_ids": {case: patient}`` entry in ``dataset.json``.
``manifest``
    A CSV or JSON file (or a folder holding ``manifest.csv`` / ``manifest.json``) with columns/keys
    ``case_id, patient_id, ct, pet, label``; relative paths are relative to the manifest's folder;
    ``label`` may be empty. Optional ``ct_series``/``pet_series`` give the SeriesInstanceUID to take when
    ``ct``/``pet`` is a DICOM folder holding several series of its modality. A JSON manifest is a list of
    objects or ``{"cases": [...]}``.

Discovery only looks at file names (it does not open images); a case whose files are missing is
reported as a :class:`CaseProblem` and left out, and the others go on. Image content (NaN, 4-D,
no overlap, bad label values) is checked when a case is read (:mod:`h2aseg.data.preprocess`).

Splits (:func:`make_splits`) are 6:2:2 train/val/test by default, seeded, grouped by patient so that
no patient has studies in two splits, and saved to ``splits.json`` so that every model sees the same.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from h2aseg.atomic import atomic_write_text
from h2aseg.errors import DataError

__all__ = [
    "LAYOUTS",
    "Case",
    "CaseProblem",
    "Discovery",
    "discover_cases",
    "detect_layout",
    "guess_patient_id",
    "make_splits",
    "resolve_channels",
    "save_splits",
    "load_splits",
    "load_or_create_splits",
]

LAYOUTS = ("autopet", "hecktor", "nnunet", "manifest", "auto")
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class Case:
    """One PET/CT study.

    Attributes:
        case_id: unique id, contains the patient id (e.g. ``"PETCT_0af7ffe12a_study1"``, ``"CHUM-001"``).
        patient_id: the patient; studies of one patient always land in one split.
        ct: CT file (HU) or DICOM folder.
        pet: PET file (SUV) or DICOM folder (converted to SUV when read).
        label: label file, or ``None`` for an unlabelled (inference) case.
        ct_series, pet_series: SeriesInstanceUID to take when ``ct``/``pet`` is a DICOM folder holding
            several series of that modality (None: chosen by Modality, see :mod:`h2aseg.data.io`).
    """

    case_id: str
    patient_id: str
    ct: Path
    pet: Path
    label: Path | None
    ct_series: str | None = None
    pet_series: str | None = None


@dataclass
class CaseProblem:
    """A case that cannot be used, with a one-line message naming the file and what to do."""

    case_id: str
    path: Path | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Discovery:
    """The usable cases of a dataset (sorted by case id), the problems found on the way, and notes that
    verbs print (e.g. which nnU-Net channel was taken as CT and which as PET, and why)."""

    cases: list[Case]
    problems: list[CaseProblem]
    notes: list[str] = field(default_factory=list)


def guess_patient_id(case_id: str) -> str:
    """Patient id from a case id: ``PETCT_<hex>`` for AutoPET-style ids, else the case id itself."""
    match = re.match(r"(PETCT_[0-9a-fA-F]+)", case_id)
    return match.group(1) if match else case_id


def _problem(case_id: str, path: Path | None, what: str) -> CaseProblem:
    where = f" {path}:" if path is not None else ""
    return CaseProblem(case_id, path, f"case {case_id}:{where} {what}")


def detect_layout(root: Path) -> str:
    """Which layout ``root`` is in (one of ``LAYOUTS`` except ``"auto"``).

    Raises:
        DataError: the folder matches none of them.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: dataset folder not found; check the path")
    if root.is_file():
        if root.suffix.lower() in (".csv", ".json"):
            return "manifest"
        raise DataError(f"{root}: not a dataset folder nor a .csv/.json manifest")
    if (root / "manifest.csv").exists() or (root / "manifest.json").exists():
        return "manifest"
    if (root / "dataset.json").exists():
        return "nnunet"
    for images in ("imagesTr", "imagesTs"):
        folder = root / images
        if folder.is_dir():
            names = [p.name for p in folder.iterdir()]
            if any("__CT." in n or "__PT." in n for n in names):
                return "hecktor"
            if any(re.search(r"_\d{4}\.", n) for n in names):
                return "nnunet"
    for study_file in ("SUV.nii.gz", "CTres.nii.gz", "PET.nii.gz", "CT.nii.gz"):
        if next(root.glob(f"*/*/{study_file}"), None) is not None:
            return "autopet"
    raise DataError(
        f"{root}: cannot tell the dataset layout (AutoPET-II, HECKTOR, nnU-Net raw or manifest); "
        "pass --layout or check the folder"
    )


def _autopet(root: Path, require_labels: bool) -> Discovery:
    cases, problems = [], []
    for patient_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        studies = sorted(p for p in patient_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for k, study in enumerate(studies, start=1):
            case_id = f"{patient_dir.name}_study{k}"
            ct = study / "CTres.nii.gz"
            if not ct.exists():
                ct = study / "CT.nii.gz"
            pet, label = study / "SUV.nii.gz", study / "SEG.nii.gz"
            if not ct.exists():
                problems.append(_problem(case_id, study, "CT missing (no CTres.nii.gz or CT.nii.gz)"))
                continue
            if not pet.exists():
                hint = (
                    "only PET.nii.gz (Bq/ml) found, convert it to SUV.nii.gz"
                    if (study / "PET.nii.gz").exists()
                    else "PET missing (no SUV.nii.gz)"
                )
                problems.append(_problem(case_id, study, hint))
                continue
            if not label.exists():
                if require_labels:
                    problems.append(
                        _problem(case_id, label, "label missing; add SEG.nii.gz or run unlabelled")
                    )
                    continue
                label = None
            cases.append(Case(case_id, patient_dir.name, ct, pet, label))
    return Discovery(cases, problems)


def _hecktor(root: Path, require_labels: bool) -> Discovery:
    cases, problems = [], []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        folder = root / images
        if not folder.is_dir():
            continue
        ids = sorted({re.sub(r"__(CT|PT)\.nii(\.gz)?$", "", p.name) for p in folder.glob("*__*.nii*")})
        for case_id in ids:
            ct, pet = folder / f"{case_id}__CT.nii.gz", folder / f"{case_id}__PT.nii.gz"
            label: Path | None = root / labels / f"{case_id}.nii.gz"
            if not ct.exists():
                problems.append(_problem(case_id, ct, "CT missing; add the __CT.nii.gz file"))
                continue
            if not pet.exists():
                problems.append(_problem(case_id, pet, "PET missing; add the __PT.nii.gz file"))
                continue
            if not label.exists():
                if require_labels:
                    problems.append(_problem(case_id, label, "label missing; add it or run unlabelled"))
                    continue
                label = None
            cases.append(Case(case_id, case_id, ct, pet, label))
    return Discovery(cases, problems)


def _channel_kind(name: str) -> str | None:
    """``"ct"``, ``"pet"`` or None (a normalisation scheme such as ``noNorm``, or an unknown name)."""
    name = name.strip().lower()
    if name.startswith("ct"):
        return "ct"
    if name in ("pt", "pet", "suv") or "pet" in name or "suv" in name:
        return "pet"
    return None


def _channel_file(folder: Path, case_id: str, channel: int, ending: str) -> Path:
    return folder / f"{case_id}_{channel:04d}{ending}"


def _holds_air(path: Path) -> bool:
    from h2aseg.data.content import has_air, volume_stats
    from h2aseg.data.io import read_image, to_array

    return has_air(volume_stats(to_array(read_image(path))))


def _channels_by_content(
    folders: list[Path], ids: list[str], channels: list[int], ending: str, names: dict, root: Path
) -> tuple[int, int, str]:
    first = None
    for folder in folders:
        for case_id in ids:
            files = [_channel_file(folder, case_id, k, ending) for k in channels]
            if not all(f.exists() for f in files):
                continue
            first = first or case_id
            try:
                air = [_holds_air(f) for f in files]
            except DataError:
                continue
            if sum(air) == 1:
                ct = channels[air.index(True)]
                pet = channels[air.index(False)]
                why = (
                    f"by content of case {case_id}: _{ct:04d} holds air (values below -500 HU) as a CT does, "
                    f"_{pet:04d} does not" + (f"; dataset.json names {names} do not tell" if names else "")
                )
                return ct, pet, why
            break  # the first complete case decides; a second opinion would hide a broken dataset
        if first:
            break
    raise DataError(
        f"{root}: case {first or '(none complete)'}: cannot tell which nnU-Net channel is CT and which PET "
        f"(dataset.json names {names or 'none'}, and the images do not tell: neither or both hold air); "
        f"pass --ct-channel K --pet-channel K"
    )


def resolve_channels(
    root: Path, meta: dict, ending: str, ct_channel: int | None = None, pet_channel: int | None = None
) -> tuple[int, int, str]:
    """(CT channel, PET channel, reason) of an nnU-Net raw dataset (rules in the module docstring).

    Raises:
        DataError: the options contradict the data, or neither names nor content decide.
    """
    raw = meta.get("channel_names") or meta.get("modality") or {}
    names = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    folders = [root / f for f in ("imagesTr", "imagesTs") if (root / f).is_dir()]
    pattern = re.compile(r"^(.*)_(\d{4})" + re.escape(ending) + "$")
    found = [
        (m.group(1), int(m.group(2))) for f in folders for p in f.iterdir() if (m := pattern.match(p.name))
    ]
    channels = sorted({int(k) for k in names if str(k).isdigit()} | {k for _, k in found})
    ids = sorted({c for c, _ in found})
    if ct_channel is not None or pet_channel is not None:
        rest = [k for k in channels if k not in (ct_channel, pet_channel)]
        if ct_channel is None or pet_channel is None:
            if len(rest) != 1:
                raise DataError(
                    f"{root}: give both --ct-channel and --pet-channel (channels found: {channels})"
                )
            ct_channel = rest[0] if ct_channel is None else ct_channel
            pet_channel = rest[0] if pet_channel is None else pet_channel
        if ct_channel == pet_channel:
            raise DataError(
                f"{root}: --ct-channel and --pet-channel are both {ct_channel}; give two channels"
            )
        return int(ct_channel), int(pet_channel), "as given by --ct-channel/--pet-channel"
    kinds = {k: _channel_kind(v) for k, v in names.items()}
    cts = [int(k) for k, v in kinds.items() if v == "ct"]
    pets = [int(k) for k, v in kinds.items() if v == "pet"]
    if len(cts) == 1 and len(pets) == 1:
        key = "channel_names" if "channel_names" in meta else "modality"
        return cts[0], pets[0], f"from dataset.json {key} {names}"
    if len(channels) != 2:
        raise DataError(
            f"{root}: {len(channels)} channels {channels} and dataset.json names {names or 'none'} do not "
            "say which is CT and which PET; pass --ct-channel K --pet-channel K"
        )
    return _channels_by_content(folders, ids, channels, ending, names, root)


def _nnunet(
    root: Path, require_labels: bool, ct_channel: int | None = None, pet_channel: int | None = None
) -> Discovery:
    meta = {}
    if (root / "dataset.json").exists():
        try:
            meta = json.loads((root / "dataset.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DataError(f"{root / 'dataset.json'}: unreadable ({err}); fix the JSON") from None
    ending = meta.get("file_ending", ".nii.gz")
    ct_ch, pet_ch, why = resolve_channels(root, meta, ending, ct_channel, pet_channel)
    note = (
        f"nnU-Net channels: CT = channel {ct_ch} (*_{ct_ch:04d}{ending}), PET = channel {pet_ch} "
        f"(*_{pet_ch:04d}{ending}), {why}"
    )
    patients = meta.get("patient_ids", {})
    cases, problems = [], []
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        folder = root / images
        if not folder.is_dir():
            continue
        pattern = re.compile(r"^(.*)_(\d{4})" + re.escape(ending) + "$")
        ids = sorted({m.group(1) for p in folder.iterdir() if (m := pattern.match(p.name))})
        for case_id in ids:
            ct = _channel_file(folder, case_id, ct_ch, ending)
            pet = _channel_file(folder, case_id, pet_ch, ending)
            label: Path | None = root / labels / f"{case_id}{ending}"
            if not ct.exists():
                problems.append(_problem(case_id, ct, f"CT (channel {ct_ch}) missing"))
                continue
            if not pet.exists():
                problems.append(_problem(case_id, pet, f"PET (channel {pet_ch}) missing"))
                continue
            if not label.exists():
                if require_labels:
                    problems.append(_problem(case_id, label, "label missing; add it or run unlabelled"))
                    continue
                label = None
            patient = str(patients.get(case_id, guess_patient_id(case_id)))
            cases.append(Case(case_id, patient, ct, pet, label))
    return Discovery(cases, problems, [note])


def _manifest(root: Path, require_labels: bool) -> Discovery:
    if root.is_dir():
        root = root / "manifest.csv" if (root / "manifest.csv").exists() else root / "manifest.json"
    base = root.parent
    try:
        if root.suffix.lower() == ".csv":
            with root.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        else:
            data = json.loads(root.read_text())
            rows = data["cases"] if isinstance(data, dict) else data
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(
            f"{root}: unreadable manifest ({err}); expected columns case_id,patient_id,ct,pet,label"
        ) from None
    cases, problems, seen = [], [], set()
    for n, row in enumerate(rows, start=1):
        row = {str(k).strip(): ("" if v is None else str(v).strip()) for k, v in dict(row).items()}
        case_id = row.get("case_id") or f"row{n}"
        if case_id in seen:
            problems.append(_problem(case_id, root, f"duplicate case_id in row {n}; make case ids unique"))
            continue
        seen.add(case_id)
        paths: dict[str, Path | None] = {}
        bad = False
        for key in ("ct", "pet", "label"):
            value = row.get(key, "")
            if not value:
                paths[key] = None
                if key != "label" or require_labels:
                    problems.append(_problem(case_id, root, f"no {key} path in row {n} of the manifest"))
                    bad = True
                continue
            path = Path(value)
            path = path if path.is_absolute() else base / path
            if not path.exists():
                problems.append(_problem(case_id, path, f"{key.upper()} file missing; fix the manifest"))
                bad = True
            paths[key] = path
        if bad:
            continue
        patient = row.get("patient_id") or guess_patient_id(case_id)
        cases.append(
            Case(
                case_id,
                patient,
                paths["ct"],
                paths["pet"],
                paths["label"],
                row.get("ct_series") or None,
                row.get("pet_series") or None,
            )
        )
    return Discovery(cases, problems)


_FINDERS = {"autopet": _autopet, "hecktor": _hecktor, "nnunet": _nnunet, "manifest": _manifest}


def discover_cases(
    root: Path,
    layout: str = "auto",
    require_labels: bool = True,
    ct_channel: int | None = None,
    pet_channel: int | None = None,
) -> Discovery:
    """Find every case under ``root``.

    Args:
        root: dataset folder (or manifest file).
        layout: one of ``LAYOUTS``; ``"auto"`` detects it from the files.
        require_labels: when True a case without a label is a problem; when False its label is None.
        ct_channel, pet_channel: nnU-Net channel numbers of CT and PET (only for that layout; None: from
            ``dataset.json`` names or the image content, see :func:`resolve_channels`).

    Returns:
        :class:`Discovery` with the usable cases sorted by case id and one problem per bad case.

    Raises:
        DataError: the folder does not exist or its layout cannot be told.
        ValueError: unknown ``layout``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif not root.exists():
        raise DataError(f"{root}: dataset folder not found; check the path")
    if layout == "nnunet":
        found = _nnunet(root, require_labels, ct_channel, pet_channel)
    elif ct_channel is not None or pet_channel is not None:
        raise DataError(
            f"{root}: --ct-channel/--pet-channel apply to nnU-Net raw data, not the {layout} layout"
        )
    else:
        found = _FINDERS[layout](root, require_labels)
    found.cases.sort(key=lambda c: c.case_id)
    ids = [c.case_id for c in found.cases]
    if len(set(ids)) != len(ids):
        raise DataError(f"{root}: duplicate case ids; make them unique")
    return found


def make_splits(
    cases: Sequence[Case], seed: int = 0, ratios: Sequence[float] = (0.6, 0.2, 0.2)
) -> dict[str, list[str]]:
    """Seeded train/val/test split of case ids, grouped by patient.

    Patients are shuffled with ``numpy.random.default_rng(seed)`` and each goes, with all its
    studies, to the split furthest below its target number of cases (``ratios`` × number of cases),
    so the case counts follow the ratios as closely as patient groups allow.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each list sorted.

    Raises:
        ValueError: ratios are not three non-negative numbers summing to 1.
    """
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"ratios must be three non-negative numbers summing to 1, got {ratios}")
    by_patient: dict[str, list[str]] = {}
    for case in cases:
        by_patient.setdefault(case.patient_id, []).append(case.case_id)
    patients = sorted(by_patient)
    order = np.random.default_rng(seed).permutation(len(patients))
    targets = [r * len(cases) for r in ratios]
    splits: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for index in order:
        ids = by_patient[patients[index]]
        deficits = [targets[i] - len(splits[name]) for i, name in enumerate(SPLIT_NAMES)]
        splits[SPLIT_NAMES[int(np.argmax(deficits))]].extend(ids)
    return {name: sorted(ids) for name, ids in splits.items()}


def save_splits(splits: dict[str, list[str]], path: Path) -> None:
    """Write ``splits`` as JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps({k: list(splits[k]) for k in SPLIT_NAMES}, indent=2) + "\n")


def load_splits(path: Path) -> dict[str, list[str]]:
    """Read a ``splits.json`` written by :func:`save_splits`.

    Raises:
        DataError: unreadable or without the train/val/test lists.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return {name: [str(i) for i in data[name]] for name in SPLIT_NAMES}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: unreadable splits file ({err}); delete it to make new splits") from None


def load_or_create_splits(cases: Sequence[Case], path: Path, seed: int = 0) -> dict[str, list[str]]:
    """Reuse ``path`` if it exists (checking that its case ids exist and no patient straddles two
    splits), else make splits with ``seed`` and save them there.

    Cases missing from an existing file are left out of every split (new data does not silently
    change a published split; delete the file to re-split).
    """
    path = Path(path)
    if not path.exists():
        splits = make_splits(cases, seed=seed)
        save_splits(splits, path)
        return splits
    splits = load_splits(path)
    known = {c.case_id: c.patient_id for c in cases}
    owner: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for case_id in splits[name]:
            if case_id not in known:
                raise DataError(
                    f"{path}: lists case {case_id} that is not in the dataset; delete the file to re-split"
                )
            patient = known[case_id]
            if owner.setdefault(patient, name) != name:
                raise DataError(
                    f"{path}: patient {patient} appears in {owner[patient]} and {name}; "
                    "delete the file to re-split"
                )
    return splits
