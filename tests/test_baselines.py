"""Every registered network builds small, trains one step, reads its inputs and is described; the
threshold reference rows give hand-computed masks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from h2aseg.models.baselines import THRESHOLD_METHODS, suv_max_fraction, suv_threshold
from h2aseg.models.baselines.monai_nets import VNet, plan_nnunet_topology
from h2aseg.models.registry import build_model, get_entry, list_models

PATCH = (32, 32, 32)
H2ASEG_TINY = {"channels": (2, 4, 4, 8, 8), "window_size": (4, 4, 2), "patch_size": PATCH, "dropout": 0.0}

#: Tiny options per registered name (and the patch, where 32³ cannot train). A newly registered network
#: fails ``test_every_registered_network_has_a_tiny_configuration`` until it is given one here.
TINY: dict[str, tuple[dict, tuple[int, int, int]]] = {
    "h2aseg": (H2ASEG_TINY, PATCH),
    "h2aseg_no_mcsa": (H2ASEG_TINY, PATCH),
    "h2aseg_no_tamw": (H2ASEG_TINY, PATCH),
    "dual_resunet3d": (H2ASEG_TINY, PATCH),
    "h2aseg_release": ({"channels": (2, 4, 4, 8, 8), "patch_size": (32, 32, 16)}, (32, 32, 16)),
    "unet3d": ({"channels": (4, 8, 16, 32)}, PATCH),
    "vnet": ({"channels": 2}, PATCH),
    "resunet3d": ({"channels": (4, 4, 8, 8, 16)}, PATCH),
    "resunet3d_pet": ({"channels": (4, 4, 8, 8, 16)}, PATCH),
    "resunet3d_ct": ({"channels": (4, 4, 8, 8, 16)}, PATCH),
    "unetr": (
        {"patch_size": PATCH, "feature_size": 4, "hidden_size": 24, "mlp_dim": 48, "num_heads": 2},
        PATCH,
    ),
    # MONAI's SwinUNETR normalises its 1/32 map: a 32³ patch leaves one voxel there, too few to train on.
    "swinunetr": (
        {"patch_size": (64, 32, 32), "feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)},
        (64, 32, 32),
    ),
    "nnunet": ({"patch_size": PATCH, "channels": 4}, PATCH),
    "nestedformer": ({"channels": (4, 4, 8, 8, 16), "num_heads": 2}, PATCH),
    "a2fseg": ({"channels": (4, 4, 8, 8, 16)}, PATCH),
    "sdb": ({"channels": (4, 4, 8, 8, 16)}, PATCH),
    "basicunet": ({"channels": (4, 4, 8, 8, 16, 4)}, PATCH),
}

SINGLE_MODALITY = {"resunet3d_pet": "pet", "resunet3d_ct": "ct"}
NEEDS_EINOPS = {"unetr"}  # MONAI's ViT blocks import einops
REGISTERED = list_models()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _inputs(size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ct = torch.randn(1, 1, *size, generator=gen, requires_grad=True)
    pet = torch.randn(1, 1, *size, generator=gen, requires_grad=True)
    return ct, pet


def test_every_registered_network_has_a_tiny_configuration():
    assert set(TINY) == set(REGISTERED)


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_network_has_a_description(name):
    description = get_entry(name).description
    assert len(description.split()) >= 3, f"{name}: register it with a description (h2aseg info lists it)"


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_network_trains_one_step_and_predicts_full_size(name):
    if name in NEEDS_EINOPS and importlib.util.find_spec("einops") is None:
        pytest.skip("einops is not installed (MONAI's UNETR needs it)")
    torch.manual_seed(0)
    options, size = TINY[name]
    entry = get_entry(name)
    model = build_model(name, num_classes=2, **options)
    ct, pet = _inputs(size)

    model.train()
    out = model(ct, pet)
    outputs = out if isinstance(out, list) else [out]
    assert isinstance(out, list) == entry.deep_supervision
    assert outputs[0].shape == (1, 2, *size)
    for lower in outputs[1:]:
        assert lower.shape[:2] == (1, 2) and lower.dim() == 5
        assert all(s <= full for s, full in zip(lower.shape[2:], size))
    sum(o.float().square().mean() for o in outputs).backward()

    for pname, p in model.named_parameters():
        if p.requires_grad:  # anything trainable must be used, or DDP stalls
            assert p.grad is not None, f"{name}: no gradient reaches {pname}"
    used = {SINGLE_MODALITY[name]} if name in SINGLE_MODALITY else {"ct", "pet"}
    grads = {"ct": ct.grad, "pet": pet.grad}
    for modality in used:
        assert grads[modality] is not None and grads[modality].abs().sum() > 0, (
            f"{name}: {modality} path is dead"
        )
    branch_params = {
        m: [p for n, p in model.named_parameters() if f".{m}." in f".{n}"] for m in ("ct", "pet")
    }
    for modality in ("ct", "pet"):
        if branch_params[modality]:  # networks with a branch per modality
            assert any(p.grad.abs().sum() > 0 for p in branch_params[modality]), (
                f"{name}: {modality} branch idle"
            )

    model.eval()
    with torch.no_grad():
        pred = model(ct, pet)
    assert isinstance(pred, torch.Tensor) and pred.shape == (1, 2, *size)


@pytest.mark.parametrize("name, ignored", [("resunet3d_pet", "ct"), ("resunet3d_ct", "pet")])
def test_single_modality_resunet_ignores_the_other_modality(name, ignored):
    model = build_model(name, **TINY[name][0]).eval()
    ct, pet = _inputs(PATCH)
    other_ct, other_pet = _inputs(PATCH, seed=1)
    with torch.no_grad():
        base = model(ct, pet)
        changed = model(other_ct, pet) if ignored == "ct" else model(ct, other_pet)
    torch.testing.assert_close(base, changed)


def test_two_modality_early_fusion_reads_both_inputs():
    model = build_model("resunet3d", **TINY["resunet3d"][0]).eval()
    ct, pet = _inputs(PATCH)
    with torch.no_grad():
        assert not torch.allclose(model(ct, pet), model(ct, pet.flip(2)))
        assert not torch.allclose(model(ct, pet), model(ct.flip(2), pet))


def test_tiny_vnet_at_width_16_is_monai_vnet():
    from monai.networks.nets import VNet as MonaiVNet

    ours = sum(p.numel() for p in VNet(in_channels=2, channels=16).parameters())
    theirs = sum(p.numel() for p in MonaiVNet(in_channels=2).parameters())
    assert ours == theirs


def test_nnunet_plan_follows_patch_and_spacing():
    kernels, strides = plan_nnunet_topology((128, 128, 64), (1.0, 1.0, 1.0))
    assert strides == [(1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 1)]
    assert kernels == [(3, 3, 3)] * 6
    # thick slices: in-plane pooling and 3×3×1 kernels until the slice axis catches up
    kernels, strides = plan_nnunet_topology((192, 192, 48), (0.8, 0.8, 3.0))
    assert strides[1] == (2, 2, 1) and kernels[0] == (3, 3, 1) and kernels[1] == (3, 3, 3)


def test_nnunet_deep_supervision_heads_get_coarser():
    model = build_model("nnunet", **TINY["nnunet"][0]).train()
    ct, pet = _inputs(PATCH)
    sizes = [o.shape[2] for o in model(ct, pet)]
    assert sizes == [32, 16, 8]


@pytest.mark.parametrize(
    "name, options",
    [
        ("unetr", {"patch_size": (40, 32, 32)}),
        ("swinunetr", {"patch_size": (32, 32, 32)}),
        ("swinunetr", {"patch_size": (64, 64, 64), "feature_size": 20}),
        ("nnunet", {"patch_size": (36, 32, 32)}),
        ("vnet", {"channels": 3}),
        ("resunet3d", {"channels": (8,)}),
        ("nestedformer", {"channels": (4, 4, 8, 8, 15), "num_heads": 2}),
        ("sdb", {"dropout": 1.5}),
    ],
)
def test_bad_options_fail_with_a_sentence(name, options):
    with pytest.raises(ValueError, match=r"\w+ \w+"):
        build_model(name, **options)


def test_mismatched_inputs_are_refused():
    model = build_model("sdb", **TINY["sdb"][0])
    with pytest.raises(ValueError, match="one shape"):
        model(torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 1, 32, 32, 16))


# ------------------------------------------------------------------------------------ threshold rows
def _two_lesions() -> np.ndarray:
    """A bright lesion (SUVmax 10, a 4.0 rim) and a faint one (SUVmax 5), apart; background 1."""
    suv = np.ones((8, 8, 8), dtype=np.float32)
    suv[1:4, 1:4, 1:4] = 4.0  # rim of the bright lesion: ≥ 2.5 but < 0.41·10
    suv[2, 2, 2] = 10.0
    suv[2, 2, 3] = 5.0  # 5 ≥ 4.1 stays
    suv[6, 6, 5:7] = 3.0  # faint lesion: max 5, cut 2.05 < seed 2.5, kept whole
    suv[6, 6, 6] = 5.0
    suv[0, 7, 7] = 2.49  # just below the seed
    return suv


def test_suv_threshold_keeps_voxels_at_or_above_the_cut():
    suv = _two_lesions()
    mask = suv_threshold(suv)
    assert mask.dtype == np.uint8 and mask.shape == suv.shape
    assert mask.sum() == 27 + 2
    assert suv_threshold(suv, threshold=5.0).sum() == 3  # 10, 5 and the faint lesion's 5


def test_suv_max_fraction_contours_each_region_at_41_percent_of_its_own_max():
    suv = _two_lesions()
    mask = suv_max_fraction(suv)
    expected = np.zeros_like(mask)
    expected[2, 2, 2] = expected[2, 2, 3] = 1  # bright lesion: only 10 and 5 reach 4.1
    expected[6, 6, 5:7] = 1  # faint lesion: whole seed region (cut 2.05 below the seed 2.5)
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == np.uint8


def test_suv_max_fraction_drops_small_regions_by_volume():
    suv = _two_lesions()
    # 2 mm voxels hold 8 µl: the faint lesion (2 voxels, 16 µl) is below 50 µl, the bright one
    # (216 µl) is not.
    mask = suv_max_fraction(suv, spacing=(2.0, 2.0, 2.0), min_volume_ml=0.05)
    assert mask[6, 6].sum() == 0 and mask[2, 2, 2] == 1
    with pytest.raises(ValueError, match="spacing"):
        suv_max_fraction(suv, min_volume_ml=1.0)


def test_threshold_methods_are_called_alike():
    suv = _two_lesions()
    for name, method in THRESHOLD_METHODS.items():
        mask = method(suv, spacing=(2.0, 2.0, 2.0))
        assert mask.dtype == np.uint8 and mask.shape == suv.shape, name
    assert set(THRESHOLD_METHODS) == {"suv2.5", "suv41"}
