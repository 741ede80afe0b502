"""H2ASeg's parts against the paper's equations, ablation flags, shapes and a small overfit run."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from h2aseg import H2ASeg
from h2aseg.cli import main as cli_main
from h2aseg.errors import ConfigError
from h2aseg.models.bdsa import BDSA
from h2aseg.models.mcsa import MCSA, window_partition, window_reverse
from h2aseg.models.registry import build_model, list_models
from h2aseg.models.tamw import TAMW
from h2aseg.training.losses import PAPER_WEIGHTS, DeepSupervisionLoss

TINY = dict(channels=(2, 4, 4, 8, 8), window_size=(4, 4, 2), patch_size=(32, 32, 32), dropout=0.0)


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """1×1×1 convolution of a (C, N) matrix: W·x + b."""
    return weight[:, :, 0, 0, 0] @ x + bias[:, None]


def reference_unit(e_t, e_s, w_t, b_t, w_s, b_s):
    """Eq. 1 for one direction written as matrices: returns concat(A_s, A_t) as (2C, N)."""
    c = e_t.shape[0]
    q_t, k_t, v_t, q_s = (conv1x1(e_t, w_t[i * c : (i + 1) * c], b_t[i * c : (i + 1) * c]) for i in range(4))
    k_s, v_s = (conv1x1(e_s, w_s[i * c : (i + 1) * c], b_s[i * c : (i + 1) * c]) for i in (4, 5))
    a_s = v_s @ torch.softmax(q_s.T @ k_s / math.sqrt(c), dim=1).T
    a_t = v_t @ torch.softmax(q_t.T @ k_t / math.sqrt(c), dim=1).T
    return torch.cat((a_s, a_t))


def test_bdsa_matches_equation_1():
    torch.manual_seed(0)
    c, size = 3, (2, 3, 2)
    bdsa = BDSA(c).eval()
    ct, pet = torch.randn(1, c, *size), torch.randn(1, c, *size)
    out_ct, out_pet = bdsa(ct, pet)
    e_ct, e_pet = ct[0].reshape(c, -1), pet[0].reshape(c, -1)
    w_ct, b_ct = bdsa.proj_ct.weight, bdsa.proj_ct.bias
    w_pet, b_pet = bdsa.proj_pet.weight, bdsa.proj_pet.bias
    # Target CT: its own Q/K/V and Q_s; K_s, V_s come from PET (the PET projection's blocks 4–5).
    cat_ct = reference_unit(e_ct, e_pet, w_ct, b_ct, w_pet, b_pet)
    cat_pet = reference_unit(e_pet, e_ct, w_pet, b_pet, w_ct, b_ct)
    fuse_w, fuse_b = bdsa.fuse.weight, bdsa.fuse.bias
    ref_ct = F.conv3d(cat_ct.reshape(1, 2 * c, *size), fuse_w[:c], fuse_b[:c], padding=1)
    ref_pet = F.conv3d(cat_pet.reshape(1, 2 * c, *size), fuse_w[c:], fuse_b[c:], padding=1)
    torch.testing.assert_close(out_ct, ref_ct, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_pet, ref_pet, atol=1e-5, rtol=1e-5)


def test_window_partition_then_reverse_is_identity():
    x = torch.randn(2, 3, 8, 4, 6)
    windows = window_partition(x, (4, 2, 3))
    assert windows.shape == (2 * 2 * 2 * 2, 3, 4, 2, 3)
    # The first window is the corner block of the first batch item.
    torch.testing.assert_close(windows[0], x[0, :, :4, :2, :3])
    torch.testing.assert_close(window_reverse(windows, (8, 4, 6)), x)


def test_inter_window_pooling_gives_one_token_per_window():
    mcsa = MCSA(channels=4, window_size=(8, 8, 4), map_size=(32, 16, 8))
    assert mcsa.has_inter_window
    tokens = mcsa.pool_ct(torch.randn(2, 4, 32, 16, 8))
    assert tokens.shape == (2, 4, 4, 2, 2)  # C × H/Hw × W/Ww × D/Dw
    ct, pet = mcsa(torch.randn(2, 4, 32, 16, 8), torch.randn(2, 4, 32, 16, 8))
    assert ct.shape == pet.shape == (2, 4, 32, 16, 8)


def test_mcsa_with_zero_gates_starts_as_the_identity_and_learns_its_gates():
    torch.manual_seed(0)
    mcsa = MCSA(channels=4, window_size=(8, 8, 4), map_size=(16, 16, 8), gate_init=0.0)
    ct, pet = torch.randn(2, 4, 16, 16, 8), torch.randn(2, 4, 16, 16, 8)
    out_ct, out_pet = mcsa(ct, pet)
    assert torch.equal(out_ct, ct) and torch.equal(out_pet, pet)  # both residual branches scaled by 0
    (out_ct.square().mean() + out_pet.square().mean()).backward()
    assert mcsa.gates.grad is not None and mcsa.gates.grad.abs().amax(dim=(1, 2, 3, 4, 5)).gt(0).all()
    ungated = MCSA(channels=4, window_size=(8, 8, 4), map_size=(16, 16, 8))
    assert ungated.gates is None and not torch.equal(ungated(ct, pet)[0], ct)
    with pytest.raises(ConfigError, match="residual"):
        MCSA(channels=4, window_size=(8, 8, 4), map_size=(16, 16, 8), residual=False, gate_init=0.0)
    assert build_model("h2aseg", patch_size=(32, 32, 32), mcsa_gate_init=0.0).mcsa["2"].gates is not None


def test_mcsa_norm_pre_attends_on_normalised_features_and_post_normalises_the_output():
    torch.manual_seed(0)
    size = (16, 16, 8)
    # pre, on a one-window map (one step): the branch sees IN(x), so scaling x by 10 leaves what it adds
    one = (8, 8, 4)
    ct, pet = torch.randn(2, 4, *one), torch.randn(2, 4, *one)
    pre = MCSA(channels=4, window_size=(8, 8, 4), map_size=one, norm="pre")
    added = [o - x for o, x in zip(pre(ct, pet), (ct, pet))]
    added_scaled = [o - 10 * x for o, x in zip(pre(10 * ct, 10 * pet), (ct, pet))]
    for a, b in zip(added, added_scaled):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    plain = MCSA(channels=4, window_size=(8, 8, 4), map_size=one)
    plain.load_state_dict(pre.state_dict(), strict=False)  # same attention weights, no norms
    plain_added = plain(10 * ct, 10 * pet)[0] - 10 * ct
    assert not torch.allclose(plain_added, added[0], atol=1e-3)
    # post: IN-PReLU after each residual keeps the output at unit scale whatever the input scale
    ct, pet = torch.randn(2, 4, *size), torch.randn(2, 4, *size)
    post = MCSA(channels=4, window_size=(8, 8, 4), map_size=size, norm="post")
    plain = MCSA(channels=4, window_size=(8, 8, 4), map_size=size)
    out_ct, _ = post(100 * ct, 100 * pet)
    assert out_ct.std() < 2 and plain(100 * ct, 100 * pet)[0].std() > 50
    # the default has no norm parameters: checkpoints of earlier runs load unchanged
    assert not any("norms" in key for key in plain.state_dict())
    assert any("norms.2" in key for key in pre.state_dict())
    assert any("norms.0" in key for key in post.state_dict())
    with pytest.raises(ConfigError, match="norm"):
        MCSA(channels=4, window_size=(8, 8, 4), map_size=size, norm="layer")
    assert build_model("h2aseg", patch_size=(32, 32, 32), mcsa_norm="post").mcsa["2"].norm == "post"


def test_mcsa_feeds_encoder_false_keeps_the_ct_encoder_free_of_pet():
    """Default: the CT encoder's level-3 block reads F_ct^2, which carries PET; with the option, E_ct^2."""

    def ct_level3_input(net, pet):
        seen = []
        hook = net.encoder_ct.blocks[2].register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
        with torch.no_grad():
            net(torch.ones(1, 1, 32, 32, 32), pet)
        hook.remove()
        return seen[0]

    torch.manual_seed(0)
    pet_a, pet_b = torch.rand(1, 1, 32, 32, 32), torch.rand(1, 1, 32, 32, 32)
    for feeds, depends_on_pet in ((True, True), (False, False)):
        net = build_model("h2aseg", patch_size=(32, 32, 32), mcsa_feeds_encoder=feeds).eval()
        differ = not torch.allclose(ct_level3_input(net, pet_a), ct_level3_input(net, pet_b))
        assert differ == depends_on_pet
        # the decoder still gets MCSA's cross-modal features: the CT skip F_ct^3 depends on PET either way
        with torch.no_grad():
            x = torch.ones(1, 1, 32, 32, 32)
            assert not torch.allclose(net.encode(x, pet_a)[2][0], net.encode(x, pet_b)[2][0])


def test_map_no_larger_than_a_window_falls_back_to_global_attention():
    mcsa = MCSA(channels=4, window_size=(8, 8, 4), map_size=(8, 4, 4))
    assert not mcsa.has_inter_window and not hasattr(mcsa, "pool_ct")


def test_patch_that_windows_cannot_tile_is_rejected_with_a_clear_error():
    with pytest.raises(ConfigError, match="cannot be tiled"):
        H2ASeg(window_size=(8, 8, 4), patch_size=(96, 96, 48))  # level 4 map 12×12×6: 12 % 8 != 0
    with pytest.raises(ConfigError, match="multiple of 16"):
        H2ASeg(patch_size=(100, 96, 64))


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_tamw_equations_2_to_4_at_constant_probability(probability):
    torch.manual_seed(0)
    tamw = TAMW(channels=6)
    features = torch.randn(2, 6, 4, 4, 2)
    p = torch.full((2, 1, 4, 4, 2), probability)
    out = tamw(features, p)
    if probability == 1.0:  # F_fore = F, F_back = 0: F_enh = F + W_fore(F) ⊙ F
        w = torch.tanh(tamw.fore_weights.mlp(features.mean(dim=(2, 3, 4))))
    else:  # F_fore = 0, F_back = F: F_enh = F + W_back(F) ⊙ F
        w = torch.tanh(tamw.back_weights.mlp(features.mean(dim=(2, 3, 4))))
    torch.testing.assert_close(out, features * (1 + w[:, :, None, None, None]))


def test_gradients_reach_both_encoders():
    torch.manual_seed(0)
    model = H2ASeg(**TINY).train()
    ct, pet = torch.randn(1, 1, 32, 32, 32), torch.randn(1, 1, 32, 32, 32)
    outputs = model(ct, pet)
    DeepSupervisionLoss()(outputs, (torch.rand(1, 1, 32, 32, 32) > 0.8).float()).backward()
    for encoder in (model.encoder_ct, model.encoder_pet):
        first_conv = encoder.blocks[0].body[0]
        assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_training_mode_returns_five_levels_and_eval_mode_full_resolution():
    model = H2ASeg(num_classes=3, **TINY)
    x = torch.randn(2, 1, 32, 32, 32)
    outputs = model.train()(x, x)
    assert [tuple(o.shape) for o in outputs] == [(2, 3, 32 // 2**k, 32 // 2**k, 32 // 2**k) for k in range(5)]
    assert model.eval()(x, x).shape == (2, 3, 32, 32, 32)
    assert len(model.eval()(x, x, deep_supervision=True)) == 5


def test_foreground_prior_sets_every_binary_head_bias():
    torch.manual_seed(0)
    model = H2ASeg(foreground_prior=0.01, **TINY).eval()
    for head in model.heads.values():
        torch.testing.assert_close(head.bias, torch.full_like(head.bias, math.log(0.01 / 0.99)))
    x = torch.randn(1, 1, 32, 32, 32)
    # Untrained, the network predicts mostly background instead of a coin flip everywhere.
    assert torch.sigmoid(model(x, x)).mean() < 0.2
    default_init = H2ASeg(foreground_prior=None, **TINY)
    assert not torch.allclose(default_init.heads["1"].bias, model.heads["1"].bias)
    with pytest.raises(ValueError, match="foreground_prior"):
        H2ASeg(foreground_prior=1.5, **TINY)


def test_deep_supervision_weights_and_perfect_prediction():
    assert PAPER_WEIGHTS == (5.0, 4.0, 3.0, 2.0, 1.0)
    label = torch.zeros(1, 1, 16, 16, 16)
    label[..., 4:12, 4:12, 4:12] = 1
    perfect = label * 40 - 20
    loss_fn = DeepSupervisionLoss()
    assert loss_fn([perfect] * 5, label).item() < 0.05
    # A wrong output at level k costs (6 − k) times its own loss.
    wrong = -perfect
    single = loss_fn.loss(wrong, label).item()
    for k in range(1, 6):
        outputs = [perfect] * 5
        outputs[k - 1] = wrong
        assert loss_fn(outputs, label).item() == pytest.approx((6 - k) * single, rel=1e-3)


def test_deep_supervision_upsamples_coarse_outputs_to_the_label():
    label = torch.zeros(1, 1, 16, 16, 16)
    label[..., :8, :8, :8] = 1
    coarse = torch.full((1, 1, 2, 2, 2), -20.0)
    coarse[..., 0, 0, 0] = 20.0
    loss_fn = DeepSupervisionLoss(weights=(1.0,))
    expected = loss_fn.loss(F.interpolate(coarse, size=(16, 16, 16), mode="trilinear"), label)
    torch.testing.assert_close(loss_fn([coarse], label), expected)


def test_ablation_flags_change_parameters_and_forward_still_works():
    counts = {}
    x = torch.randn(1, 1, 32, 32, 32)
    for name in ("h2aseg", "h2aseg_no_mcsa", "h2aseg_no_tamw", "dual_resunet3d"):
        model = build_model(name, **TINY).eval()
        counts[name] = sum(p.numel() for p in model.parameters())
        assert model(x, x).shape == (1, 1, 32, 32, 32)
    assert len(set(counts.values())) == 4
    assert counts["dual_resunet3d"] < counts["h2aseg_no_mcsa"] < counts["h2aseg"]
    assert counts["dual_resunet3d"] < counts["h2aseg_no_tamw"] < counts["h2aseg"]
    assert {"h2aseg", "h2aseg_no_mcsa", "h2aseg_no_tamw", "dual_resunet3d"} <= set(list_models())


def sphere_pair(size: int = 32, radius: float = 6.0, seed: int = 0):
    """A bright sphere in PET, a matching soft-tissue blob in CT, plus a PET-only 'organ' decoy."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*(torch.arange(size, dtype=torch.float32),) * 3, indexing="ij"))
    centre = torch.tensor([20.0, 14.0, 16.0])[:, None, None, None]
    lesion = ((grid - centre).pow(2).sum(0) <= radius**2).float()
    pet = 0.1 * torch.randn(size, size, size, generator=g) + 4.0 * lesion
    ct = 0.1 * torch.randn(size, size, size, generator=g) + 1.0 * lesion
    return ct[None, None], pet[None, None], lesion[None, None]


def test_small_h2aseg_overfits_a_synthetic_pet_ct_pair():
    torch.manual_seed(0)
    ct, pet, label = sphere_pair()
    model = H2ASeg(channels=(4, 8, 8, 16, 16), window_size=(4, 4, 4), patch_size=(32, 32, 32), dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = DeepSupervisionLoss()
    dice = 0.0
    for _step in range(60):
        model.train()
        optimizer.zero_grad()
        loss_fn(model(ct, pet), label).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = (model(ct, pet) > 0).float()
        dice = (2 * (pred * label).sum() / (pred.sum() + label.sum())).item()
        if dice >= 0.9:
            break
    assert dice >= 0.9, f"Dice {dice:.3f} after {_step + 1} steps"


#: The parameter counts the module docstring of h2aseg.models.h2aseg states for the paper's setting.
PAPER_COUNTS = {"h2aseg": 11_118_135, "dual_resunet3d": 4_906_511}


def test_paper_configuration_has_the_parameter_count_its_docstring_states(capsys):
    import h2aseg.models.h2aseg as module

    paper = dict(channels=(8, 16, 32, 64, 128), window_size=(8, 8, 4), patch_size=(128, 128, 64))
    for name, count in PAPER_COUNTS.items():
        model = build_model(name, **paper)
        assert sum(p.numel() for p in model.parameters()) == count, name
        assert f"{count:,}" in " ".join(module.__doc__.split()), f"docstring no longer states {count:,}"
    expected = PAPER_COUNTS["h2aseg"]
    assert cli_main(["info", "--model", "h2aseg"]) == 0
    assert f"{expected:,} parameters" in capsys.readouterr().out


def test_public_network_import_needs_only_torch():
    code = "import sys; from h2aseg import H2ASeg; H2ASeg(); print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
