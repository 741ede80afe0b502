"""h2aseg.data.transforms: paper's training crops and axial rotation; whole-volume evaluation."""

from __future__ import annotations

import numpy as np
import torch

from h2aseg.data.transforms import eval_transforms, train_transforms


def _item(shape=(20, 18, 14), lesion=(10, 9, 7)):
    rng = np.random.default_rng(0)
    label = np.zeros((1, *shape), np.uint8)
    x, y, z = lesion
    label[0, x - 2 : x + 2, y - 2 : y + 2, z - 1 : z + 2] = 1
    pet = rng.uniform(0.05, 0.2, size=(1, *shape)).astype(np.float32) + label
    ct = rng.uniform(0.4, 0.6, size=(1, *shape)).astype(np.float32)
    return {"ct": ct, "pet": pet, "label": label, "case_id": "c1", "meta": {"spacing": [4.0, 4.0, 4.0]}}


def test_train_pipeline_gives_two_patches_one_on_a_lesion():
    pipeline = train_transforms((12, 12, 8), rotate_prob=0.0)
    pipeline.set_random_state(seed=0)
    samples = pipeline(_item())
    assert len(samples) == 2
    for s in samples:
        for key in ("ct", "pet", "label"):
            assert isinstance(s[key], torch.Tensor) and s[key].dtype == torch.float32
            assert tuple(s[key].shape) == (1, 12, 12, 8)
        assert set(torch.unique(s["label"]).tolist()) <= {0.0, 1.0}
        assert s["case_id"] == "c1" and "meta" not in s
    assert max(float(s["label"].sum()) for s in samples) > 0


def test_volume_smaller_than_the_patch_is_padded_with_air_and_no_uptake():
    samples = train_transforms((32, 32, 32), rotate_prob=0.0)(_item(shape=(20, 18, 14)))
    assert all(tuple(s["ct"].shape) == (1, 32, 32, 32) for s in samples)
    assert float(samples[0]["ct"].min()) == 0.0 and float(samples[0]["pet"].min()) == 0.0


def test_rotation_is_about_the_axial_axis():
    item = _item(shape=(16, 16, 8))
    item["ct"][:] = 0.0
    item["ct"][0, :, :, 3] = 1.0  # one axial plane: an axial rotation keeps it in its plane
    pipeline = train_transforms((16, 16, 8), rotate_prob=1.0, rotate_degrees=45.0)
    pipeline.set_random_state(seed=1)
    for s in pipeline(item):
        ct = s["ct"][0]
        assert float(ct[:, :, [0, 1, 2, 4, 5, 6, 7]].abs().max()) < 1e-5
        assert float(ct[:, :, 3].sum()) > 100


def test_eval_pipeline_keeps_the_whole_volume_and_meta():
    item = _item()
    out = eval_transforms()(item)
    assert tuple(out["ct"].shape) == item["ct"].shape and out["label"].dtype == torch.float32
    np.testing.assert_array_equal(out["pet"].numpy(), item["pet"])
    assert out["meta"] == item["meta"]


def test_hot_negative_sampling_centres_some_crops_on_uptake_outside_lesions():
    import numpy as np

    volume = (1, 48, 48, 48)
    pet = np.zeros(volume, np.float32) + 0.05
    label = np.zeros(volume, np.uint8)
    label[0, 4:8, 4:8, 4:8] = 1  # lesion in one corner
    pet[0, 4:8, 4:8, 4:8] = 0.8
    pet[0, 38:42, 38:42, 38:42] = 0.8  # an organ as hot as the lesion in the opposite corner
    data = {"ct": np.zeros(volume, np.float32), "pet": pet, "label": label, "meta": {}, "case_id": "c"}
    paper = train_transforms((8, 8, 8), samples_per_volume=2, rotate_prob=0.0)
    hot = train_transforms((8, 8, 8), samples_per_volume=2, rotate_prob=0.0, hot_negative_threshold=0.5)
    paper.set_random_state(0)
    hot.set_random_state(0)

    def organ_hits(pipeline):
        patches = [p for _ in range(30) for p in pipeline(dict(data))]
        return sum(int((p["pet"] >= 0.5).any() and p["label"].sum() == 0) for p in patches), patches

    hits_paper, _ = organ_hits(paper)
    hits_hot, patches = organ_hits(hot)
    assert hits_hot >= 10 > hits_paper  # 1 in 4 crops aims at the organ; random negatives rarely do
    assert sum(int(p["label"].sum() > 0) for p in patches) >= 20  # lesion crops keep about half
    assert all("sampling" not in p for p in patches)


def test_training_pipeline_skips_meta_tracking_without_changing_the_patches():
    from monai.data import get_track_meta
    from monai.transforms import Compose

    def tracking_seen(seen: list):  # a last step that records, per patch, whether MONAI tracks metadata
        return lambda samples: seen.append(get_track_meta()) or samples

    seen_tracked, seen_plain = [], []
    plain_pipeline = train_transforms((12, 12, 8), rotate_prob=1.0)
    tracked_steps = train_transforms((12, 12, 8), rotate_prob=1.0).transforms  # own random states
    tracked = Compose([*tracked_steps, tracking_seen(seen_tracked)])  # same steps, MetaTensors on
    plain = type(plain_pipeline)([*plain_pipeline.transforms, tracking_seen(seen_plain)])
    tracked.set_random_state(seed=3)
    plain.set_random_state(seed=3)
    assert get_track_meta()
    expected, got = tracked(_item()), plain(_item())
    assert seen_tracked and set(seen_tracked) == {True} and seen_plain and set(seen_plain) == {False}
    assert get_track_meta(), "the global MONAI setting must be restored"
    for want, have in zip(expected, got):
        for key in ("ct", "pet", "label"):
            assert type(have[key]) is torch.Tensor
            torch.testing.assert_close(have[key], want[key])


def _single_voxel_lesion(shape=(40, 40, 40), at=(20, 20, 20)):
    label = np.zeros((1, *shape), np.float32)
    label[(0, *at)] = 1
    return {"ct": np.zeros_like(label), "pet": np.ones_like(label), "label": label}


def _lesion_positions(lesion_offset: float, draws: int = 150) -> np.ndarray:
    pipeline = train_transforms(
        (16, 16, 16), samples_per_volume=1, rotate_prob=0.0, lesion_offset=lesion_offset
    )
    pipeline.set_random_state(seed=1)
    positions = []
    for _ in range(draws):
        sample = pipeline(_single_voxel_lesion())[0]
        found = torch.nonzero(sample["label"][0])
        if len(found):
            positions.append(found[0].tolist())
    return np.array(positions)


def test_centred_crops_put_the_lesion_at_the_patch_centre_and_offset_crops_anywhere():
    centred = _lesion_positions(0.0)
    # positive crops put it exactly at the centre; negative crops that happen to hold it put it elsewhere
    assert (centred == 8).all(axis=1).mean() > 0.6
    moved = _lesion_positions(1.0)
    assert (moved == 8).all(axis=1).mean() < 0.05
    # m = 16 // 2 - 1 = 7: every position 1..15 is reached on every axis, and the lesion stays in the patch
    for axis in range(3):
        assert set(range(1, 16)) <= set(moved[:, axis].tolist())
    assert (
        len(moved) > 0.4 * 150
    )  # about half the crops are positive and every positive crop holds the lesion


def test_lesion_offset_outside_0_1_is_refused():
    import pytest

    with pytest.raises(ValueError, match="lesion_offset"):
        train_transforms((16, 16, 16), lesion_offset=1.5)
