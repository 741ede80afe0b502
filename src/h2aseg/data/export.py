"""Writing discovered cases into other layouts: nnU-Net raw and a CSV/JSON manifest.

Used to hand h2aseg datasets to nnU-Net, and by the tests to check that every loader reads the
same synthetic cohort. nnU-Net needs all channels of a case on one grid, so a CT on another grid than
its PET is resampled onto the PET grid (linear, −1024 HU outside) and the label with nearest neighbour.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from h2aseg.atomic import atomic_open, atomic_write_text
from h2aseg.constants import CT_FLOOR_HU
from h2aseg.data.io import read_ct, read_image, read_pet, write_image
from h2aseg.data.layouts import Case

__all__ = ["export_nnunet", "write_manifest"]


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and all(abs(x - y) < 1e-4 for x, y in zip(a.GetOrigin(), b.GetOrigin()))
        and all(abs(x - y) < 1e-4 for x, y in zip(a.GetSpacing(), b.GetSpacing()))
        and all(abs(x - y) < 1e-6 for x, y in zip(a.GetDirection(), b.GetDirection()))
    )


def export_nnunet(cases: Sequence[Case], out: Path, labels: dict[str, int] | None = None) -> Path:
    """Write ``cases`` as an nnU-Net raw dataset under ``out`` (e.g. ``Dataset501_AutoPETSynth``).

    Channel 0 = CT (HU), channel 1 = PET (SUV), on the PET grid; ``dataset.json`` records the
    channels, labels, ``numTraining``, ``file_ending`` and (h2aseg extension) ``patient_ids``.
    """
    out = Path(out)
    for case in cases:
        pet = read_pet(case.pet)
        ct = read_ct(case.ct)
        if not _same_grid(ct, pet):
            ct = sitk.Resample(ct, pet, sitk.Transform(), sitk.sitkLinear, CT_FLOOR_HU, sitk.sitkFloat32)
        write_image(ct, out / "imagesTr" / f"{case.case_id}_0000.nii.gz")
        write_image(pet, out / "imagesTr" / f"{case.case_id}_0001.nii.gz")
        if case.label is not None:
            label = read_image(case.label)
            if not _same_grid(label, pet):
                label = sitk.Resample(label, pet, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
            write_image(label, out / "labelsTr" / f"{case.case_id}.nii.gz")
    meta = {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": labels or {"background": 0, "lesion": 1},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
        "patient_ids": {c.case_id: c.patient_id for c in cases},
    }
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=2) + "\n")
    return out


def write_manifest(cases: Sequence[Case], path: Path) -> Path:
    """Write ``cases`` as a manifest (``.csv`` or ``.json``; paths relative to its folder when possible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def rel(p: Path | None) -> str:
        if p is None:
            return ""
        try:
            return str(Path(os.path.relpath(p, path.parent)))
        except ValueError:
            return str(p)

    rows = [
        {
            "case_id": c.case_id,
            "patient_id": c.patient_id,
            "ct": rel(c.ct),
            "pet": rel(c.pet),
            "label": rel(c.label),
        }
        for c in cases
    ]
    if path.suffix.lower() == ".json":
        atomic_write_text(path, json.dumps({"cases": rows}, indent=2) + "\n")
    else:
        with atomic_open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["case_id", "patient_id", "ct", "pet", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return path
