"""A trained H2ASeg finds a lesion wherever it sits in the patch
(issue 10: no "lesion = patch centre" shortcut).

A tiny H2ASeg (MCSA and TAMW on) is trained through the real training crops (lesion off the patch centre)
on toy volumes: hot blobs that are lesions where CT is dense and decoys where CT is fat-like. Then each
test lesion is predicted in a patch centred on it and in patches shifted by ±5 voxels. The benchmark that
shows the shortcut itself on synthetic PET/CT (centred crops: shifted lesions missed) is
``benchmarks/small_lesions.py probe``; this toy is too easy to show it, so it guards the invariance only.
"""

from __future__ import annotations

import numpy as np
import torch

from h2aseg.data.transforms import train_transforms
from h2aseg.models.h2aseg import H2ASeg
from h2aseg.training.losses import DeepSupervisionLoss

PATCH = (32, 16, 16)


def _toy_volume(rng, n_blobs: int, shape=(40, 40, 40)) -> dict:
    ct = rng.normal(0.5, 0.05, (1, *shape)).astype(np.float32)
    pet = rng.normal(0.1, 0.02, (1, *shape)).astype(np.float32)
    label = np.zeros((1, *shape), np.float32)
    grid = np.indices(shape)
    for i in range(n_blobs):
        centre, radius = rng.integers(5, shape[0] - 5, 3), rng.uniform(1.5, 2.5)
        blob = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius**2
        pet[0][blob] += 1.0
        if i % 2 == 0:  # lesion: hot, dense on CT
            label[0][blob], ct[0][blob] = 1.0, ct[0][blob] + 0.3
        else:  # decoy: hot, fat-like on CT
            ct[0][blob] -= 0.3
    return {"ct": ct, "pet": pet, "label": label}


def _patch_dice(net, volume: dict, start) -> float:
    sl = (0, *(slice(a, a + p) for a, p in zip(start, PATCH)))
    with torch.no_grad():
        logits = net(
            torch.from_numpy(volume["ct"][sl])[None, None], torch.from_numpy(volume["pet"][sl])[None, None]
        )
    pred, truth = logits[0, 0].numpy() > 0, volume["label"][sl] > 0
    return float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))


def test_trained_h2aseg_finds_a_lesion_wherever_it_sits_in_the_patch():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    volumes = [_toy_volume(rng, 4) for _ in range(6)]
    crops = train_transforms(PATCH, samples_per_volume=2, rotate_prob=0.0, lesion_offset=1.0)
    crops.set_random_state(0)
    net = H2ASeg(channels=(2, 4, 4, 8, 8), window_size=(2, 2, 2), patch_size=PATCH, dropout=0.0)
    optimizer, loss_fn = torch.optim.Adam(net.parameters(), 3e-3), DeepSupervisionLoss(1)
    for step in range(90):
        samples = crops(volumes[step % len(volumes)])
        ct, pet, label = (torch.stack([s[k] for s in samples]) for k in ("ct", "pet", "label"))
        optimizer.zero_grad()
        loss_fn(net(ct, pet), label).backward()
        optimizer.step()
    net.eval()
    scores = {shift: [] for shift in ((0, 0, 0), (5, -5, 4), (-5, 5, -4))}
    for _ in range(4):
        volume = _toy_volume(rng, 1)
        centre = np.round(np.argwhere(volume["label"][0] > 0).mean(0)).astype(int)
        for shift in scores:
            start = np.clip(centre - np.array(PATCH) // 2 - np.array(shift), 0, 40 - np.array(PATCH))
            scores[shift].append(_patch_dice(net, volume, start))
    centred = np.mean(scores[(0, 0, 0)])
    assert centred > 0.7, scores
    for shift, values in scores.items():
        assert np.mean(values) > centred - 0.15, (shift, scores)


def test_lesion_keeping_crop_keeps_a_large_lesion_whole_and_moves_a_small_one_freely():
    import numpy as np

    from h2aseg.data.transforms import LesionKeepingCropd

    patch, margin = (16, 16, 16), 6
    size = tuple(p + 2 * margin for p in patch)
    centre = tuple(n // 2 for n in size)

    def sample(radius: int, seed: int):
        label = np.zeros((1, *size), np.float32)
        grid = np.indices(size)
        # a cube of lesion around a point 3 voxels off the crop centre, so the centre voxel is an edge voxel
        lo = [c - 3 for c in centre]
        box = tuple(slice(max(a - radius + 3, 0), a + radius + 4) for a in lo)
        label[(0, *box)] = 1
        crop = LesionKeepingCropd(("ct", "label"), patch)
        crop.set_random_state(seed)
        out = crop({"ct": grid[:1].astype(np.float32), "label": label})
        return label.sum(), out["label"].sum(), int(out["ct"][0, 0, 0, 0])

    for seed in range(20):  # 10-voxel cube: every placement keeps all of it inside the 16-voxel patch
        total, kept, _ = sample(radius=5, seed=seed)
        assert kept == total
    starts = {sample(radius=0, seed=seed)[2] for seed in range(40)}  # a 4-voxel lesion moves over the range
    assert min(starts) <= 1 and max(starts) >= 2 * margin - 1
