"""h2aseg.data.synthetic / phantom: real layouts, plausible HU and SUV, decoys, reproducible bytes."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from h2aseg.cli import main as h2aseg_main
from h2aseg.data.anatomy import build_head_neck, build_whole_body
from h2aseg.data.io import read_image, to_array
from h2aseg.data.layouts import discover_cases
from h2aseg.data.phantom import Canvas, patient_params
from h2aseg.data.synthetic import generate_cohort

SMALL_AP = {"pet_shape": (32, 32, 48), "pet_spacing": (8.0, 8.0, 8.0), "ct_spacing": (4.0, 4.0, 4.0)}


def _whole_body(seed: int, lesion_free: bool = False) -> Canvas:
    # full-size field (256 x 256 x 384 mm) at 4 mm: real lesion and organ sizes
    cv = Canvas((64, 64, 96), (4.0, 4.0, 4.0))
    rng = np.random.default_rng(seed)
    build_whole_body(cv, patient_params(rng), rng, lesion_free)
    return cv


def test_whole_body_ct_and_suv_are_physically_plausible():
    cv = _whole_body(0)
    ct, suv = cv.ct, cv.suv
    assert (ct == -1000).mean() > 0.2  # air around the body
    assert np.isclose(ct, -850).sum() > 1000  # lungs
    assert np.isclose(ct, -100).sum() > 1000  # fat
    assert ((ct >= 30) & (ct <= 65)).sum() > 10000  # soft tissue, muscle, liver
    assert (ct >= 300).sum() > 500  # bone
    assert suv[np.isclose(ct, 35.0)].max() > 5  # brain
    assert suv.max() >= 8  # bladder / kidneys
    hu = ct[cv.label > 0]
    assert len(hu) and hu.min() >= 10 and hu.max() <= 80  # lesions: soft tissue, never fat or air


def test_decoys_are_hot_but_benign_on_ct():
    found = {"brown_fat": False, "hot_air_wall": False}
    for seed in range(6):
        cv = _whole_body(seed, lesion_free=True)
        assert not cv.label.any()
        hot = cv.suv >= 3.0
        found["brown_fat"] |= bool((hot & (cv.ct >= -95) & (cv.ct <= -55)).sum() > 20)
        near_air = np.zeros_like(hot)
        near_air[1:-1] = (cv.ct[:-2] == -1000) | (cv.ct[2:] == -1000)
        found["hot_air_wall"] |= bool((hot & near_air & (np.abs(cv.axes[2])[None, None, :] < 120)).sum() > 5)
    assert all(found.values()), found


def test_head_neck_has_gtvp_and_gtvn():
    classes = set()
    for seed in range(4):
        cv = Canvas((56, 56, 52), (4.0, 4.0, 4.0))
        rng = np.random.default_rng(seed)
        build_head_neck(cv, patient_params(rng), rng)
        classes |= set(np.unique(cv.label).tolist())
        assert cv.suv.max() > 5
    assert classes == {0, 1, 2}


def test_autopet_cohort_layout_pet_coarser_lesion_free_share_and_suv(tmp_path):
    ids = generate_cohort("autopet", tmp_path, 4, seed=1, **SMALL_AP)
    cases = discover_cases(tmp_path).cases
    assert [c.case_id for c in cases] == ids
    study = cases[0].pet.parent
    assert sorted(p.name for p in study.iterdir()) == [
        "CT.nii.gz",
        "CTres.nii.gz",
        "PET.nii.gz",
        "SEG.nii.gz",
        "SUV.nii.gz",
    ]
    ct, suv, ctres = (
        read_image(study / "CT.nii.gz"),
        read_image(study / "SUV.nii.gz"),
        read_image(study / "CTres.nii.gz"),
    )
    assert ct.GetSpacing() == (4.0, 4.0, 4.0) and suv.GetSpacing() == (8.0, 8.0, 8.0)
    assert ctres.GetSize() == suv.GetSize() and ctres.GetOrigin() == suv.GetOrigin()
    bq, s = to_array(read_image(study / "PET.nii.gz")), to_array(suv)
    ratio = bq[s > 1] / s[s > 1]
    assert np.allclose(ratio, ratio[0], rtol=1e-4) and 1000 < ratio[0] < 10000  # Bq/ml = SUV x dose / weight
    positives = [to_array(read_image(c.label)).any() for c in cases]
    assert 0 < sum(positives) < len(cases)  # some studies are lesion-free
    assert (s < 0).sum() == 0 and s.std() > 0


def test_hecktor_cohort_has_ct_and_pet_on_different_grids(tmp_path):
    generate_cohort(
        "hecktor",
        tmp_path,
        2,
        seed=0,
        pet_shape=(28, 28, 26),
        pet_spacing=(8.0, 8.0, 8.0),
        ct_shape=(48, 48, 36),
        ct_spacing=(4.0, 4.0, 5.0),
    )
    for case in discover_cases(tmp_path).cases:
        ct, pet, label = read_image(case.ct), read_image(case.pet), read_image(case.label)
        assert ct.GetSize() != pet.GetSize() and ct.GetOrigin() != pet.GetOrigin()
        assert label.GetSize() == ct.GetSize() and label.GetOrigin() == ct.GetOrigin()
        assert ct.GetPixelID() == sitk.sitkInt16 and set(np.unique(to_array(label))) <= {0, 1, 2}


def test_same_seed_same_bytes(tmp_path):
    for run in ("a", "b"):
        generate_cohort("hecktor", tmp_path / run, 2, seed=4, pet_shape=(14, 14, 13), ct_shape=(24, 24, 18))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    assert files and all(
        (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files
    )
    generate_cohort("hecktor", tmp_path / "c", 2, seed=5, pet_shape=(14, 14, 13), ct_shape=(24, 24, 18))
    assert (tmp_path / "a" / files[0]).read_bytes() != (tmp_path / "c" / files[0]).read_bytes()


def test_synth_verb_writes_and_summarises(tmp_path, capsys):
    assert (
        h2aseg_main(
            [
                "synth",
                "--kind",
                "autopet",
                "--cases",
                "2",
                "--out",
                str(tmp_path),
                "--seed",
                "0",
                "--pet-shape",
                "16,16,24",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote 2 autopet studies" in out and "lesion-positive studies" in out
    with pytest.raises(SystemExit):
        h2aseg_main(["synth", "--kind", "nope", "--out", str(tmp_path)])


def test_lesion_size_presets_draw_volumes_in_their_ranges():
    from h2aseg.data.phantom import LESION_SIZE_PRESETS

    rng = np.random.default_rng(0)
    for name in ("realistic", "small"):
        sizes = LESION_SIZE_PRESETS[name]
        volumes = np.array([4.0 / 3.0 * np.pi * sizes.radius_mm(rng) ** 3 / 1000.0 for _ in range(2000)])
        assert volumes.min() >= sizes.min_ml - 1e-9 and volumes.max() <= sizes.max_ml + 1e-9
        assert abs(np.median(volumes) / sizes.median_ml - 1.0) < 0.15
    realistic = np.array(
        [
            4.0 / 3.0 * np.pi * LESION_SIZE_PRESETS["realistic"].radius_mm(rng) ** 3 / 1000.0
            for _ in range(2000)
        ]
    )
    assert 0.75 < np.mean((realistic >= 0.5) & (realistic <= 10.0)) < 0.92  # mostly 0.5-10 ml, with a tail
    legacy = np.array([LESION_SIZE_PRESETS["legacy"].radius_mm(rng) for _ in range(2000)])
    assert 3.0 <= legacy.min() and legacy.max() <= 24.0 and np.mean(legacy >= 11.0) > 0.6


def test_synth_lesion_overrides_change_one_setting_and_legacy_refuses_volumes(tmp_path, capsys):
    from h2aseg.cli import main as cli_main
    from h2aseg.data.phantom import LESION_SIZE_PRESETS

    small = LESION_SIZE_PRESETS["small"].with_overrides(suv_range=(2.5, 15.0))
    assert small.suv_range == (2.5, 15.0) and small.median_ml == LESION_SIZE_PRESETS["small"].median_ml
    assert (
        cli_main(
            [
                "synth",
                "--cases",
                "1",
                "--out",
                str(tmp_path / "c"),
                "--lesion-sizes",
                "legacy",
                "--lesion-median-ml",
                "2",
            ]
        )
        == 2
    )
    assert "legacy preset draws radii" in capsys.readouterr().err
