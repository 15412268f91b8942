"""DGP: progressive unfreezing, BN->IN swap, best-of-N start, threshold stop, manipulation, presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from callbacks import (
    BatchNormToInstanceNorm,
    ProgressiveUnfreezing,
    swap_batchnorm_for_instancenorm,
)
from inversion import dgp
from inversion.dgp import manipulation as M
from inversion.dgp.init import candidate_pool, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE, to_image_grid
from inversion.dgp.schedule import schedule_to_stages
from inversion.engine import LossContext, run_stages
from inversion.methods import available_methods, init_latents, restore
from inversion.operators import Colorization, CompressedSensing, Denoising, Inpainting, SuperResolution
from lcm.networks import Critic, Generator
from lcm.prior import Prior

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(channels: int = 1, num_classes: int = 0, seed: int = 0, dtype=torch.float32) -> Prior:
    """A 16x16 DCGAN-style generator (4 blocks, BatchNorm with non-trivial running stats) + critic."""
    torch.manual_seed(seed)
    gen = Generator((8,), out_channels=channels, resolution=16, width=8, num_classes=num_classes)
    critic = Critic(in_channels=channels, resolution=16, width=8, num_classes=num_classes)
    for m in gen.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    prior = Prior(gen, "gaussian", (8,), (channels, 16, 16), critic=critic, num_classes=num_classes)
    return prior.to(dtype).eval()


@pytest.fixture(autouse=True)
def _tiny_as_prior_spec(monkeypatch):
    """``--prior tests.inversion.test_dgp:tiny`` for the CLIs: a factory registered from Python (a config or
    command line names no code to import, see inversion.cli.prior)."""
    from inversion.cli.prior import PRIOR_FACTORIES

    monkeypatch.setitem(PRIOR_FACTORIES, "tests.inversion.test_dgp:tiny", tiny)


def images(prior: Prior, n: int, seed: int = 1) -> torch.Tensor:
    """Images near, not on, the prior's range (latent samples plus a smooth offset)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lab = torch.arange(n) % prior.num_classes if prior.num_classes else None
        x = prior(prior.sample_latent(n, generator=g), lab)
    return (0.8 * x + 0.1 + 0.05 * torch.rand(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


SCHED = [
    {
        "blocks": 1,
        "iterations": 2,
        "latent_lr": 0.01,
        "generator_lr": 1e-3,
        "weights": {"critic": 1.0, "mse": 1.0},
    },
    {
        "blocks": 2,
        "iterations": 2,
        "latent_lr": 0.01,
        "generator_lr": 1e-3,
        "weights": {"critic": 1.0, "mse": 1.0},
    },
    {"blocks": "all", "iterations": 2, "latent": False, "generator_lr": 1e-3, "weights": {"mse": 1.0}},
]
FAST = {"stages": SCHED, "n_candidates": 16, "candidate_batch": 8}


# -- progressive unfreezing -------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["sequential", "vmap"])
def test_each_stage_trains_exactly_its_blocks_and_frozen_blocks_have_no_grad(batching):
    prior = tiny()
    op = SuperResolution(factor=2, kernel="box")
    x = images(prior, 2)
    blocks, stages = schedule_to_stages(SCHED)
    assert all(s.generator == "all" for s in stages)  # the callback, not the stage, restricts the blocks
    critic = CriticFeatureLoss(prior.critic, prior.image_shape)
    seen = []

    def hook(module):
        orig = module._after_step

        def check():
            orig()
            if module.copies is not None:
                named = [dict(c.named_parameters()) for c in module.copies]
            else:
                named = [module.stacked]
            rows = {}
            for params in named:
                for name, p in params.items():
                    b = int(name.split(".")[1])
                    rows.setdefault(b, set()).add((p.requires_grad, p.grad is not None))
            seen.append((module.stage_index, rows, module.latent.grad is not None))

        module._after_step = check

    z0 = init_latents(prior, [0, 1])
    fit = run_stages(
        prior, op, op.A(x), z0, stages, loss_terms={"critic": critic}, batching=batching,
        callbacks=[ProgressiveUnfreezing(blocks)], module_hook=hook,
    )  # fmt: skip
    assert [s for s, _, _ in seen] == [0, 0, 1, 1, 2, 2]
    depth = len(prior.generator.blocks)
    for k, rows, latent_has_grad in seen:
        n = {0: 1, 1: 2, 2: depth}[k]
        for b, flags in rows.items():
            # trained blocks: requires_grad and a gradient; frozen ones: neither
            assert flags == ({(True, True)} if b < n else {(False, False)}), (k, b, flags)
        assert latent_has_grad == (k < 2)
    assert all(p.grad is None for p in prior.parameters())  # the shared prior is never trained
    bns = [m for g in fit.generators for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.track_running_stats for m in bns)  # BaseFinetuning.freeze's flag is undone


def test_progressive_unfreezing_rejects_mismatched_schedules():
    prior = tiny()
    op = Denoising(sigma=0.0)
    x = images(prior, 1)
    _, stages = schedule_to_stages(SCHED)
    terms = {"critic": CriticFeatureLoss(prior.critic, prior.image_shape)}
    with pytest.raises(ValueError, match="one per stage"):
        run_stages(
            prior,
            op,
            x,
            init_latents(prior, [0]),
            stages,
            loss_terms=terms,
            callbacks=[ProgressiveUnfreezing([1, 2])],
        )
    with pytest.raises(ValueError, match="blocks"):
        schedule_to_stages([{"iterations": 3}])
    with pytest.raises(ValueError, match="not 'generator'"):
        schedule_to_stages([{"blocks": 1, "iterations": 3, "generator": "all"}])
    with pytest.raises(ValueError, match="blocks must be"):
        ProgressiveUnfreezing([1, -2])


# -- BN -> IN ---------------------------------------------------------------------------------
def test_bn_to_in_swap_keeps_the_output_and_is_idempotent():
    prior = tiny(dtype=torch.float64)
    gen = prior.generator
    w = prior.sample_latent(2, generator=torch.Generator().manual_seed(3))
    before = gen(w).detach()
    copies = [__import__("copy").deepcopy(gen) for _ in range(2)]
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in gen.modules())
    assert n_bn == 3
    for i, c in enumerate(copies):
        assert swap_batchnorm_for_instancenorm(c, w[i : i + 1]) == n_bn
        assert not any(isinstance(m, nn.BatchNorm2d) for m in c.modules())
        out = c(w[i : i + 1]).detach()
        assert torch.allclose(out, before[i : i + 1], atol=1e-10)
        state = {k: v.clone() for k, v in c.state_dict().items()}
        assert swap_batchnorm_for_instancenorm(c, w[i : i + 1]) == 0  # idempotent
        assert all(torch.equal(v, c.state_dict()[k]) for k, v in state.items())
    # per image: each copy got its own IN scale
    assert not torch.allclose(copies[0].blocks[1][1].weight, copies[1].blocks[1][1].weight)
    # on ANOTHER image the swapped copy differs from BN (IN uses that image's statistics)
    assert not torch.allclose(copies[0](w[1:2]), before[1:2], atol=1e-4)
    with pytest.raises(ValueError, match="one image"):
        swap_batchnorm_for_instancenorm(copies[0], w)


def test_bn_to_in_callback_in_a_fit_starts_from_the_same_objective():
    prior = tiny()
    op = SuperResolution(factor=2, kernel="box")
    x = images(prior, 2)
    z0 = init_latents(prior, [0, 1])
    stages = [{"iterations": 3, "generator": "all", "latent_lr": 0.01, "generator_lr": 1e-3}]
    cb = BatchNormToInstanceNorm()
    plain = run_stages(prior, op, op.A(x), z0, stages)
    swapped = run_stages(prior, op, op.A(x), z0, stages, callbacks=[cb])
    assert cb.swapped == 2 * 3
    assert torch.allclose(plain.history[0], swapped.history[0], rtol=1e-4, atol=1e-7)
    assert not any(isinstance(m, nn.BatchNorm2d) for g in swapped.generators for m in g.modules())
    with pytest.raises(ValueError, match="sequential"):
        run_stages(prior, op, op.A(x), z0, stages, batching="vmap", callbacks=[BatchNormToInstanceNorm()])


# -- candidate start ----------------------------------------------------------------------------
def _brute_force(prior, op, y_i, z, labels, lift="resize"):
    """One candidate at a time, eq. 3 written out."""
    ft = prior.critic.features(to_image_grid(y_i, prior.image_shape, op, lift))
    d = []
    for j in range(z.shape[0]):
        lab = None if labels is None else labels[j : j + 1]
        fx = prior.critic.features(to_image_grid(op.A(prior(z[j : j + 1], lab)), prior.image_shape, op, lift))
        d.append(sum((a - b).abs().mean() for a, b in zip(fx, ft, strict=True)))
    return int(torch.stack(d).argmin())


@pytest.mark.parametrize("case", ["sr", "per_image_mask", "conditional_unknown_class", "gray"])
def test_candidate_init_returns_the_best_of_n_under_the_metric(case):
    prior = tiny(num_classes=3 if case.startswith("conditional") else 0, channels=3 if case == "gray" else 1)
    x = images(prior, 3)
    op = {
        "sr": SuperResolution(factor=4, kernel="box"),
        "per_image_mask": Inpainting("boxes", box_size=0.4, per_image=True, seed=2),
        "conditional_unknown_class": SuperResolution(factor=2, kernel="box"),
        "gray": Colorization(),
    }[case]
    y = op.A(x)
    metric = CriticFeatureLoss(prior.critic, prior.image_shape)
    labels = torch.tensor([-1, -1, -1]) if prior.num_classes else None
    seeds = [5, 6, 7]
    got = select_latents(prior, op, y, metric, seeds, labels, n_candidates=20, batch_size=7)
    one = select_latents(prior, op, y, metric, seeds, labels, n_candidates=20, batch_size=1)
    assert torch.equal(got.index, one.index) and torch.allclose(got.score, one.score, rtol=1e-5)
    masks = op.mask_for(x) if case == "per_image_mask" else None
    for i, s in enumerate(seeds):
        z, zl = candidate_pool(prior, 20, s)
        op_i = op
        if masks is not None:
            op_i = Inpainting("boxes")
            op_i.set_mask(masks[i : i + 1])
        j = _brute_force(prior, op_i, y[i : i + 1], z, zl)
        assert int(got.index[i]) == j
        assert torch.equal(got.latent[i], z[j])
        if zl is not None:
            assert int(got.labels[i]) == int(zl[j])
    # a shared pool: the same candidates for every image
    shared = select_latents(prior, op, y, MeasurementMSE(), seeds, labels, 20, 8, pool_seed=9)
    z, _ = candidate_pool(prior, 20, 9)
    assert all(torch.equal(shared.latent[i], z[int(shared.index[i])]) for i in range(3))


def test_critic_feature_loss_is_zero_on_the_target_and_lifts_any_measurement():
    prior = tiny()
    x = images(prior, 2)
    loss = CriticFeatureLoss(prior.critic, prior.image_shape, blocks=[0, -1])
    for op in (
        SuperResolution(factor=4, kernel="box"),
        CompressedSensing(ratio=0.3, kind="gaussian", seed=0),
    ):
        y = op.A(x)
        ctx = LossContext(x, op.A(x), y, None, None, prior, op, None)
        assert torch.allclose(loss(ctx), torch.zeros(2), atol=1e-6)
        ctx.ax = op.A(x.flip(0))
        assert (loss(ctx) > 1e-3).all()
    assert to_image_grid(torch.rand(2, 1, 4, 4), (3, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="out of range"):
        CriticFeatureLoss(prior.critic, prior.image_shape, blocks=[7]).features(x)
    with pytest.raises(ValueError, match="A_dagger"):
        to_image_grid(torch.rand(2, 10), (1, 16, 16))


# -- the method -----------------------------------------------------------------------------------
def test_dgp_restores_through_the_registry_and_stops_at_the_mse_threshold():
    assert {"dgp", "dgp_bp"} <= set(available_methods())
    prior = tiny()
    x = images(prior, 2)
    op = Denoising(sigma=0.0)
    long = [
        {"blocks": "all", "iterations": 60, "latent_lr": 0.05, "generator_lr": 3e-3, "weights": {"mse": 1.0}}
    ]
    # the engine's stop (an image's best iterate frozen, the fit ends when all stopped): the fast variant
    fast = {"variant": "fast"}
    full = restore(x, op, prior, "dgp", seed=0, x_true=x, stages=long, n_candidates=16, bn_to_in=True, **fast)
    assert full.history.shape[0] == 61
    thr = float(full.history[15].max())  # every image is at or below this by step 15
    stopped = restore(
        x, op, prior, "dgp", seed=0, stages=long, n_candidates=16, bn_to_in=True, stop_mse=thr, **fast
    )
    assert stopped.history.shape[0] < 30  # the threshold ended the fit
    assert (stopped.measurement_mse <= thr + 1e-7).all()
    assert full.metrics["psnr"].mean() > 15 and len(full.generators) == 2


def test_colorization_output_keeps_the_target_luminance():
    from kornia.color import rgb_to_lab

    prior = tiny(channels=3)
    x = images(prior, 2)
    op = Colorization()
    y = op.A(x)
    res = restore(y, op, prior, "dgp", seed=0, **FAST)
    lum = rgb_to_lab(res.images)[:, 0]
    target = rgb_to_lab(y.expand(-1, 3, -1, -1))[:, 0]
    assert torch.allclose(lum, target, atol=0.5)  # L in [0, 100]; clipping to RGB moves it slightly
    raw = restore(y, op, prior, "dgp", seed=0, colorize_output=False, **FAST)
    assert not torch.allclose(rgb_to_lab(raw.images)[:, 0], target, atol=0.5)


# -- manipulation --------------------------------------------------------------------------------
@pytest.mark.parametrize("bn_to_in", [False, True])
def test_morphing_at_lambda_0_and_1_reproduces_the_two_fitted_images(bn_to_in):
    prior = tiny()
    x = images(prior, 2)
    out = dgp.fit_dgp(prior, Denoising(0.0), x, seeds=[0, 1], cfg=dgp.DGPConfig(**FAST, bn_to_in=bn_to_in))
    g, z, fitted = out.fit.generators, out.fit.latent, out.fit.images
    assert not torch.allclose(g[0].blocks[0][0].weight, g[1].blocks[0][0].weight)  # two different fits
    m = M.morph(prior, g[0], z[0], g[1], z[1], [1.0, 0.5, 0.0])
    assert torch.allclose(m[0], fitted[0], atol=1e-6) and torch.allclose(m[2], fitted[1], atol=1e-6)
    assert not torch.allclose(m[1], fitted[0], atol=1e-3) and not torch.allclose(m[1], fitted[1], atol=1e-3)
    j = M.jitter(prior, g[0], z[0], sigma=0.0, n=2)
    assert torch.allclose(j, fitted[:1].expand(2, -1, -1, -1), atol=1e-6)
    assert not torch.allclose(M.jitter(prior, g[0], z[0], sigma=1.0, n=2)[0], fitted[0], atol=1e-3)


def test_category_transfer_renders_every_class_and_keeps_the_fitted_one():
    prior = tiny(num_classes=3)
    x = images(prior, 1)
    out = dgp.fit_dgp(
        prior, Denoising(0.0), x, seeds=[0], labels=torch.tensor([2]), cfg=dgp.DGPConfig(**FAST)
    )
    assert int(out.labels[0]) == 2
    imgs = M.category_transfer(prior, out.fit.generators[0], out.fit.latent[0])
    assert imgs.shape == (3, 1, 16, 16)
    assert torch.allclose(imgs[2], out.fit.images[0], atol=1e-6)
    assert not torch.allclose(imgs[0], imgs[2], atol=1e-3)
    # unknown class: the start draws one per candidate and the fit keeps it
    free = dgp.fit_dgp(prior, Denoising(0.0), x, seeds=[0], cfg=dgp.DGPConfig(**FAST))
    assert free.labels is not None and 0 <= int(free.labels[0]) < 3


def test_manipulation_and_folder_clis_write_their_outputs(tmp_path):
    from PIL import Image

    from datamodules.io.images import save_png
    from inversion import cli
    from inversion.dgp import manipulation_cli as manipulate

    src = tmp_path / "in"
    for i, img in enumerate(images(tiny(), 2)):
        save_png(img, src / f"{i}.png")
    out = manipulate.morph("tests.inversion.test_dgp:tiny", str(src), 0, 1, 4, str(tmp_path / "morph"), FAST)
    assert Image.open(out).size == (6 * 65 + 1, 65 + 1)  # 16 px tiles upscaled x4 (nearest)
    assert not list((tmp_path / "morph").glob("*.tmp")) and not list((tmp_path / "morph").glob(".*"))
    page = (tmp_path / "morph" / "report.html").read_text()
    assert "morph: image 0 | lambda = 1 ... 0 (4 steps) | image 1" in page
    assert "data:image/png;base64," in page
    res = cli.restore_folder(
        "tests.inversion.test_dgp:tiny", SuperResolution(factor=2, kernel="box"), str(src),
        str(tmp_path / "sr"), method="dgp", options=FAST, progress=False,
    )  # fmt: skip
    rows = (res / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].split(",")[2] == "dgp" and (res / "restored" / "1.png").is_file()


# -- presets and errors ------------------------------------------------------------------------------
def test_every_dgp_preset_loads_and_builds_its_schedule():
    from inversion import cli
    from inversion.dgp.faithful import parse_stages
    from inversion.dgp.fit import _fast_schedule

    top = ROOT / "configs" / "inversion" / "dgp"
    files = sorted(top.rglob("*.yaml"))
    names = {str(f.relative_to(top).with_suffix("")) for f in files}
    assert names >= {
        "colorization", "inpainting", "sr_mse", "sr_critic", "defence", "jitter", "morph", "transfer",
        "imagenet1k_128/SR/D_biased", "imagenet1k_128/SR/MSE_biased", "imagenet1k_128/inpainting",
        "imagenet1k_128/colorization", "examples/run_SR", "examples/run_morphing",
    }  # fmt: skip
    parser = cli.build_parser()
    for f in files:
        opts = dgp.load_preset(str(f.relative_to(top).with_suffix("")))
        assert len(parse_stages(opts["stages"])) == len(opts["stages"])  # the faithful variant's reading
        if all(s.get("lr_ratio", 1) == 1 for s in opts["stages"]):  # the fast variant's (no lr_ratio)
            blocks, stages = schedule_to_stages(_fast_schedule(opts["stages"])[0])
        else:
            blocks = stages = opts["stages"]
        cfg = dgp.DGPConfig().updated(opts)
        assert len(blocks) == len(stages) >= 2 and cfg.n_candidates == 500
        if "method" in f.read_text():  # restoration presets are `python -m inversion` configs
            init = parser.instantiate_classes(parser.parse_args(["--config", str(f), "--prior", "x:y"]))
            assert init.method == "dgp" and init.options["stages"] == opts["stages"]
    # DGP's threshold 5e-3 is on [-1, 1] images; our MSE is on [0, 1] images: 5e-3 / 4
    assert dgp.load_preset("defence")["stop_mse"] == pytest.approx(1.25e-3)


def test_preset_fills_options_left_at_their_defaults():
    from inversion.dgp.fit import resolve_config

    cfg = resolve_config(dgp.DGPConfig(preset="sr_mse", n_candidates=7))
    # DGP's SR/MSE_biased script's last MSE weight, on DGP's [-1, 1] MSE (the preset held 4 x 100 = 400 when
    # the weight was on our [0, 1] MSE)
    assert cfg.n_candidates == 7 and cfg.bn_to_in and cfg.stages[-1]["weights"]["mse"] == 100.0


def test_dgp_bad_inputs_raise_clear_errors():
    from lcm.toy import tiny_prior

    prior = tiny()
    x = images(prior, 1)
    op = Denoising(0.0)
    with pytest.raises(ValueError, match="no critic"):
        restore(x[:, :, :16, :16], op, tiny_prior(), "dgp", stages=SCHED)
    with pytest.raises(FileNotFoundError, match="preset"):
        restore(x, op, prior, "dgp", preset="no_such_preset")
    with pytest.raises(ValueError, match="unknown restore"):
        restore(x, op, prior, "dgp", n_candidatez=3)
    with pytest.raises(ValueError, match="init_metric"):
        restore(x, op, prior, "dgp", init_metric="lpips", **FAST)
    with pytest.raises(ValueError, match="sequential"):
        restore(x, op, prior, "dgp", bn_to_in=True, batching="vmap", **FAST)
    with pytest.raises(ValueError, match="n_candidates"):
        candidate_pool(prior, 0, 0)
    with pytest.raises(ValueError, match="one seed per image"):
        select_latents(prior, op, x, MeasurementMSE(), [0, 1])
    g = prior.generator
    z = prior.sample_latent(1)[0]
    other = tiny()
    swap_batchnorm_for_instancenorm(other.generator, z[None])
    with pytest.raises(ValueError, match="structure"):
        M.morph(prior, g, z, other.generator, z, [0.5])
    with pytest.raises(ValueError, match="class-conditional"):
        M.category_transfer(prior, g, z)
    with pytest.raises(ValueError, match="ONE latent"):
        M.jitter(prior, g, z[None])


# -- faithfulness to DGP's run() and eq. 3 (issue 15) ----------------------------------------------------
def _nanmin(h: torch.Tensor) -> torch.Tensor:
    return torch.where(h.isnan(), torch.full_like(h, float("inf")), h).min(0).values


def test_dgp_returns_the_last_iterate_and_the_mse_stop_ends_only_its_stage():
    prior = tiny()
    x = images(prior, 2)
    op = Denoising(0.0)
    two = [
        {"blocks": "all", "iterations": 20, "latent_lr": 0.05, "generator_lr": 3e-3, "weights": {"mse": 1.0}},
        # a last stage with far too large steps: the objective rises, so the best iterate is earlier
        {"blocks": "all", "iterations": 6, "latent_lr": 1.0, "generator_lr": 0.3, "weights": {"mse": 1.0}},
    ]
    cfg = dgp.DGPConfig(stages=two, n_candidates=8, candidate_batch=8, variant="fast")  # keep: best
    out = dgp.fit_dgp(prior, op, x, seeds=[0, 1], cfg=cfg).fit
    last = out.history[-1]
    assert (_nanmin(out.history) < last).all()  # the final iterate is not the best one here
    torch.testing.assert_close(out.objective, last)  # DGP keeps its final x
    best = dgp.fit_dgp(prior, op, x, seeds=[0, 1], cfg=cfg.updated({"keep": "best"})).fit
    torch.testing.assert_close(best.objective, _nanmin(best.history[20:]))
    # stop_mse ends the current stage only: the second stage still runs (DGP run(): break)
    thr = float(out.history[5].max())
    first_stops = [{**two[0], "stop_mse": thr}, two[1]]
    stopped = dgp.fit_dgp(prior, op, x, seeds=[0, 1], cfg=cfg.updated({"stages": first_stops})).fit
    rows = stopped.history.shape[0]
    assert rows < 20 + 6 + 1  # the first stage ended early for every image ...
    assert torch.isfinite(stopped.history[-7:]).all()  # ... and every image ran the whole second stage


def test_critic_feature_distance_follows_eq3_summed_l1_norms():
    prior = tiny()
    x, y = images(prior, 2, seed=1), images(prior, 2, seed=2)
    fa, fb = prior.critic.features(x), prior.critic.features(y)
    sizes = [f[0].numel() for f in fa]
    assert len(set(sizes)) > 1  # blocks of different sizes: averaging each block would reweight them
    paper = CriticFeatureLoss(prior.critic, prior.image_shape)  # default: DGP eq. 3
    eq3 = sum((a - b).abs().flatten(1).sum(1) for a, b in zip(fa, fb, strict=True))
    torch.testing.assert_close(paper.distance(fa, fb), eq3 * len(sizes) / sum(sizes))  # eq. 3 x constant
    code = CriticFeatureLoss(prior.critic, prior.image_shape, reduction="block_mean")
    released = sum((a - b).abs().flatten(1).mean(1) for a, b in zip(fa, fb, strict=True))
    torch.testing.assert_close(code.distance(fa, fb), released)
    assert not torch.allclose(paper.distance(fa, fb), released)
    with pytest.raises(ValueError, match="reduction"):
        CriticFeatureLoss(prior.critic, prior.image_shape, reduction="avg")


def test_manipulate_without_config_fits_with_table_11_and_rejects_too_many_blocks(monkeypatch, tmp_path):
    from datamodules.io.images import save_png
    from inversion.dgp import fit as dgp_method
    from inversion.dgp import manipulation_cli as manipulate

    folder = tmp_path / "in"
    for i, img in enumerate(images(tiny(), 1)):
        save_png(img, folder / f"{i}.png")

    seen = {}

    class Stop(Exception):
        pass

    def fake_fit(prior, operator, x, seeds, labels, cfg):
        seen["cfg"] = cfg
        raise Stop

    monkeypatch.setattr(dgp_method, "fit_dgp", fake_fit)
    with pytest.raises(Stop):
        manipulate.jitter("tests.inversion.test_dgp:tiny", str(folder), 0)
    assert seen["cfg"].stages == dgp.load_preset("jitter")["stages"]  # DGP Table 11, not Table 9
    assert seen["cfg"].stages != dgp.DEFAULT_STAGES
    deep = [{"blocks": 9, "iterations": 2, "weights": {"critic": 1.0}}]
    with pytest.raises(ValueError, match="9 blocks.*4 blocks"):
        manipulate.jitter("tests.inversion.test_dgp:tiny", str(folder), 0, options={"stages": deep})
