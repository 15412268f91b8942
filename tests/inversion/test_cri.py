"""CRI (inversion.cri): centroid choice, regularised offset, pivotal tuning with locality, cache,
class inference and bad-input errors. Tiny networks, CPU, one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from inversion import methods
from inversion.cri import (
    CRIConfig,
    FeatureDistance,
    OffsetPrior,
    clear_memory_cache,
    cluster_centroids,
    make_distance,
    measurement_view,
    prior_fingerprint,
    resolve_labels,
    sample_codes,
    select_centroids,
)
from inversion.cri.classifier import CRIClassifier, infer_labels, load_classifier, save_classifier
from inversion.engine import run_stages
from inversion.operators import CompressedSensing, Inpainting, SuperResolution
from inversion.stages import Stage
from lcm.networks import Generator, MappingNetwork
from lcm.prior import Prior
from lcm.toy import blob_images, fit_toy_prior, tiny_prior


@pytest.fixture(scope="module")
def toy():
    prior, _ = fit_toy_prior(steps=200, seed=0)
    x = blob_images(4, generator=torch.Generator().manual_seed(77))
    return prior, x


def cond_prior(seed: int = 0) -> Prior:
    """A tiny class-conditional DCGAN (3 classes) with a 2-layer mapping network."""
    torch.manual_seed(seed)
    gen = Generator((8,), out_channels=1, resolution=8, width=8, num_classes=3).eval()
    mapping = MappingNetwork(8, 8, 2, num_classes=3).eval()
    return Prior(gen, "gaussian", (8,), (1, 8, 8), mapping=mapping, num_classes=3, kind="toy_cond")


class PerBlockGenerator(nn.Module):
    """A toy generator that takes one code per block (W+): block k adds a linear map of w_k."""

    num_ws = 2

    def __init__(self, d: int = 4):
        super().__init__()
        self.inp = nn.ModuleList([nn.Linear(d, 16 * 16), nn.Linear(d, 16 * 16)])
        self.blocks = nn.ModuleList([nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1)])

    def forward(self, w, labels=None):
        if w.dim() == 2:
            w = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        h = torch.zeros(w.shape[0], 1, 16, 16)
        for k, block in enumerate(self.blocks):
            h = torch.tanh(block(h) + self.inp[k](w[:, k]).view(-1, 1, 16, 16))
        return h


# -- start point -----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["inpaint_per_image", "inpaint_given_masks", "sr"])
def test_chosen_centroid_is_nearest_degraded(task):
    prior = cond_prior()
    labels = torch.tensor([0, 2, 2, 1])
    cents = {c: cluster_centroids(prior, 6, 300, c, seed=1) for c in (0, 1, 2)}
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    if task == "sr":
        op = SuperResolution(factor=2, kernel="box")
    elif task == "inpaint_given_masks":  # one given mask per batch row (as CSGM's restarts set them)
        op = Inpainting()
        op.set_mask((torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(9)) > 0.5).float())
    else:
        op = Inpainting(mask_kind="boxes", box_size=0.4, num_boxes=2, per_image=True, seed=5)
    y = op.A(x)
    torch.manual_seed(0)
    feat = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    dist = FeatureDistance(lambda img: [feat(img), img])
    with torch.no_grad():
        start, index, d = select_centroids(prior, op, y, cents, labels, dist, degrade=True)
        # brute force: image i's own operator row, each centroid of its class, one at a time
        masks = op.mask_for(x) if task != "sr" else None
        for i in range(4):
            c = int(labels[i])
            brute = []
            for j in range(6):
                img = prior.synthesize(cents[c][j : j + 1], labels[i : i + 1])
                a = img * masks[i : i + 1] if masks is not None else op.A(img)
                brute.append(float(dist(measurement_view(a, (8, 8)), measurement_view(y[i : i + 1], (8, 8)))))
            brute = torch.tensor(brute)
            assert torch.allclose(d[i], brute, rtol=1e-4, atol=1e-6)
            assert int(index[i]) == int(brute.argmin())
            assert torch.equal(start[i], cents[c][int(brute.argmin())])


def test_centroid_choice_uses_degraded_candidates():
    """A clean target that matches centroid A only in the observed pixels picks A, not the centroid
    whose undegraded image is nearer overall."""
    prior = tiny_prior(seed=2)
    cents = {None: cluster_centroids(prior, 8, 400, None, seed=0)}
    imgs = prior.synthesize(cents[None])
    op = Inpainting(mask_kind="center", box_size=0.5)
    mask = op.mask_for(imgs[:1])
    # target: centroid 0 outside the hole, centroid 1 inside it
    x = imgs[:1] * mask + imgs[1:2] * (1 - mask)
    _, index, _ = select_centroids(prior, op, op.A(x), cents, None, make_distance("mse", prior), degrade=True)
    assert int(index[0]) == 0


@pytest.mark.parametrize("task", ["inpaint", "sr"])
def test_default_centroid_choice_compares_the_input_with_clean_centre_images(task):
    """CRI Algorithm 1: ``VGG(G.synthesis(centroids))`` against ``VGG(Id)``, the centre images undegraded."""
    prior = cond_prior()
    labels = torch.tensor([0, 2])
    cents = {c: cluster_centroids(prior, 6, 300, c, seed=1) for c in (0, 2)}
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    op = (
        SuperResolution(factor=2, kernel="box")
        if task == "sr"
        else Inpainting(mask_kind="center", box_size=0.5)
    )
    y = op.A(x)
    dist = make_distance("mse", prior)
    with torch.no_grad():
        _, index, d = select_centroids(prior, op, y, cents, labels, dist)
        _, _, d_deg = select_centroids(prior, op, y, cents, labels, dist, degrade=True)
        for i in range(2):
            c = int(labels[i])
            clean = prior.synthesize(cents[c], labels[i : i + 1].expand(6))
            brute = torch.stack(
                [dist(clean[j : j + 1], measurement_view(y[i : i + 1], (8, 8)))[0] for j in range(6)]
            )
            assert torch.allclose(d[i], brute, rtol=1e-4, atol=1e-6)
            assert int(index[i]) == int(brute.argmin())
    assert not torch.allclose(d, d_deg)  # the two views differ


def test_cri_space_defaults_to_w_plus_for_mapping_network_priors():
    import lcm
    from inversion.cri.fit import default_space

    data = Path(__file__).resolve().parents[1] / "data"
    assert default_space(lcm.load_prior(data / "stylegan2ada_tiny.pkl")) == "w+"
    assert default_space(tiny_prior()) == "w"


# -- regularised offset --------------------------------------------------------------------------
def test_offset_starts_at_zero_and_regulariser_pulls_back(toy):
    prior, x = toy
    op = SuperResolution(factor=2, kernel="box")
    y = op.A(x)
    start = cluster_centroids(prior, 4, 400, None, seed=0)[:1].repeat(4, 1)
    zeros = torch.zeros(4, 8)
    norms = {}
    for lam in (0.0, 0.05):
        off = OffsetPrior(prior, start, "l2")
        assert torch.equal(off.code(zeros), start)  # eq. 4 at w_off = 0: the centroid itself
        stage = Stage(150, latent_lr=0.05, weights={"mse": 1.0, "latent_prior": lam})
        fit = run_stages(off, op, y, zeros, [stage])
        with torch.no_grad():
            mse0 = (op.A(prior.synthesize(start)) - y).pow(2).flatten(1).mean(1)
        assert torch.allclose(fit.history[0], mse0, rtol=1e-5)  # first step at w_off = 0
        norms[lam] = fit.latent.norm(dim=1)
    assert (norms[0.0] > 0.1).all()
    assert (norms[0.05] < 0.8 * norms[0.0]).all()


def test_offset_regularisers():
    prior = tiny_prior()
    start = torch.randn(2, 8)
    w = torch.tensor([[3.0, -4.0] + [0.0] * 6, [1.0] * 8])
    assert torch.allclose(OffsetPrior(prior, start, "l2").latent_penalty(w), torch.tensor([5.0, 8**0.5]))
    assert torch.allclose(OffsetPrior(prior, start, "l1").latent_penalty(w), torch.tensor([7.0, 8.0]))
    assert torch.equal(OffsetPrior(prior, start, "none").latent_penalty(w), torch.zeros(2))
    # a pure regulariser stage pulls a non-zero offset back towards zero
    off = OffsetPrior(prior, start, "l2")
    fit = run_stages(
        off,
        Inpainting(),
        torch.zeros(2, 1, 16, 16),
        w,
        [Stage(60, latent_lr=0.1, weights={"latent_prior": 1})],
    )
    assert (fit.latent.norm(dim=1) < 0.3 * w.norm(dim=1)).all()


def test_w_plus_offsets_per_block():
    torch.manual_seed(0)
    gen = PerBlockGenerator().eval()
    prior = Prior(gen, "gaussian", (4,), (1, 16, 16), kind="perblock")
    start = torch.zeros(2, 4)
    off = OffsetPrior(prior, start, "l2", space="w+")
    assert off.latent_shape == (2, 4)
    x = blob_images(2, generator=torch.Generator().manual_seed(1))
    op = Inpainting(box_size=0.3)
    fit = run_stages(off, op, op.A(x), torch.zeros(2, 2, 4), [Stage(30, latent_lr=0.05)])
    assert not torch.allclose(fit.latent[:, 0], fit.latent[:, 1])  # one offset per block
    with pytest.raises(ValueError, match="space='w'"):
        OffsetPrior(tiny_prior(), start.repeat(1, 2), space="w+")


# -- pivotal tuning --------------------------------------------------------------------------------
def test_locality_keeps_random_codes_while_pivot_improves(toy):
    prior, x = toy
    op = Inpainting(mask_kind="center", box_size=0.4)
    y = op.A(x)
    opts = dict(
        distance="mse",
        n_clusters=4,
        n_samples=400,
        offset_steps=40,
        tune_steps=80,
        tune_lr=5e-3,
        locality_alpha=0.5,
    )
    runs = {
        lam: methods.restore(y, op, prior, "cri", seed=0, lambda_locality=lam, **opts) for lam in (0.0, 5.0)
    }
    assert torch.allclose(runs[0.0].latent, runs[5.0].latent)  # same pivot (offset stage unchanged)
    pivot = runs[0.0].latent
    with torch.no_grad():
        before = (op.A(prior.synthesize(pivot)) - y).pow(2).flatten(1).mean(1)
        g = torch.Generator().manual_seed(123)
        w_rand = prior.sample_latent(16, generator=g)
        drift = {}
        for lam, r in runs.items():
            assert (r.measurement_mse < before).all()  # the pivot's reconstruction improves
            d = []
            for i, gen in enumerate(r.generators):
                w_r = pivot[i : i + 1] + 0.5 * (w_rand - pivot[i : i + 1])
                d.append((gen(w_r) - prior.generator(w_r)).pow(2).mean())
            drift[lam] = torch.stack(d)
    assert drift[5.0].mean() < 0.5 * drift[0.0].mean()
    assert runs[5.0].measurement_mse.mean() < before.mean()


def test_restore_cri_end_to_end_and_registry(toy):
    prior, x = toy
    assert "cri" in methods.available_methods() and "cri_bp" in methods.available_methods()
    op = SuperResolution(factor=2, kernel="box")
    y = op.A(x)
    opts = dict(distance="mse", n_clusters=3, n_samples=300, offset_steps=10, tune_steps=5)
    a = methods.restore(y, op, prior, "cri", seed=0, x_true=x, **opts)
    b = methods.restore(y, op, prior, "cri", seed=0, x_true=x, **opts)
    assert a.images.shape == x.shape and a.history.shape == (10 + 1 + 5 + 1, 4)
    assert torch.equal(a.images, b.images)  # repeatable
    assert a.config["n_clusters"] == 3 and len(a.generators) == 4


# -- clustering cache -----------------------------------------------------------------------------
def test_cluster_cache_hits_and_keys(tmp_path):
    prior = cond_prior(seed=4)
    clear_memory_cache()
    a = cluster_centroids(prior, 5, 300, 1, seed=2, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and prior_fingerprint(prior) in files[0].name
    assert torch.equal(cluster_centroids(prior, 5, 300, 1, seed=2, cache_dir=tmp_path), a)  # memory hit
    clear_memory_cache()
    assert torch.equal(cluster_centroids(prior, 5, 300, 1, seed=2, cache_dir=tmp_path), a)  # disk hit
    assert not list(tmp_path.glob("*.tmp"))
    # N = 1 clusters the same samples into their mean (CRI Fig. 5: one sample set for every N)
    one = cluster_centroids(prior, 1, 300, 1, seed=2)
    assert torch.allclose(one[0], sample_codes(prior, 300, 1, seed=2).mean(0), atol=1e-5)
    # another class, or changed weights, never reuse these centroids
    assert not torch.allclose(cluster_centroids(prior, 5, 300, 0, seed=2), a)
    fp = prior_fingerprint(prior)
    with torch.no_grad():
        prior.mapping.net[0].weight.add_(0.1)
    assert prior_fingerprint(prior) != fp
    assert not torch.allclose(cluster_centroids(prior, 5, 300, 1, seed=2, cache_dir=tmp_path), a)
    assert len(list(tmp_path.glob("*.pt"))) == 2


# -- class inference -------------------------------------------------------------------------------
def _bars(n: int, seed: int):
    """Class 0: a bright top half, class 1: bright bottom half, class 2: bright left half; noisy."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 8, 8, generator=g)
    x[y == 0, :, :4] += 0.6
    x[y == 1, :, 4:] += 0.6
    x[y == 2, :, :, :4] += 0.6
    return x.clamp(0, 1), y


def test_classifier_trains_on_separable_set_and_infers_labels(tmp_path):
    torch.manual_seed(0)
    x, y = _bars(256, 0)
    items = [{"image": x[i], "label": y[i], "index": torch.tensor(i)} for i in range(len(x))]
    model = CRIClassifier(
        channels=1,
        resolution=8,
        num_classes=3,
        model_kwargs={"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2},
        lr=5e-3,
        augment=False,
    )
    trainer = pl.Trainer(
        max_steps=150,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(items, batch_size=32, shuffle=True))
    xt, yt = _bars(128, 1)
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean()
    assert acc > 0.9, float(acc)
    path = tmp_path / "clf.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_classifier(path)
    with torch.no_grad():
        assert torch.allclose(loaded(xt), model(xt), atol=1e-6)
    assert torch.equal(infer_labels(path, xt, 3), model(xt).argmax(1))
    # a conditional prior without labels takes them from the classifier
    prior = cond_prior()
    op = Inpainting(box_size=0.25)
    got = resolve_labels(prior, op.A(xt[:5]), None, str(path))
    assert torch.equal(got, infer_labels(loaded, op.A(xt[:5])))
    with pytest.raises(ValueError, match="classes"):
        infer_labels(loaded, xt, num_classes=10)


def test_saved_classifier_loads_with_the_same_weights_and_arguments(tmp_path):
    """``save_classifier`` (a classifier trained outside the CLI) writes what ``load_classifier`` reads."""
    torch.manual_seed(0)
    kw = {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}
    model = CRIClassifier(channels=1, resolution=8, num_classes=3, model_kwargs=kw, augment=False).eval()
    path = save_classifier(model, tmp_path / "sub" / "clf.ckpt")
    assert path == tmp_path / "sub" / "clf.ckpt" and not list(path.parent.glob(".*.tmp"))
    loaded = load_classifier(path)
    assert loaded.hparams["num_classes"] == 3 and loaded.hparams["model_kwargs"] == kw
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(TypeError, match="CRIClassifier"):
        save_classifier(torch.nn.Linear(2, 2), tmp_path / "x.ckpt")


# -- presets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["inpaint", "sr", "colorize", "methods"])
def test_presets_parse_and_hold_valid_options(name):
    from pathlib import Path

    from inversion.cli import build_parser

    root = Path(__file__).resolve().parents[2] / "configs" / "inversion"
    if name == "methods":  # a method preset goes with a task preset
        configs = [root / "inpaint_center.yaml", root / "methods" / "cri.yaml"]
    else:
        configs = [root / "cri" / f"{name}.yaml"]
    argv = [a for c in configs for a in ("--config", str(c))]
    cfg = build_parser().parse_args([*argv, "--prior", "lcm.toy:tiny_prior"])
    assert cfg.method == "cri"
    opts = CRIConfig().updated(cfg.options)  # every option is a CRIConfig field
    opts.check()
    assert opts.n_clusters == 10 and opts.regularizer == "l2"


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs(tmp_path, toy):
    prior, x = toy
    op = Inpainting()
    y = op.A(x)
    fast = dict(distance="mse", n_clusters=2, n_samples=50, offset_steps=2, tune_steps=0)
    with pytest.raises(ValueError, match="regularizer"):
        methods.restore(y, op, prior, "cri", **{**fast, "regularizer": "l3"})
    with pytest.raises(ValueError, match="space"):
        methods.restore(y, op, prior, "cri", **{**fast, "space": "z"})
    with pytest.raises(ValueError, match="space='w'"):
        methods.restore(y, op, prior, "cri", **{**fast, "space": "w+"})
    with pytest.raises(ValueError, match="unknown restore"):
        methods.restore(y, op, prior, "cri", n_clusterz=3)
    with pytest.raises(ValueError, match="n_samples"):
        cluster_centroids(prior, 10, 5)
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_centroids(prior, 0, 5)
    with pytest.raises(ValueError, match="unconditional"):
        cluster_centroids(prior, 2, 50, label=1)
    with pytest.raises(ValueError, match="critic"):
        make_distance("critic", prior)
    with pytest.raises(ValueError, match="distance='mse'"):
        methods.restore(
            CompressedSensing(ratio=0.3)(x),
            CompressedSensing(ratio=0.3),
            prior,
            "cri",
            **{**fast, "distance": "offline"},
        )
    cp = cond_prior()
    yc = Inpainting().A(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="classifier="):
        methods.restore(yc, Inpainting(), cp, "cri", **fast)
    with pytest.raises(ValueError, match="class indices"):
        methods.restore(yc, Inpainting(), cp, "cri", labels=torch.tensor([0, 7]), **fast)
    with pytest.raises(FileNotFoundError, match="inversion.cri.classifier fit"):
        load_classifier(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="not a CRI classifier"):
        load_classifier(tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="num_classes"):
        CRIClassifier(num_classes=1)
    with pytest.raises(ValueError, match="locality_alpha"):
        CRIConfig(locality_alpha=2.0).check()


def test_classifier_config_instantiates():
    from pathlib import Path

    from inversion.cri.classifier import cli_main

    path = Path(__file__).resolve().parents[2] / "configs" / "inversion" / "cri" / "classifier.yaml"
    cli = cli_main(["-c", str(path)], run=False)
    assert isinstance(cli.model, CRIClassifier) and cli.model.num_classes == 10
    assert cli.model.channels == 1 and cli.model.resolution == 32
    assert not any(p.numel() == 0 for p in cli.model.parameters())


# -- issue 15: composite masks, per-image locality seeding, LPIPS routing ------------------------------
def test_candidate_operator_gives_each_candidate_its_image_mask_inside_a_composite():
    from inversion.cri.fit import _candidate_operator
    from inversion.operators import Colorization, Composite

    op = Composite([Colorization(), Inpainting("boxes", box_size=3, num_boxes=2, per_image=True, seed=2)])
    n, k = 3, 4
    imgs = torch.rand(n * k, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cand = _candidate_operator(op, n, k, (3, 8, 8), imgs).A(imgs)
    for j in range(n * k):
        i = j // k  # candidate j belongs to image i: measured with image i's mask
        placed = torch.zeros(n, 3, 8, 8)
        placed[i] = imgs[j]
        torch.testing.assert_close(cand[j], op.A(placed)[i])


def test_cri_result_of_an_image_does_not_depend_on_its_batch(toy):
    prior, x = toy
    op = Inpainting(mask_kind="center", box_size=0.4)
    y = op.A(x[:2])
    opts = dict(
        distance="mse", n_clusters=3, n_samples=300, offset_steps=8, tune_steps=8, tune_lr=5e-3,
        lambda_locality=5.0,
    )  # fmt: skip
    alone = methods.restore(y[1:2], op, prior, "cri", seed=1, **opts)  # image 1 is seeded with seed + 1
    both = methods.restore(y, op, prior, "cri", seed=0, **opts)
    torch.testing.assert_close(both.images[1:2], alone.images, atol=1e-5, rtol=0)
    # the tuning stage keeps its last iterate: the random locality draw never picks the kept result
    assert torch.isfinite(both.history[-1]).all()


def test_lpips_distance_routes_to_inversion_metrics_and_fails_clearly_without_weights(tmp_path, monkeypatch):
    from inversion.exploration import EGlass
    from inversion.metrics import LPIPS

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub: no LPIPS trunk weights
    prior = tiny_prior(seed=0)
    dist = make_distance("lpips", prior)
    assert isinstance(dist.lpips, LPIPS)
    x = torch.rand(2, *prior.image_shape)
    with pytest.raises(FileNotFoundError, match="LPIPS"):
        dist(x, x)
    assert CRIConfig(distance="lpips").check() is None
    eg = EGlass(perceptual="lpips")
    assert isinstance(eg.perceptual, LPIPS)
    with pytest.raises(FileNotFoundError, match="LPIPS"):
        eg.perceptual(x, x)
