"""W / W+ latents (and optimised noise inputs) for every method on the tiny StyleGAN2-ADA fixtures."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import lcm
from inversion import cli, methods
from inversion.exploration import explore
from inversion.operators import SuperResolution
from lcm.spaces import code_space_prior

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def tiny():
    prior = lcm.load_prior(DATA / "stylegan2ada_tiny.pkl")
    with torch.no_grad():
        x = prior(prior.sample_latent(2, torch.Generator().manual_seed(3))).clamp(0, 1)
    return prior, x


def test_code_space_prior_shapes_and_const_noise_packing(tiny):
    prior, _ = tiny
    g = prior.generator
    w_prior = code_space_prior(prior, "w")
    wp = code_space_prior(prior, "w+")
    wn = code_space_prior(prior, "w+", optimize_noise=True)
    assert w_prior.latent_shape == (64,) and wp.latent_shape == (8, 64)
    assert wn.latent_shape == (8 * 64 + g.noise_numel,) and g.noise_numel == sum(
        h * w for h, w in g.noise_shapes
    )
    gen = torch.Generator().manual_seed(0)
    w = w_prior.sample_latent(3, gen)
    with torch.no_grad():
        ref = prior.synthesize(w)
        # W broadcast, W+ copies and W+ with the stored noise packed in give the same image
        assert torch.allclose(wp(wp.lift(w)), ref, atol=1e-6)
        assert torch.allclose(wn(wn.lift(w)), ref, atol=1e-6)
        # other noise changes the image
        packed = wn.lift(w).clone()
        packed[:, 8 * 64 :] = torch.randn(3, g.noise_numel, generator=gen)
        assert (wn(packed) - ref).abs().max() > 1e-3
    with pytest.raises(ValueError, match="neither W"):
        g(torch.zeros(1, 65))
    from lcm.toy import tiny_prior

    with pytest.raises(ValueError, match="mapping network"):
        code_space_prior(tiny_prior(), "w")
    with pytest.raises(ValueError, match="space must be"):
        code_space_prior(prior, "s")


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("csgm", {"space": "w", "csgm_steps": 4, "restarts": 2}),
        ("csgm", {"space": "w+", "csgm_steps": 4, "restarts": 1, "optimize_noise": True}),
        ("iagan", {"space": "w+", "csgm_steps": 3, "restarts": 1, "iagan_steps": 3}),
        (
            "dgp",
            {
                "space": "w+",
                "n_candidates": 4,
                "candidate_batch": 4,
                "stages": [
                    {"blocks": 1, "iterations": 3, "weights": {"critic": 1, "mse": 4}},
                    {"blocks": 4, "iterations": 3, "weights": {"critic": 1, "mse": 4}},
                ],
            },
        ),
        ("cri", {"space": "w", "n_clusters": 2, "n_samples": 16, "offset_steps": 4, "tune_steps": 2}),
        ("cri", {"space": "w+", "n_clusters": 2, "n_samples": 16, "offset_steps": 4, "tune_steps": 2}),
        (
            "cri",
            {"space": "w+", "optimize_noise": True, "n_clusters": 2, "n_samples": 16, "offset_steps": 4,
             "tune_steps": 0},
        ),
    ],
)  # fmt: skip
def test_methods_run_in_w_and_w_plus(tiny, method, opts):
    prior, x = tiny
    op = SuperResolution(factor=2, kernel="box")
    y = op(x)
    if method == "cri":
        opts = {"distance": "critic", **opts}
    r = methods.restore(y, op, prior, method=method, x_true=x, **opts)
    assert r.images.shape == x.shape and torch.isfinite(r.images).all()
    per = {"w": (64,), "w+": (8, 64)}[opts["space"]]
    if opts.get("optimize_noise"):
        per = (8 * 64 + prior.generator.noise_numel,)
    assert tuple(r.latent.shape) == (2, *per)
    h = r.history[:, 0]
    h = h[torch.isfinite(h)]
    assert h.min() < h[0]  # the fit moved the latent (and lowered the objective)


def test_latent_space_is_checked(tiny):
    prior, x = tiny
    op = SuperResolution(factor=2, kernel="box")
    with pytest.raises(ValueError, match="space must be"):
        methods.restore(op(x), op, prior, method="csgm", space="s", csgm_steps=1)
    with pytest.raises(ValueError, match="optimize_noise"):
        methods.restore(op(x), op, prior, method="csgm", optimize_noise=True, csgm_steps=1)


@pytest.mark.parametrize("space", ["w", "w+"])
def test_explore_in_w_and_w_plus(tiny, space):
    prior, x = tiny
    pw = code_space_prior(prior, space)
    op = SuperResolution(factor=4, kernel="box")
    z0 = pw.sample_latent(1, torch.Generator().manual_seed(1))
    res = explore(pw, op, z0, ks=(1, 2), etas=(0.5,), top_y=8)
    assert res.latents.shape == (4, *pw.latent_shape) and res.images.shape == (4, 3, 32, 32)
    assert torch.isfinite(res.residuals).all()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    src = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        img = Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((64, 64), Image.BICUBIC)
        img.save(src / f"{name}.png")
    return src


@pytest.mark.parametrize(
    ("fixture", "method", "options"),
    [
        ("stylegan2ada_cond64_tiny", "csgm", "{space: w+, csgm_steps: 3, restarts: 1}"),
        ("stylegan2ada_cond64_tiny", "iagan", "{space: w, csgm_steps: 2, restarts: 1, iagan_steps: 2}"),
        ("stylegan2ada_cond64_tiny", "dgp",
         "{space: w+, n_candidates: 2, candidate_batch: 2, stages: [{blocks: 2, iterations: 2}]}"),
        ("stylegan2ada_tiny", "cri",
         "{space: w+, n_clusters: 2, n_samples: 8, offset_steps: 2, tune_steps: 1, distance: mse}"),
    ],
)  # fmt: skip
def test_cli_restores_photos_with_a_snapshot(photos, tmp_path, fixture, method, options):
    cfg = tmp_path / "task.yaml"
    cfg.write_text(
        "task: sr2\noperator:\n  class_path: inversion.operators.SuperResolution\n"
        f"  init_args: {{factor: 2, kernel: box}}\noptions: {options}\n"
    )
    out = tmp_path / "out"
    cli.main([
        "--config", str(cfg), "--prior", str(DATA / f"{fixture}.pkl"), "--input", str(photos),
        "--output", str(out), "--method", method, "--progress", "false", "--num_threads", "1",
    ])  # fmt: skip
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["name"] for r in rows) == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert all(float(r["psnr"]) > 0 for r in rows)
