"""Stage engine, latent parameterisations, CSGM / IAGAN / back-projection and inversion.restore."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inversion import methods
from inversion.engine import run_stages
from inversion.operators import CompressedSensing, Inpainting, SuperResolution, back_project
from inversion.stages import Stage, as_stages
from lcm.prior import Prior
from lcm.toy import TinyGenerator, blob_images, fit_toy_prior, tiny_prior

FAST = {"csgm_steps": 120, "restarts": 3, "variant": "paper"}  # the paper's rules: best iterate
IAGAN = {**FAST, "iagan_steps": 120, "iagan_latent_lr": 1e-3, "iagan_generator_lr": 1e-3}


@pytest.fixture(scope="module")
def toy():
    """A tiny generator fitted to blob images, and held-out blob images (near, not on, its range)."""
    prior, _ = fit_toy_prior(steps=250, seed=0)
    held_out = blob_images(6, generator=torch.Generator().manual_seed(1234))
    return prior, held_out


@pytest.fixture(scope="module")
def sr_runs(toy):
    prior, x = toy
    op = SuperResolution(factor=2, kernel="bicubic")
    y = op.A(x)
    csgm = methods.restore(y, op, prior, "csgm", seed=0, x_true=x, **FAST)
    iagan = methods.restore(y, op, prior, "iagan", seed=0, x_true=x, **IAGAN)
    return op, y, csgm, iagan


def test_csgm_lowers_measurement_residual(toy, sr_runs):
    op, y, csgm, _ = sr_runs
    first, best = csgm.history[0], csgm.objective
    assert csgm.history.shape == (FAST["csgm_steps"] + 1, y.shape[0])
    assert (best < 0.5 * first).all()
    assert torch.allclose(csgm.measurement_mse, best, rtol=1e-4, atol=1e-7)  # images are the best iterate


def test_iagan_beats_csgm_in_psnr(sr_runs):
    _, y, csgm, iagan = sr_runs
    # IAGAN Tables 2-3 ordering: IAGAN > CSGM in PSNR (held-out images off the prior's range)
    assert iagan.metrics["psnr"].mean() > csgm.metrics["psnr"].mean() + 1.0
    assert (iagan.measurement_mse <= csgm.measurement_mse + 1e-7).all()
    # the joint phase starts from the CSGM result (its first objective is CSGM's best)
    start = iagan.history[FAST["csgm_steps"] + 1]
    assert torch.allclose(start, csgm.objective, rtol=1e-4, atol=1e-7)
    assert len(iagan.generators) == y.shape[0]


@pytest.mark.parametrize("task", ["sr", "inpaint"])
def test_back_projection_makes_measurements_hold(toy, sr_runs, task):
    prior, x = toy
    if task == "sr":
        op, y, csgm, _ = sr_runs
    else:
        op = Inpainting("center", box_size=0.5)
        y = op.A(x)
        csgm = methods.restore(y, op, prior, "csgm", seed=0, csgm_steps=30, restarts=1)
    bp = back_project(csgm.raw, y, op)  # the exact A-dagger (restore's _bp default for SR is bicubic)
    assert torch.allclose(op.A(bp), y, atol=1e-4)
    assert not torch.allclose(op.A(csgm.raw), y, atol=1e-4)
    if task == "inpaint":
        res = methods.restore(y, op, prior, "csgm_bp", seed=0, csgm_steps=30, restarts=1, x_true=x)
        assert res.measurement_mse.max() < 1e-10
        hole = 1 - op.mask_for(x)
        assert torch.equal(res.images * hole, csgm.images * hole)  # null space untouched
        assert "masked_psnr" in res.metrics


def test_same_seed_same_result_different_seed_differs(toy):
    prior, x = toy
    op = CompressedSensing(ratio=0.3, kind="gaussian", seed=1)
    y = op.A(x[:2])
    a = methods.restore(y, op, prior, "csgm", seed=7, csgm_steps=15, restarts=2)
    b = methods.restore(y, op, prior, "csgm", seed=7, csgm_steps=15, restarts=2)
    c = methods.restore(y, op, prior, "csgm", seed=8, csgm_steps=15, restarts=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert not torch.allclose(a.images, c.images)
    # an image's result does not depend on the batch it is in (per-image seeds)
    single = methods.restore(y[1:], op, prior, "csgm", seed=[8], csgm_steps=15, restarts=2)
    assert torch.allclose(single.images[0], a.images[1], atol=1e-5)


def _f64_setup(n=3):
    prior = tiny_prior(seed=3, latent_dim=4, dtype="float64")
    op = Inpainting("center", box_size=0.25)
    x = blob_images(n, generator=torch.Generator().manual_seed(5)).double()
    z0 = methods.init_latents(prior, [0, 1, 2][:n])
    return prior, op, op.A(x), z0


def test_sequential_and_vmap_private_copies_agree_in_float64():
    prior, op, y, z0 = _f64_setup()
    stages = [
        Stage(iterations=3, latent_lr=0.05),
        Stage(iterations=4, generator=[1, 3], latent_lr=0.01, generator_lr=1e-2),
        Stage(iterations=3, generator="all", latent=False, generator_lr=5e-3),
    ]
    seq = run_stages(prior, op, y, z0, stages, batching="sequential")
    vm = run_stages(prior, op, y, z0, stages, batching="vmap")
    assert torch.allclose(seq.history, vm.history, rtol=1e-10, atol=1e-13)
    assert torch.allclose(seq.images, vm.images, rtol=1e-10, atol=1e-12)
    assert torch.allclose(seq.latent, vm.latent, rtol=1e-10, atol=1e-12)
    # fine-tuning changed the private copies, and each image got its own
    w0 = prior.generator.blocks[1][1].weight
    w_a, w_b = (g.blocks[1][1].weight for g in seq.generators[:2])
    assert not torch.allclose(w_a, w0) and not torch.allclose(w_a, w_b)
    for ga, gb in zip(seq.generators, vm.generators, strict=True):
        for pa, pb in zip(ga.parameters(), gb.parameters(), strict=True):
            assert torch.allclose(pa, pb, rtol=1e-9, atol=1e-12)


def test_frozen_parts_have_no_grad_and_prior_is_untouched():
    prior, op, y, z0 = _f64_setup(2)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    seen = {}

    def hook(module):
        orig = module._after_step

        def check():
            orig()
            seen["frozen"] = [
                (p.requires_grad, p.grad) for c in module.copies for p in c.blocks[1:].parameters()
            ]
            seen["trained"] = [
                (p.requires_grad, p.grad) for c in module.copies for p in c.blocks[0].parameters()
            ]
            seen["latent"] = module.latent.grad

        module._after_step = check

    run_stages(prior, op, y, z0, [Stage(iterations=2, generator=[0, 1], latent=False)], module_hook=hook)
    assert seen["frozen"] and all(rg is False and g is None for rg, g in seen["frozen"])
    assert all(rg and g is not None and g.abs().sum() > 0 for rg, g in seen["trained"])
    assert seen["latent"] is None
    assert all(p.grad is None for p in prior.parameters())
    for k, v in prior.state_dict().items():
        assert torch.equal(v, before[k])


class _FlatLatentNet(nn.Module):
    """A stand-in for LCM's latent ConvNet: phi (B, n) -> generator input (B, d) through fixed noise."""

    def __init__(self, n_phi: int, d: int):
        super().__init__()
        self.lin = nn.Linear(n_phi, d, bias=False)
        self.num_params = n_phi

    def forward(self, phi: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.lin(phi) * noise.mean() * 10


@pytest.mark.parametrize("kind", ["sphere", "convnet"])
def test_latent_only_restoration_respects_the_latent_set(kind):
    torch.manual_seed(0)
    gen = TinyGenerator(latent_dim=6).eval()
    if kind == "sphere":
        prior = Prior(gen, "sphere", (6,), (1, 16, 16))
    else:
        net = _FlatLatentNet(12, 6)
        prior = Prior(
            gen, "convnet", (12,), (1, 16, 16), latent_net=net, noise=torch.rand(1, 4, 4) + 0.5, box=0.5
        )
    x_true = prior(prior.sample_latent(2, generator=torch.Generator().manual_seed(1))).detach()
    op = SuperResolution(factor=2, kernel="box")
    res = methods.restore(op.A(x_true), op, prior, "latent", seed=3, latent_steps=80, restarts=1)
    if kind == "sphere":
        assert torch.allclose(res.latent.norm(dim=1), torch.ones(2, dtype=res.latent.dtype), atol=1e-5)
    else:
        assert res.latent.abs().max() <= 0.5 + 1e-7
    assert (res.objective < 0.5 * res.history[0]).all()


def test_iagan_halves_its_steps_for_noisy_measurements(toy):
    prior, x = toy
    op = SuperResolution(factor=2, kernel="box", sigma=10 / 255)
    y = op(x[:1], generator=torch.Generator().manual_seed(0))
    opts = {"seed": 0, "csgm_steps": 5, "restarts": 1, "iagan_steps": 10}
    res = methods.restore(y, op, prior, "iagan", variant="paper", **opts)
    assert res.history.shape[0] == (5 + 1) + (5 + 1)
    clean = SuperResolution(factor=2, kernel="box")
    res = methods.restore(clean.A(x[:1]), clean, prior, "iagan", variant="paper", **opts)
    assert res.history.shape[0] == (5 + 1) + (10 + 1)
    res = methods.restore(y, op, prior, "iagan", **opts)  # IAGAN's code runs every iteration, noisy or not
    assert res.history.shape[0] == (5 + 1) + (10 + 1)


def test_per_image_stop_mse_freezes_an_image():
    prior, op, y, z0 = _f64_setup(2)
    loose = float((prior(z0).detach() - y).pow(2).flatten(1).mean(1).max()) * 2
    fit = run_stages(prior, op, y, z0, [Stage(iterations=20, latent_lr=0.05, stop_mse=loose)])
    assert (fit.steps == 1).all() and fit.history.shape[0] == 1


def test_bad_inputs_raise_clear_errors(toy):
    prior, x = toy
    op = SuperResolution(factor=2, kernel="box")
    y = op.A(x[:1])
    with pytest.raises(ValueError, match="method"):
        methods.restore(y, op, prior, "not_a_method")
    with pytest.raises(ValueError, match="csgm_stepz"):
        methods.restore(y, op, prior, "csgm", csgm_stepz=3)
    with pytest.raises(ValueError, match="seed"):
        methods.restore(y, op, prior, "csgm", seed=[1, 2])
    with pytest.raises(ValueError, match="iterations"):
        Stage(iterations=0)
    with pytest.raises(ValueError, match="train something"):
        Stage(iterations=3, latent=False)
    with pytest.raises(ValueError, match="unknown keys"):
        as_stages([{"iterations": 3, "lr": 0.1}])
    with pytest.raises(ValueError, match="loss terms"):
        run_stages(prior, op, y, methods.init_latents(prior, [0]), [Stage(3, weights={"critic": 1.0})])
    with pytest.raises(ValueError, match="exceeds"):
        run_stages(prior, op, y, methods.init_latents(prior, [0]), [Stage(3, generator=[0, 9])])


def test_restarts_keep_each_images_own_mask(toy):
    prior, x = toy
    op = Inpainting("boxes", box_size=0.3, per_image=True, seed=1)
    y = op.A(x[:3])
    res = methods.restore(y, op, prior, "csgm", seed=0, csgm_steps=10, restarts=3)
    # the fit's objective (on repeated rows) is the measurement error under each image's own mask, as the
    # MSE of [-1, 1] images (IAGAN's code; 4x that of [0, 1] images), at the returned last iterate
    assert torch.allclose(res.objective, 4 * res.measurement_mse, rtol=1e-4, atol=1e-7)


def test_registered_method_runs_through_restore_and_rejects_unknown_options(toy):
    """A plug-in method registered with its own config runs via restore(); bad names fail clearly."""
    from dataclasses import dataclass

    from inversion.methods import CSGMConfig, available_methods, csgm, register_method, restore

    @dataclass
    class TinyConfig(CSGMConfig):
        scale: float = 1.0

    calls = []

    def run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms):
        calls.append(cfg.scale)
        return csgm(prior, operator, y, seeds, labels, cfg, callbacks, loss_terms)

    register_method("tiny_test_method", TinyConfig)(run)
    assert {"tiny_test_method", "tiny_test_method_bp", "dgp", "cri"} <= set(available_methods())
    prior, x = toy
    op = SuperResolution(factor=2, kernel="bicubic")
    y = op.A(x)
    out = restore(y, op, prior, method="tiny_test_method", scale=2.0, csgm_steps=3, restarts=1)
    assert calls == [2.0] and out.images.shape == x.shape
    with pytest.raises(ValueError, match="unknown restore"):
        restore(y, op, prior, method="tiny_test_method", nonsense=1)
    with pytest.raises(ValueError, match="method must be one of"):
        restore(y, op, prior, method="no_such_method")


def test_restarts_with_a_given_per_image_mask(toy):
    """A (B, 1, H, W) mask set by the user follows its image through CSGM's restart rows."""
    prior, x = toy
    op = Inpainting()
    op.set_mask(
        (torch.rand(x.shape[0], 1, *x.shape[-2:], generator=torch.Generator().manual_seed(0)) > 0.3).float()
    )
    y = op.A(x)
    out = methods.restore(y, op, prior, "csgm", seed=0, csgm_steps=5, restarts=2)
    torch.testing.assert_close(out.measurement_mse, (op.A(out.raw) - y).pow(2).flatten(1).mean(1))
    assert out.images.shape == x.shape


def test_a_later_stage_with_other_weights_supplies_the_result():
    """Objectives of different stages are not compared: the last objective's best iterate is kept."""
    prior, op, y, z0 = _f64_setup(2)
    stages = [Stage(30, latent_lr=0.05), Stage(30, latent_lr=0.05, weights={"mse": 1.0, "latent_prior": 1.0})]
    fit = run_stages(prior, op, y, z0, stages)
    # the kept objective is of the second kind (it includes the latent penalty) ...
    x = prior(fit.latent)
    second = (op.A(x) - y).pow(2).flatten(1).mean(1) + prior.latent_penalty(fit.latent)
    torch.testing.assert_close(fit.objective, second.detach())
    # ... and comes from the second stage: its iterate is not the first stage's best
    first = run_stages(prior, op, y, z0, stages[:1])
    assert not torch.allclose(fit.latent, first.latent)


def test_an_image_stopped_in_one_stage_runs_the_next_and_steps_are_counted_exactly():
    prior, op, y, z0 = _f64_setup(2)
    stages = [Stage(30, latent_lr=3.0, patience=2), Stage(12, latent_lr=0.01)]
    fit = run_stages(prior, op, y, z0, stages)
    assert (fit.steps > 12).all() and (fit.steps < 42).all()  # stopped early in stage 1, ran all of stage 2
    plain = run_stages(prior, op, y, z0, [Stage(17, latent_lr=0.01)])
    assert (plain.steps == 17).all()


def test_an_interrupted_fit_leaves_the_prior_trainable():
    prior, op, y, z0 = _f64_setup(1)

    def boom(ctx):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        run_stages(prior, op, y, z0, [Stage(3, weights={"boom": 1.0})], loss_terms={"boom": boom})
    assert all(p.requires_grad for p in prior.parameters())
