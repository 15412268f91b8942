"""DGP's presets are its scripts; the operators are its degradations; the faithful run's parameter groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inversion.dgp import dgp_operator, load_preset, script_stages
from inversion.dgp.faithful import generator_groups, parse_stages
from inversion.dgp.fit import DGPConfig, resolve_config
from inversion.dgp.operators import dip_lanczos2_kernel
from lcm.architectures.biggan import biggan_prior, build_discriminator, build_generator

DATA = Path(__file__).resolve().parents[1] / "data"
PRESETS = {
    "SR_D": "imagenet1k_128/SR/D_biased",
    "SR_MSE": "imagenet1k_128/SR/MSE_biased",
    "inpainting": "imagenet1k_128/inpainting",
    "colorization": "imagenet1k_128/colorization",
}


@pytest.fixture(scope="module")
def trace():
    return torch.load(DATA / "dgp_trace_128_tiny.pt", weights_only=True)


@pytest.mark.parametrize("name", list(PRESETS))
def test_128px_presets_hold_the_scripts_values_unscaled(trace, name):
    # the trace's script values were read from DGP's train.sh files by its maker
    script = trace[name]["script"]
    its = [200, 200, 300, 400, 300] if name == "colorization" else [200] * 5
    want = script_stages(**script, iterations=its)
    got = load_preset(PRESETS[name])
    assert got["stages"] == want["stages"]
    for k in ("w_nll", "candidate_std", "finetune_embedding", "variant", "critic_reduction", "n_candidates"):
        assert got[k] == want[k], k


def test_every_released_script_has_a_preset_and_manipulation_z_lrs_are_the_scripts():
    for name in ("run_SR", "run_inpainting", "run_colorization", "run_jitter", "run_category_transfer"):
        assert load_preset(f"examples/{name}")["stages"]
    morph = load_preset("examples/run_morphing")
    assert [s["latent_lr"] for s in morph["stages"]] == [1e-1, 1e-2, 2e-4]
    assert morph["w_nll"] == 0.2 and morph["finetune_embedding"] is True
    for small in ("jitter", "morph", "transfer"):  # our scaled presets keep the scripts' learning rates
        assert [s["latent_lr"] for s in load_preset(small)["stages"]] == [1e-1, 1e-2, 2e-4]
    with pytest.raises(FileNotFoundError, match="imagenet1k_128/SR/D_biased"):
        load_preset("no_such_preset")


def test_scale_shortens_any_preset():
    cfg = resolve_config(DGPConfig(preset="imagenet1k_128/colorization", scale=0.05))
    assert [s["iterations"] for s in cfg.stages] == [10, 10, 15, 20, 15]
    assert cfg.stages[0]["lr_ratio"] == 0.7  # everything else kept
    with pytest.raises(ValueError, match="scale"):
        resolve_config(DGPConfig(scale=0))


def test_script_stages_checks_its_lists():
    args = {
        "ft_num": [2, 3],
        "ftr_num": [8, 8],
        "lr_ratio": [1, 1],
        "w_D_loss": [1, 1],
        "w_mse": [1, 1],
        "w_nll": 0.02,
        "G_lrs": [1e-5],
        "z_lrs": [1e-3, 1e-3],
        "use_in": [False, False],
    }
    with pytest.raises(ValueError, match="G_lrs has 1 entries for 2 stages"):
        script_stages(**args, iterations=[4, 4])
    with pytest.raises(ValueError, match="mode"):
        script_stages(**{**args, "G_lrs": [1e-5, 1e-5]}, iterations=[4, 4], mode="deblur")
    with pytest.raises(ValueError, match="unknown keys"):
        parse_stages([{"blocks": 2, "iterations": 3, "generator": "all"}])
    assert parse_stages([{"blocks": 2, "iterations": 3, "weights": {"mse": 1, "vgg": 0.5}}])[0].extra == {
        "vgg": 0.5
    }


def test_biggan_groups_are_dgps_and_leave_out_the_output_layer():
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    gen = biggan_prior(build_generator(ref["G"]), build_discriminator(ref["D"])).generator
    groups = generator_groups(gen)
    assert len(groups) == 6  # DGP's G.optim: range(len(G.blocks) + 1) groups at 128 px
    assert {id(p) for p in groups[0]} == {id(p) for p in gen.blocks[0].parameters()}  # the first linear layer
    out = {id(p) for p in gen.blocks[-1].parameters()}
    assert not out & {id(p) for g in groups for p in g}
    ins = {id(p) for n, p in gen.named_parameters() if ".in1." in n or ".in2." in n}
    assert ins and not ins & {id(p) for g in groups for p in g}  # frozen IN affine
    with_embed = generator_groups(gen, update_embed=True)
    assert id(gen.embedding.weight) in {id(p) for p in with_embed[0]}


def test_dgp_operators_measure_as_dgp():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    k = dip_lanczos2_kernel(4)
    assert k.shape == (16, 16) and torch.isclose(k.sum(), torch.tensor(1.0, dtype=k.dtype))
    sr = dgp_operator("SR", 32)
    assert sr.A(x).shape == (2, 3, 8, 8) and sr(x).shape == (2, 3, 8, 8)
    assert sr.adjointness_error(x) < 1e-5
    assert (sr(x) * 255 - (sr(x) * 255).round()).abs().max() < 1e-3  # uint8 PIL output
    hole = dgp_operator("inpainting", 32)(x)
    assert (hole[..., 11:21, 11:21] == 0.5).all() and torch.equal(hole[..., :11, :], x[..., :11, :])
    gray = dgp_operator("colorization", 32).A(x)
    want = (0.2989 * (2 * x[:, 0]) + 0.5870 * (2 * x[:, 1]) + 0.1140 * (2 * x[:, 2]) - 0.9999 + 1) / 2
    assert torch.allclose(gray[:, 0], want, atol=1e-6)
    with pytest.raises(ValueError, match="DGP mode"):
        dgp_operator("deblur", 32)


def test_both_variants_read_the_critic_features_as_dgps_scripts_do():
    """``--D_nl inplace_relu``: the ReLU before D's sum pooling rectifies the last block's output in place,
    so DGP's loss sees it rectified; the fast variant's loss must read the same list as the faithful one."""
    from inversion.dgp.faithful import _features
    from inversion.dgp.losses import CriticFeatureLoss
    from lcm.prior import from_unit

    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    prior = biggan_prior(build_generator(ref["G"]), build_discriminator(ref["D"]))
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = prior.critic.features(x)  # the out-of-place list
        assert plain[-2].min() < 0  # so the check below can tell the two apart
        fast = CriticFeatureLoss(
            prior.critic, prior.image_shape, [-3, -2, -1], reduction="block_mean"
        ).features(x)
        faithful = _features(prior, from_unit(x))[-3:]
    assert fast[1].min() >= 0
    for a, b in zip(fast, faithful, strict=True):
        torch.testing.assert_close(a, b)
