"""h2aseg.data.preprocess: one grid, scaling, cache reuse, back to the source grid, bad input."""

from __future__ import annotations

import gzip
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from h2aseg.cli import main as h2aseg_main
from h2aseg.data.io import from_array, read_image, read_pet, to_array, write_image
from h2aseg.data.layouts import Case, discover_cases
from h2aseg.data.preprocess import (
    PreprocessConfig,
    PreprocessedCache,
    check_cases,
    preprocess_case,
    restore_to_original,
)
from h2aseg.errors import DataError


@pytest.fixture()
def autopet(make_cohort):
    root, _ = make_cohort("autopet", 3, seed=5, pet_shape=(16, 16, 24), lesion_free_fraction=0.0)
    return discover_cases(root).cases


@pytest.fixture()
def hecktor(make_cohort):
    root, _ = make_cohort(
        "hecktor",
        2,
        seed=5,
        pet_shape=(20, 20, 18),
        pet_spacing=(8.0, 8.0, 8.0),
        ct_shape=(32, 32, 24),
        ct_spacing=(4.0, 4.0, 5.0),
    )
    return discover_cases(root).cases


def test_autopet_case_on_pet_grid_with_documented_scaling(autopet):
    case = autopet[0]
    item = preprocess_case(case, PreprocessConfig())
    ct, pet, label, meta = item["ct"], item["pet"], item["label"], item["meta"]
    assert ct.shape == pet.shape == label.shape and ct.shape[0] == 1
    assert ct.dtype == pet.dtype == np.float32 and label.dtype == np.uint8
    assert 0.0 <= ct.min() and ct.max() <= 1.0 and set(np.unique(label)) <= {0, 1}
    assert meta["spacing"] == [4.0, 4.0, 4.0]
    suv = to_array(read_pet(case.pet))
    restored = to_array(restore_to_original(pet[0] * meta["suv_scale"], meta, is_label=False))
    inside = restored > 0
    np.testing.assert_allclose(restored[inside], np.clip(suv, 0, 50)[inside], rtol=1e-5, atol=1e-5)
    back = restore_to_original(label[0], meta)
    np.testing.assert_array_equal(to_array(back), to_array(read_image(case.label)))
    assert back.GetSize() == read_pet(case.pet).GetSize()
    json_ok = __import__("json").dumps(meta)
    assert json_ok


def test_hecktor_grids_merge_and_label_modes(hecktor):
    case = hecktor[0]
    multi = preprocess_case(case, PreprocessConfig(label_mode="multiclass"))
    binary = preprocess_case(case, PreprocessConfig())
    assert set(np.unique(multi["label"])) <= {0, 1, 2} and multi["label"].max() > 0
    np.testing.assert_array_equal(binary["label"], (multi["label"] > 0).astype(np.uint8))
    ct_grid = restore_to_original(multi["label"][0], multi["meta"], grid="ct")
    source = to_array(read_image(case.label))
    restored = to_array(ct_grid)
    for k in (1, 2):
        if (source == k).sum() > 30:
            overlap = (
                2 * ((restored == k) & (source == k)).sum() / ((restored == k).sum() + (source == k).sum())
            )
            assert overlap > 0.6
    fine = preprocess_case(case, PreprocessConfig(target_spacing=(3.0, 3.0, 3.0)))
    assert fine["meta"]["spacing"] == [3.0, 3.0, 3.0] and fine["ct"].shape == fine["pet"].shape
    assert fine["ct"].shape[1] > multi["ct"].shape[1]


def test_pet_orientation_does_not_change_the_arrays(autopet, tmp_path):
    case = autopet[1]
    pet = read_pet(case.pet)
    flipped = sitk.Flip(pet, [True, True, False])
    flipped.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    flipped.SetOrigin(pet.TransformIndexToPhysicalPoint([s - 1 for s in pet.GetSize()[:2]] + [0]))
    write_image(flipped, tmp_path / "pet.nii.gz")
    a = preprocess_case(case, PreprocessConfig())
    b = preprocess_case(
        Case(case.case_id, case.patient_id, case.ct, tmp_path / "pet.nii.gz", case.label), PreprocessConfig()
    )
    np.testing.assert_allclose(a["pet"], b["pet"], atol=1e-6)
    np.testing.assert_array_equal(a["label"], b["label"])


def test_cache_skips_current_cases_and_redoes_changed_ones(autopet, tmp_path):
    cases = [
        Case(c.case_id, c.patient_id, tmp_path / f"{i}_ct.nii.gz", tmp_path / f"{i}_pet.nii.gz", c.label)
        for i, c in enumerate(autopet)
    ]
    for src, dst in zip(autopet, cases):
        shutil.copy(src.ct, dst.ct)
        shutil.copy(src.pet, dst.pet)
    cache = PreprocessedCache(tmp_path / "cache", PreprocessConfig())
    assert cache.build(cases, progress=False) == []
    assert cache.case_ids() == sorted(c.case_id for c in cases)
    loaded = cache.load(cases[0].case_id)
    fresh = preprocess_case(cases[0], PreprocessConfig())
    for key in ("ct", "pet", "label"):
        np.testing.assert_array_equal(loaded[key], fresh[key])
    assert loaded["meta"] == fresh["meta"]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")}
    os.utime(cases[1].pet, ns=(1, 1))  # the source of case 1 changed
    cache.build(cases, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")}
    changed = [n for n in stamps if stamps[n] != after[n]]
    assert changed == [f"{cases[1].case_id}.npz"]
    other = PreprocessedCache(tmp_path / "cache", PreprocessConfig(suv_scale=5.0))
    assert other.case_ids() == []
    with pytest.raises(DataError, match="preprocess"):
        other.load(cases[0].case_id)


def _bad_cases(case: Case, tmp_path) -> dict[str, Case]:
    pet = read_pet(case.pet)
    ct = read_image(case.ct)
    arr = to_array(pet)
    out = {}

    def variant(name, ct_path=case.ct, pet_path=case.pet, label=case.label):
        out[name] = Case(f"{case.patient_id}_{name}", case.patient_id, ct_path, pet_path, label)

    nan = arr.copy()
    nan[3, 3, 3] = np.nan
    write_image(from_array(nan, pet), tmp_path / "nan.nii.gz")
    variant("nan", pet_path=tmp_path / "nan.nii.gz")
    far = sitk.Image(ct)
    far.SetOrigin([o + 5000.0 for o in ct.GetOrigin()])
    write_image(far, tmp_path / "far_ct.nii.gz")
    variant("nooverlap", ct_path=tmp_path / "far_ct.nii.gz")
    four = sitk.JoinSeries([pet, pet])
    write_image(four, tmp_path / "pet4d.nii.gz")
    variant("fourd", pet_path=tmp_path / "pet4d.nii.gz")
    label = to_array(read_image(case.label)).astype(np.uint8)
    label[0, 0, 0] = 7
    write_image(from_array(label, pet), tmp_path / "label7.nii.gz")
    variant("labelvalues", label=tmp_path / "label7.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b garbage")
    variant("unreadable", ct_path=tmp_path / "junk.nii.gz")
    variant("missing", pet_path=tmp_path / "nowhere.nii.gz")
    return out


def test_bad_inputs_give_one_line_errors_naming_case_and_file(autopet, tmp_path):
    bad = _bad_cases(autopet[0], tmp_path)
    expect = {
        "nan": "NaN",
        "nooverlap": "do not overlap",
        "fourd": "4-D",
        "labelvalues": "unexpected label values",
        "unreadable": "unreadable",
        "missing": "not found",
    }
    for name, case in bad.items():
        with pytest.raises(DataError) as err:
            preprocess_case(case, PreprocessConfig())
        message = str(err.value)
        assert case.case_id in message and expect[name] in message and "\n" not in message, message
        files = [p.name for p in (case.ct, case.pet, case.label) if p is not None]
        assert any(f in message for f in files), message
    problems = check_cases(list(bad.values()) + autopet, PreprocessConfig())
    assert sorted(p.case_id for p in problems) == sorted(c.case_id for c in bad.values())
    cache = PreprocessedCache(tmp_path / "cache", PreprocessConfig())
    assert len(cache.build(list(bad.values()) + autopet[:1], progress=False)) == len(bad)
    assert cache.case_ids() == [autopet[0].case_id]


def test_check_verb_reports_every_bad_case(autopet, tmp_path, capsys):
    bad = _bad_cases(autopet[0], tmp_path)
    rows = [f"{c.case_id},{c.patient_id},{c.ct},{c.pet},{c.label}" for c in list(bad.values()) + autopet]
    (tmp_path / "manifest.csv").write_text("case_id,patient_id,ct,pet,label\n" + "\n".join(rows) + "\n")
    assert h2aseg_main(["check", "--data", str(tmp_path / "manifest.csv"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert all(c.case_id in out for c in bad.values())
    assert f"{len(autopet)} good case(s), {len(bad)} bad case(s)" in out
    assert (
        h2aseg_main(
            [
                "preprocess",
                "--data",
                str(tmp_path / "manifest.csv"),
                "--cache",
                str(tmp_path / "c"),
                "--quiet",
            ]
        )
        == 1
    )
    assert len(list((tmp_path / "c").glob("*.npz"))) == len(autopet)


def test_images_on_the_pet_grid_are_cropped_not_resampled_with_the_same_result(autopet, monkeypatch):
    """CT and label on the PET grid take the crop path (issue 13); it must give what resampling gives."""
    from h2aseg.data import preprocess

    calls = []
    real_resample = preprocess._resample
    monkeypatch.setattr(preprocess, "_resample", lambda *a: calls.append(1) or real_resample(*a))
    case = max(autopet, key=lambda c: to_array(read_image(c.label)).sum())
    fast = preprocess_case(case, PreprocessConfig())
    assert calls == []  # the synthetic AutoPET CT lies on the PET grid
    monkeypatch.setattr(preprocess, "_same_grid", lambda *a, **k: False)
    slow = preprocess_case(case, PreprocessConfig())
    assert calls  # now resampled
    assert fast["meta"]["grid"] == slow["meta"]["grid"]
    np.testing.assert_allclose(fast["ct"], slow["ct"], atol=1e-5)
    np.testing.assert_allclose(fast["pet"], slow["pet"], atol=1e-5)
    np.testing.assert_array_equal(fast["label"], slow["label"])
    assert fast["label"].sum() > 0


def test_body_box_matches_the_box_of_every_body_voxel():
    from h2aseg.data.preprocess import _body_box

    rng = np.random.default_rng(0)
    ct = np.full((30, 20, 25), -1000.0, np.float32)
    ct[rng.integers(3, 27, 40), rng.integers(2, 18, 40), rng.integers(5, 20, 40)] = 40.0
    voxels = np.argwhere(ct > -500)
    expected = [
        [max(int(a) - 2, 0), min(int(b) + 3, s)] for a, b, s in zip(voxels.min(0), voxels.max(0), ct.shape)
    ]
    assert _body_box(ct, -500.0, 2) == expected
    assert _body_box(np.full((4, 5, 6), -1000.0), -500.0, 2) == [[0, 4], [0, 5], [0, 6]]


def test_nifti_check_streams_and_finds_nan_or_truncation_past_the_first_chunk(tmp_path, write_volume):
    from h2aseg.data.io import _check_nifti_complete

    volume = np.zeros((16, 16, 16), np.float32)
    good = write_volume(volume, tmp_path / "good.nii.gz")
    _check_nifti_complete(good, True, chunk_bytes=1024)
    volume[15, 15, 15] = np.nan  # the last voxel: found only by reading every chunk
    bad = write_volume(volume, tmp_path / "nan.nii")
    with pytest.raises(DataError, match="NaN"):
        _check_nifti_complete(bad, True, chunk_bytes=1024)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(gzip.decompress(good.read_bytes())[:-100])
    with pytest.raises(DataError, match="truncated"):
        _check_nifti_complete(cut, True, chunk_bytes=1024)


def test_nifti_check_sizes_an_uncompressed_integer_file_and_names_a_refused_header(
    tmp_path, write_volume, monkeypatch
):
    import nibabel
    from nibabel.filebasedimages import ImageFileError

    from h2aseg.data.io import _check_nifti_complete

    good = write_volume(np.zeros((8, 8, 8), np.int16), tmp_path / "good.nii")
    _check_nifti_complete(good, False)
    cut = tmp_path / "cut.nii"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        _check_nifti_complete(cut, False)

    def refuse(*args, **kwargs):
        raise ImageFileError("not a NIfTI header")

    monkeypatch.setattr(nibabel, "load", refuse)
    with pytest.raises(DataError, match="cut.nii.*unreadable NIfTI header"):
        read_image(cut)
