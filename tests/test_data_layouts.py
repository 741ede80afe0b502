"""h2aseg.data.layouts: every layout finds the same synthetic cases; splits never share a patient."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2aseg.data.export import export_nnunet, write_manifest
from h2aseg.data.io import read_image, to_array
from h2aseg.data.layouts import (
    Case,
    detect_layout,
    discover_cases,
    load_or_create_splits,
    load_splits,
    make_splits,
    save_splits,
)
from h2aseg.errors import DataError

TINY_AUTOPET = {"pet_shape": (16, 16, 24), "multi_study_fraction": 0.5}
TINY_HECKTOR = {"pet_shape": (14, 14, 13), "ct_shape": (24, 24, 18)}


@pytest.fixture()
def autopet(make_cohort):
    return make_cohort("autopet", 5, seed=3, **TINY_AUTOPET)


@pytest.fixture()
def hecktor(make_cohort):
    return make_cohort("hecktor", 3, seed=3, **TINY_HECKTOR)


def test_autopet_tree_is_found_with_patients_and_studies(autopet):
    root, ids = autopet
    assert detect_layout(root) == "autopet"
    found = discover_cases(root)
    assert [c.case_id for c in found.cases] == ids and not found.problems
    for case in found.cases:
        assert case.case_id.startswith(case.patient_id + "_study")
        assert (
            case.ct.name == "CTres.nii.gz"
            and case.pet.name == "SUV.nii.gz"
            and case.label.name == "SEG.nii.gz"
        )
    assert len({c.patient_id for c in found.cases}) < len(found.cases)  # a patient with two studies


def test_hecktor_folders_are_found(hecktor):
    root, ids = hecktor
    found = discover_cases(root)
    assert detect_layout(root) == "hecktor"
    assert [c.case_id for c in found.cases] == ids
    assert all(c.patient_id == c.case_id for c in found.cases)
    assert all(c.ct.name.endswith("__CT.nii.gz") and c.pet.name.endswith("__PT.nii.gz") for c in found.cases)


@pytest.mark.parametrize("which", ["autopet", "hecktor"])
def test_nnunet_and_manifest_exports_read_back_identically(which, autopet, hecktor, tmp_path):
    root, _ = autopet if which == "autopet" else hecktor
    cases = discover_cases(root).cases
    nn = export_nnunet(cases, tmp_path / "Dataset501_Synth")
    assert detect_layout(nn) == "nnunet"
    from_nn = discover_cases(nn).cases
    assert [(c.case_id, c.patient_id) for c in from_nn] == [(c.case_id, c.patient_id) for c in cases]
    for a, b in zip(cases, from_nn):
        pet_a, pet_b = read_image(a.pet), read_image(b.pet)
        np.testing.assert_allclose(pet_b.GetOrigin(), pet_a.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(pet_b.GetSpacing(), pet_a.GetSpacing(), atol=1e-6)
        assert read_image(b.ct).GetSize() == pet_a.GetSize()
        np.testing.assert_array_equal(to_array(pet_b), to_array(pet_a))
    for name in ("manifest.csv", "list.json"):
        path = write_manifest(cases, tmp_path / "m" / name)
        back = discover_cases(path if name != "manifest.csv" else path.parent).cases

        def key(c):
            return (c.case_id, c.patient_id, c.ct.resolve(), c.pet.resolve(), c.label.resolve())

        assert [key(c) for c in back] == [key(c) for c in cases]


def test_missing_modality_is_reported_and_other_cases_go_on(autopet, tmp_path):
    root, ids = autopet
    cases = discover_cases(root).cases
    rows = [f"{c.case_id},{c.patient_id},{c.ct},{c.pet},{c.label}" for c in cases]
    rows[1] = (
        f"{cases[1].case_id},{cases[1].patient_id},{cases[1].ct},{tmp_path / 'gone.nii.gz'},{cases[1].label}"
    )
    rows[2] = f"{cases[2].case_id},{cases[2].patient_id},{cases[2].ct},,{cases[2].label}"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,patient_id,ct,pet,label\n" + "\n".join(rows) + "\n")
    found = discover_cases(manifest)
    assert len(found.cases) == len(cases) - 2
    messages = [p.message for p in found.problems]
    assert any(cases[1].case_id in m and "gone.nii.gz" in m for m in messages)
    assert any(cases[2].case_id in m and "pet" in m for m in messages)
    assert all("\n" not in m for m in messages)


def test_unlabelled_cases_are_accepted_on_request(hecktor, tmp_path):
    root, _ = hecktor
    (tmp_path / "imagesTr").mkdir()
    for f in (root / "imagesTr").iterdir():
        (tmp_path / "imagesTr" / f.name).symlink_to(f)
    assert len(discover_cases(tmp_path).problems) == 3
    found = discover_cases(tmp_path, require_labels=False)
    assert len(found.cases) == 3 and all(c.label is None for c in found.cases)


def _cases(patients: list[int]) -> list[Case]:
    out, seen = [], {}
    for p in patients:
        seen[p] = seen.get(p, 0) + 1
        out.append(Case(f"PETCT_{p:04x}_study{seen[p]}", f"PETCT_{p:04x}", None, None, None))
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=60), st.integers(0, 5))
def test_no_patient_in_two_splits(patients, seed):
    cases = _cases(patients)
    splits = make_splits(cases, seed=seed)
    owner = {}
    for name, ids in splits.items():
        for case_id in ids:
            patient = case_id.rsplit("_study", 1)[0]
            assert owner.setdefault(patient, name) == name
    assert sorted(sum(splits.values(), [])) == sorted(c.case_id for c in cases)


def test_splits_follow_6_2_2_are_seeded_and_reload(tmp_path):
    cases = _cases(list(range(40)) + [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    splits = make_splits(cases, seed=7)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [30, 10, 10]
    assert make_splits(cases, seed=7) == splits and make_splits(cases, seed=8) != splits
    path = tmp_path / "splits.json"
    save_splits(splits, path)
    assert load_splits(path) == splits
    assert load_or_create_splits(cases, path, seed=99) == splits  # the file wins over a new seed
    created = load_or_create_splits(cases, tmp_path / "new" / "splits.json", seed=7)
    assert created == splits and json.loads((tmp_path / "new" / "splits.json").read_text())["train"]
    with pytest.raises(DataError, match="not in the dataset"):
        load_or_create_splits(cases[:10], path)
    with pytest.raises(ValueError):
        make_splits(cases, ratios=(0.5, 0.5, 0.5))
