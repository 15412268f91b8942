"""BigGAN as DGP uses it, against tensors produced by the authors' code (tests/data/biggan_dgp_*)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import lcm
from lcm.architectures import biggan

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def ref():
    return torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)


@pytest.fixture()
def files(ref, tmp_path):
    g, d = tmp_path / "G_ema.pth", tmp_path / "D.pth"
    torch.save(ref["G"], g)
    torch.save(ref["D"], d)
    return g, d


def test_tiny_biggan_reproduces_authors_outputs(ref, files):
    prior = lcm.load_prior(files[0], critic=files[1])
    assert prior.num_classes == 10 and prior.image_shape == (3, 128, 128) and prior.latent_shape == (120,)
    with torch.no_grad():
        x = prior(ref["z"], labels=ref["y"])
        assert (x * 2 - 1 - ref["image"]).abs().max() <= 1e-4
        feats = prior.critic.features((ref["image"] + 1) / 2)
        assert len(feats) == len(ref["d_features"]) == 8
        for got, want in zip(feats, ref["d_features"], strict=True):
            assert got.shape == want.shape
            assert (got - want).abs().max() <= 1e-4
        out, _ = prior.critic.net.logits(ref["image"], ref["y"])
        assert (out - ref["d_out"]).abs().max() <= 1e-4
    # eval mode leaves the stored singular vectors untouched
    assert torch.equal(prior.generator.blocks[0][0].u0, ref["G"]["linear.u0"])


def test_biggan_state_dict_round_trip(ref):
    gen = biggan.BigGANPriorGenerator(biggan.build_generator(ref["G"]))
    out = gen.biggan_state_dict()
    assert set(out) == set(ref["G"]) and all(torch.equal(out[k], ref["G"][k]) for k in out)


@pytest.mark.parametrize("res", [128, 256])
def test_released_configurations_match_manifest(res):
    manifest = json.loads((DATA / "biggan_dgp_manifest.json").read_text())
    cfg = biggan.RELEASED[res]
    with torch.device("meta"):
        g = biggan.BigGANGenerator(**cfg)
        d = biggan.BigGANDiscriminator(cfg["ch"], cfg["n_classes"], res, cfg["attention"])
    for name, net in (("G", g), ("D", d)):
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == manifest[f"{name}_{res}"]
    # and the configuration is recovered from the shapes alone
    gs = {k: torch.empty(v, device="meta") for k, v in manifest[f"G_{res}"].items()}
    ds = {k: torch.empty(v, device="meta") for k, v in manifest[f"D_{res}"].items()}
    # (at 256 px the 120-d z splits into 7 chunks of 17: BigGAN-PyTorch's dim_z becomes 119)
    assert biggan.generator_config(gs) == {**cfg, "dim_z": 120 if res == 128 else 119}
    assert g.dim_z == biggan.generator_config(gs)["dim_z"]
    assert biggan.discriminator_config(ds)["resolution"] == res


def test_dgp_parameter_groups(ref):
    gen = biggan.BigGANPriorGenerator(biggan.build_generator(ref["G"]))
    assert len(gen.blocks) == 7  # linear, 5 residual blocks (attention inside the 4th), output layer
    names = [[n for n, _ in b.named_parameters()] for b in gen.blocks]
    assert names[0] == ["0.weight", "0.bias"]
    assert any("gamma" in n for n in names[4]) and names[6][0].startswith("0.0.gain")
    # every parameter but the class embedding sits in exactly one group
    grouped = {id(p) for b in gen.blocks for p in b.parameters()}
    rest = [p for p in gen.parameters() if id(p) not in grouped]
    assert len(rest) == 1 and rest[0] is gen.embedding.weight


def test_strict_loading_lists_missing_and_unexpected(ref, tmp_path):
    state = dict(ref["G"])
    state.pop("blocks.1.0.conv1.u0")
    state["blocks.1.0.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"missing keys: blocks.1.0.conv1.u0.*unexpected keys: blocks.1.0.extra"
    ):
        lcm.load_prior(path)


def test_biggan_pytorch_checkpoint_without_dgp_instance_norm_keys_loads(ref):
    state = {k: v for k, v in ref["G"].items() if ".in1." not in k and ".in2." not in k}
    assert len(state) == len(ref["G"]) - 20
    g = biggan.build_generator(state)
    with torch.no_grad():
        assert (g(ref["z"], g.shared(ref["y"])) - ref["image"]).abs().max() <= 1e-4


def test_missing_and_foreign_files(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        lcm.load_prior(files[0], critic=tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="not a BigGAN discriminator.*it is a generator"):
        lcm.load_prior(files[0], critic=files[0])
    with pytest.raises(ValueError, match="BigGAN discriminator \\(pass it as critic="):
        lcm.load_prior(files[1])
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match="not a BigGAN discriminator"):
        lcm.load_prior(files[0], critic=foreign)


# -- DGP on BigGAN -------------------------------------------------------------------------------
def tiny_biggan():
    """The tiny BigGAN of the fixture as a prior (also a ``module:function`` prior spec for the CLIs)."""
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    return biggan.biggan_prior(biggan.build_generator(ref["G"]), biggan.build_discriminator(ref["D"]))


def _target(prior, n=2, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = prior(prior.sample_latent(n, generator=g), torch.arange(n) % prior.num_classes)
    return (0.8 * x + 0.1).clamp(0, 1)


SCHED = [
    {
        "blocks": 1,
        "iterations": 2,
        "latent_lr": 0.01,
        "generator_lr": 1e-2,
        "weights": {"critic": 1.0, "mse": 1.0},
    },
    {
        "blocks": 2,
        "iterations": 2,
        "latent_lr": 0.01,
        "generator_lr": 1e-2,
        "weights": {"critic": 1.0, "mse": 1.0},
    },
]
FAST = {"stages": SCHED, "n_candidates": 4, "candidate_batch": 4}


@pytest.mark.parametrize("finetune_embedding", [False, True])
def test_dgp_on_biggan_keeps_frozen_groups_bit_identical(finetune_embedding):
    from inversion import dgp
    from inversion.operators import SuperResolution

    prior = tiny_biggan()
    op = SuperResolution(factor=2, kernel="box")
    y = op.A(_target(prior))
    import pytorch_lightning as pl

    class LastIterate(pl.Callback):  # the copies at the end of the fit (fit.generators hold the best)
        def on_train_end(self, trainer, module):
            self.copies = [copy.deepcopy(c) for c in module.copies]

    last = LastIterate()
    # the engine's Lightning callback sees its copies: the fast variant
    cfg = dgp.DGPConfig(**FAST, finetune_embedding=finetune_embedding, variant="fast")
    out = dgp.fit_dgp(prior, op, y, seeds=[0, 1], labels=torch.tensor([3, 7]), cfg=cfg, callbacks=[last])
    shared = prior.generator
    for g, final in zip(out.fit.generators, last.copies, strict=True):
        for k, (best, mine, orig) in enumerate(zip(g.blocks, final.blocks, shared.blocks, strict=True)):
            same = [torch.equal(a, b) for a, b in zip(mine.parameters(), orig.parameters(), strict=True)]
            kept = [torch.equal(a, b) for a, b in zip(best.parameters(), orig.parameters(), strict=True)]
            if k < 2:  # the stages fine-tuned groups 0 and 1 (linear, first residual block)
                assert not all(same), k
            else:
                assert all(same) and all(kept), k
            bufs = [torch.equal(a, b) for a, b in zip(mine.buffers(), orig.buffers(), strict=True)]
            assert all(bufs)  # eval mode: stored u0/sv0 and BN statistics never move
        assert torch.equal(final.embedding.weight, shared.embedding.weight) != finetune_embedding


def test_finetune_embedding_preset_option_for_a_conditional_dcgan():
    from inversion import dgp
    from inversion.operators import Denoising
    from tests.inversion.test_dgp import images, tiny

    prior = tiny(num_classes=3)
    x = images(prior, 1)
    for flag in (False, True):
        cfg = dgp.DGPConfig(**{**FAST, "stages": [dict(SCHED[0], iterations=3)]}, finetune_embedding=flag)
        out = dgp.fit_dgp(prior, Denoising(0.0), x, seeds=[0], labels=torch.tensor([1]), cfg=cfg)
        same = torch.equal(out.fit.generators[0].embedding.weight, prior.generator.embedding.weight)
        assert same != flag
    assert dgp.load_preset("inpainting")["finetune_embedding"] is True  # DGP Table 7


def test_bn_to_in_swap_on_class_conditional_bn_preserves_the_output():
    from callbacks import swap_batchnorm_for_instancenorm

    prior = tiny_biggan()
    gen = prior.generator
    z = prior.sample_latent(1, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([4])
    with torch.no_grad():
        before = gen(z, y)
    g = copy.deepcopy(gen)
    assert swap_batchnorm_for_instancenorm(g, z, y) == 10  # bn1, bn2 of 5 blocks; output BN stays
    with torch.no_grad():
        assert (g(z, y) - before).abs().max() <= 1e-5
    assert not any(isinstance(m, biggan.ClassConditionalBN) for m in g.modules())
    assert swap_batchnorm_for_instancenorm(g, z, y) == 0


def test_w_nll_adds_dgp_latent_term():
    from inversion import dgp
    from inversion.operators import Denoising

    prior = tiny_biggan()
    x = _target(prior, 1)
    sched = [{"blocks": 0, "iterations": 1, "latent_lr": 0.0, "weights": {"mse": 1.0}}]
    runs = {
        w: dgp.fit_dgp(
            prior,
            Denoising(0.0),
            x,
            seeds=[0],
            labels=torch.tensor([0]),
            cfg=dgp.DGPConfig(**{**FAST, "stages": sched}, w_nll=w),
        )
        for w in (0.0, 0.02)
    }
    z0 = runs[0.0].init.latent
    diff = runs[0.02].fit.history[0] - runs[0.0].fit.history[0]
    assert torch.allclose(diff, 0.02 * (z0**2 / 2).mean(1), rtol=1e-4)


# -- every method, manipulation, e-GLASS and the CLI on the tiny BigGAN ---------------------------
FEW = {  # label_candidates: DGP's class pick, which csgm / iagan / latent ask for (dgp, cri pick their own)
    "csgm": {"csgm_steps": 2, "restarts": 1, "label_candidates": 4},
    "iagan": {"csgm_steps": 1, "restarts": 1, "iagan_steps": 2, "label_candidates": 4},
    "latent": {"latent_steps": 2, "label_candidates": 4},
    "dgp": FAST,
    "cri": {"n_clusters": 2, "n_samples": 8, "offset_steps": 2, "tune_steps": 1, "distance": "mse"},
}


@pytest.mark.parametrize("method", [m + bp for m in FEW for bp in ("", "_bp")])
def test_every_method_runs_on_biggan(method):
    import inversion.cri  # noqa: F401 - registers cri
    import inversion.dgp  # noqa: F401 - registers dgp
    from inversion.methods import restore
    from inversion.operators import SuperResolution

    prior = tiny_biggan()
    x = _target(prior, 1)
    op = SuperResolution(factor=2, kernel="box")
    opts = FEW[method.removesuffix("_bp")]
    # the class is unknown (-1): picked as DGP does (CRI infers classes with its own classifier)
    labels = torch.tensor([3 if method.startswith("cri") else -1])
    res = restore(op.A(x), op, prior, method, seed=0, labels=labels, x_true=x, **opts)
    assert res.images.shape == (1, 3, 128, 128) and torch.isfinite(res.images).all()
    assert torch.isfinite(res.metrics["psnr"]).all()


def test_dgp_manipulation_on_biggan():
    from inversion import dgp
    from inversion.dgp import manipulation as M
    from inversion.operators import Inpainting

    prior = tiny_biggan()
    x = _target(prior, 2)
    op = Inpainting(mask_kind="center", box_size=0.4)
    out = dgp.fit_dgp(
        prior, op, op.A(x), seeds=[0, 1], labels=torch.tensor([2, 2]), cfg=dgp.DGPConfig(**FAST)
    )
    g, z, fitted = out.fit.generators, out.fit.latent, out.fit.images
    j = M.jitter(prior, g[0], z[0], sigma=0.0, n=2, label=2)
    assert torch.allclose(j, fitted[:1].expand(2, -1, -1, -1), atol=1e-5)
    m = M.morph(prior, g[0], z[0], g[1], z[1], [1.0, 0.5, 0.0], label=2)
    assert torch.allclose(m[0], fitted[0], atol=1e-5) and torch.allclose(m[2], fitted[1], atol=1e-5)
    t = M.category_transfer(prior, g[0], z[0], classes=[2, 5])
    assert torch.allclose(t[0], fitted[0], atol=1e-5) and not torch.allclose(t[1], t[0], atol=1e-4)


@pytest.mark.slow  # ~15 s: the Hessians' products run double backward through the 128-px generator
def test_eglass_explore_on_biggan():
    from inversion.exploration import explore
    from inversion.operators import Inpainting

    prior = tiny_biggan()
    op = Inpainting(mask_kind="center", box_size=0.4)
    z = prior.sample_latent(1, generator=torch.Generator().manual_seed(0))
    cfg = {"ks": (2,), "etas": (0.5,), "signs": (1,), "top_y": 1, "num_eig": 2, "num_blocks": 2}
    res = explore(prior, op, z, labels=torch.tensor([2]), method="lanczos", hvp_backend="func", **cfg)
    assert res.latents.shape[1:] == (120,) and torch.isfinite(res.latents).all()


@pytest.mark.parametrize("starts", [1, 2])  # one start: a plain copy; several: vmap over stacked weights
def test_restart_fits_finetune_biggan(starts):
    """The IAGAN-style fit of e-GLASS's start and of the restarts fine-tunes a BigGAN copy; its unused
    parameters (DGP's instance-norm weights, for the BN->IN option) get no gradient and stay."""
    from inversion.exploration import Feasibility, fit_solutions
    from inversion.operators import SuperResolution

    prior = tiny_biggan().requires_grad_(False)
    op = SuperResolution(factor=4)
    y = op.A(_target(prior, 1))
    init = prior.sample_latent(starts, generator=torch.Generator().manual_seed(1))
    crit = Feasibility(rel_tol=1e-6)  # never met: every step runs
    fit = fit_solutions(prior, op, y, init, crit, z_steps=1, finetune_steps=2, labels=torch.tensor([1]))
    assert (fit.steps == 3).all() and torch.isfinite(fit.images).all()
    ref = prior.generator.state_dict()
    for gen in fit.generators:
        new = gen.state_dict()
        assert torch.equal(new["blocks.1.0.in1.weight"], ref["blocks.1.0.in1.weight"])
        assert not torch.equal(new["blocks.1.0.conv1.weight"], ref["blocks.1.0.conv1.weight"])


def _photos(folder: Path) -> Path:
    from PIL import Image
    from skimage import data

    folder.mkdir()
    for name in ("astronaut", "coffee"):  # RGB photos, resized by the loader to the prior's 128 px
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.jpg")
    return folder


@pytest.mark.parametrize("method", ["csgm_bp", "iagan", "latent_bp", "cri"])
def test_cli_runs_every_method_on_biggan(files, tmp_path, method):
    from inversion import cli

    src = _photos(tmp_path / "photos")
    (tmp_path / "labels.csv").write_text("astronaut,3\ncoffee.jpg,-1\n")  # by stem or name; -1 = unknown
    if method == "cri":  # CRI infers unknown classes with its own classifier: give both
        (tmp_path / "labels.csv").write_text("astronaut,3\ncoffee.jpg,1\n")
    opts = FEW[method.removesuffix("_bp")]
    out = cli.main(
        [
            "--prior", str(files[0]), "--critic", str(files[1]), "--input", str(src),
            "--labels", str(tmp_path / "labels.csv"), "--output", str(tmp_path / "out"), "--method", method,
            "--operator", "inversion.operators.SuperResolution", "--operator.factor", "4",
            "--options", json.dumps(opts), "--progress", "false", "--device", "cpu",
        ]
    )  # fmt: skip
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and all(f",{method}," in r for r in rows[1:]), rows
    assert not (out / "failures.txt").exists() or not (out / "failures.txt").read_text().strip()


def test_cli_restores_a_folder_of_photos_with_biggan(files, tmp_path):
    from PIL import Image

    from inversion import cli

    src = _photos(tmp_path / "photos")
    (tmp_path / "labels.csv").write_text("file,class\nastronaut.jpg,3\n")  # coffee: unknown, picked
    out = cli.main(
        [
            "--prior", str(files[0]), "--critic", str(files[1]), "--input", str(src),
            "--labels", str(tmp_path / "labels.csv"), "--output", str(tmp_path / "out"),
            "--method", "dgp", "--operator", "inversion.operators.SuperResolution",
            "--operator.factor", "4", "--options", json.dumps(FAST),  # DGP picks classes from n_candidates
            "--progress", "false", "--device", "cpu",
        ]
    )  # fmt: skip
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",dgp," in r for r in rows[1:])
    assert Image.open(out / "restored" / "coffee.jpg.png").size == (128, 128)
    run = json.loads((out / "run.json").read_text())
    assert run["critic"].startswith("sha256:") and run["labels"].startswith("sha256:")
    from inversion.dgp import manipulation_cli as manipulate

    manipulate.main(
        [
            "transfer", "--prior", str(files[0]), "--critic", str(files[1]), "--input", str(src),
            "--labels", str(tmp_path / "labels.csv"), "--classes", "[2, 5]", "--output", str(tmp_path / "tr"),
            "--options", json.dumps(FAST),
        ]
    )  # fmt: skip
    assert Image.open(tmp_path / "tr" / "grid.png").size[0] == 4 * 129 + 1
    bad = tmp_path / "bad.csv"
    bad.write_text("astronaut.jpg,12\n")
    with pytest.raises(ValueError, match="line 1: class 12 outside"):
        cli.read_labels(bad, 10)


def test_candidate_std_scales_the_start_pool():
    from inversion.dgp.init import candidate_pool

    prior = tiny_biggan()
    z1, l1 = candidate_pool(prior, 3, seed=4)
    z3, l3 = candidate_pool(prior, 3, seed=4, std=0.3)
    assert torch.allclose(z3, 0.3 * z1) and torch.equal(l1, l3)
