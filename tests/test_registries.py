"""The method registry (every registered method x every operator, configs, starts) and the architecture
registry of lcm.load_prior (every registered architecture recognises its own checkpoints only)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch

import lcm
from inversion.methods import (
    CSGMConfig,
    available_methods,
    get_method,
    method_config,
    register_method,
    restore,
)
from inversion.methods.common import PriorConfig
from inversion.operators import Blur, Colorization, CompressedSensing, Denoising, Inpainting, SuperResolution
from lcm.architectures import CheckpointFile, available_architectures, get_architecture
from lcm.toy import tiny_prior

DATA = Path(__file__).parent / "data"

# a few steps of every method (a method registered without an entry here fails the sweep)
FEW = {
    "csgm": {"csgm_steps": 2, "restarts": 2},
    "iagan": {"csgm_steps": 2, "restarts": 1, "iagan_steps": 2},
    "latent": {"latent_steps": 2, "restarts": 1},
    "dgp": {
        "stages": [{"blocks": 1, "iterations": 2, "weights": {"critic": 0, "mse": 1}}],
        "n_candidates": 4,
        "candidate_batch": 4,
        "init_metric": "mse",
    },
    "cri": {"n_clusters": 2, "n_samples": 8, "offset_steps": 2, "tune_steps": 1, "distance": "mse"},
    "tv": {"tv_steps": 3},
    "dip": {"dip_steps": 2, "dip_depth": 2, "dip_width": 4, "dip_input_channels": 4},
}

OPERATORS = {
    "denoise": lambda: Denoising(0.05),
    "inpaint": lambda: Inpainting("center"),
    "sr2": lambda: SuperResolution(factor=2, kernel="box"),
    "colorize": lambda: Colorization(),
    "blur": lambda: Blur(),
    "cs": lambda: CompressedSensing(ratio=0.5, kind="gaussian"),
}


@pytest.fixture(scope="module")
def rgb():
    prior = tiny_prior(seed=0, channels=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    return prior, x


def _builtin(method: str) -> bool:
    """Registered by genprior's own modules (tests register their own methods too)."""
    return get_method(method).run.__module__.startswith("inversion.")


def test_every_registered_method_has_a_sweep_entry():
    assert {m.removesuffix("_bp") for m in available_methods() if _builtin(m)} == set(FEW)
    assert all(m + "_bp" in available_methods() for m in FEW)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("method", [m for m in available_methods() if _builtin(m)])
def test_every_method_restores_under_every_operator(rgb, method, operator):
    prior, x = rgb
    op = OPERATORS[operator]()
    torch.manual_seed(0)
    y = op(x)
    spec = get_method(method)
    res = restore(y, op, prior, method, seed=3, x_true=x, **FEW[method.removesuffix("_bp")])
    assert res.images.shape == x.shape and res.method == method
    assert torch.isfinite(res.raw).all() and res.images.min() >= 0 and res.images.max() <= 1
    # the reported measurement error is that of the returned (raw) restoration
    with torch.no_grad():
        want = (op.A(res.raw) - y).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(res.measurement_mse, want)
    assert set(res.config) == {f.name for f in fields(spec.config)}
    assert set(res.metrics) >= {"psnr", "ssim", "residual"}


def test_back_projection_variant_fits_the_measurements_better():
    """``*_bp`` is the method plus IAGAN eq. 10: on a noiseless SR task ``A x_bp = y`` up to rounding with the
    exact A-dagger (``bp="exact"``; the default is IAGAN's bicubic up-sampling, tests/inversion/
    test_back_projection.py)."""
    prior = tiny_prior(seed=0, channels=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    op = SuperResolution(factor=2, kernel="box")
    y = op(x)
    plain = restore(y, op, prior, "csgm", seed=3, **FEW["csgm"])
    bp = restore(y, op, prior, "csgm_bp", seed=3, bp="exact", **FEW["csgm"])
    assert bool((plain.measurement_mse > 1e-4).all()) and float(bp.measurement_mse.max()) < 1e-10
    assert get_method("csgm_bp").back_projection and not get_method("csgm").back_projection


def test_configs_hold_no_options_of_other_methods():
    """Options named after a method (``csgm_*``, ``iagan_*``, ``tv_*``, ...) live in that method's config
    (or a config extending it, as IAGAN's extends CSGM's: IAGAN starts from CSGM)."""
    configs = {m: get_method(m).config for m in FEW}
    owners = set(configs) - {"latent"}  # "latent_" also names the latent of every method (latent_prior)
    for name, cfg in configs.items():
        for f in fields(cfg):
            owner = f.name.split("_")[0]
            if owner in owners and owner != name:
                assert issubclass(cfg, configs[owner]), f"{cfg.__name__}.{f.name}"
    for m in ("dgp", "cri"):
        assert not {"csgm_steps", "iagan_steps", "restarts", "label_candidates"} & {
            f.name for f in fields(configs[m])
        }


def test_unknown_options_name_the_methods_valid_ones():
    prior = tiny_prior()
    op = Denoising(0.0)
    y = op(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\['csgm_steps'\] for method 'dgp'; valid options: .*n_candidates"):
        restore(y, op, prior, "dgp", csgm_steps=3)
    with pytest.raises(ValueError, match="tv_steps must be a positive integer"):
        method_config("tv", {"tv_steps": 0})


class _Seen(Exception):
    pass


def _labels_seen(method: str, start: str) -> list:
    """Register ``method`` (CSGM's options, the given start) that records the labels it gets and stops."""
    seen = []

    @dataclass
    class Cfg(CSGMConfig):
        pass

    @register_method(method, Cfg, start=start, with_bp=False)
    def run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms):
        seen.append(labels)
        raise _Seen

    return seen


def test_dgp_class_pick_runs_only_for_methods_that_ask_for_it():
    from tests.inversion.test_cri import cond_prior

    prior = cond_prior()
    op = Denoising(0.0)
    y = op(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    picked = _labels_seen("registry_test_pick", "dgp_class_pick")
    given = _labels_seen("registry_test_given", "given")
    for method in ("registry_test_pick", "registry_test_given"):
        with pytest.raises(_Seen):
            restore(y, op, prior, method, labels=torch.tensor([-1, 2]), label_candidates=4)
    assert picked[0].shape == (2,) and int(picked[0][1]) == 2 and 0 <= int(picked[0][0]) < 3
    assert given[0].tolist() == [-1, 2]  # handed over as given: the method picks (or refuses) itself
    for method in ("csgm", "iagan", "latent"):
        assert get_method(method).start == "dgp_class_pick"
    for method in ("dgp", "cri", "tv", "dip"):
        assert get_method(method).start == "given"


def test_registration_is_checked():
    @dataclass
    class NoCandidates(PriorConfig):
        steps: int = 1

    with pytest.raises(ValueError, match="label_candidates"):
        register_method("registry_test_bad", NoCandidates, start="dgp_class_pick")
    with pytest.raises(ValueError, match="start"):
        register_method("registry_test_bad", NoCandidates, start="random")
    with pytest.raises(ValueError, match="MethodConfig"):
        register_method("registry_test_bad", dict)
    with pytest.raises(ValueError, match="already registered"):
        register_method("csgm", CSGMConfig)(lambda *a: None)
    assert "registry_test_bad" not in available_methods()


# -- architectures ---------------------------------------------------------------------------------
def _lightning_file(tmp: Path) -> Path:
    from lcm.modules import WGANGP

    module = WGANGP(latent_dim=8, width=4, critic_width=4, resolution=8, channels=1)
    path = tmp / "wgangp.ckpt"
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "genprior_kind": "wgangp",
    }
    torch.save(ckpt, path)
    return path


def _biggan_file(tmp: Path) -> Path:
    path = tmp / "G_ema.pth"
    torch.save(torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)["G"], path)
    return path


def _dcgan_file(tmp: Path) -> Path:
    from lcm.architectures.dcgan import DCGANGenerator

    path = tmp / "netG.pth"  # the tutorial's checkpoint layout (issue 24's face DCGAN: netG_state_dict)
    torch.save({"netG_state_dict": DCGANGenerator([8, 8, 4, 3]).state_dict()}, path)
    return path


FIXTURES = {  # architecture -> (checkpoint file, image shape of its prior)
    "lightning": (_lightning_file, (1, 8, 8)),
    "dcgan": (_dcgan_file, (3, 16, 16)),
    "biggan": (_biggan_file, (3, 128, 128)),
    "stylegan2": (lambda tmp: DATA / "stylegan2ada_tiny.pkl", (3, 32, 32)),
}


def test_every_registered_architecture_has_a_fixture():
    assert set(available_architectures()) == set(FIXTURES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_architecture_recognises_its_own_checkpoints_only(name, tmp_path):
    files = {n: make(tmp_path) for n, (make, _) in FIXTURES.items()}
    arch = get_architecture(name)
    for other, path in files.items():
        assert arch.recognise(CheckpointFile(path)) == (other == name), (name, other)
    prior = lcm.load_prior(files[name])
    assert tuple(prior.image_shape) == FIXTURES[name][1]


def test_an_unrecognised_file_lists_the_architectures(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="no registered architecture recognises") as err:
        lcm.load_prior(path)
    assert all(f"{n}: " in str(err.value) for n in available_architectures())


def test_an_option_of_another_architecture_is_named(tmp_path):
    path = _lightning_file(tmp_path)
    with pytest.raises(ValueError, match=r"lightning checkpoint .*\['truncation_psi'\]"):
        lcm.load_prior(path, truncation_psi=0.5)


def test_strict_loading_lists_missing_unexpected_and_wrong_shape_keys():
    from torch import nn

    from lcm.architectures.state_dicts import load_state_dict_strict

    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = dict(net.state_dict())
    state.pop("1.bias")
    state["0.weight"] = torch.zeros(4, 2)
    state["2.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_state_dict_strict(net, state, "'x.pth'", "the test net")
    msg = str(err.value)
    assert msg.startswith(
        "'x.pth' does not match the test net: missing keys: 1.bias; unexpected keys: 2.weight"
    )
    assert "wrong-shape keys: 0.weight (file (4, 2), network (3, 2))" in msg
    before = net[0].weight.clone()
    good = {k: v + 1 for k, v in net.state_dict().items()}
    load_state_dict_strict(net, good, "'y.pth'", "the test net")
    assert torch.equal(net[0].weight, before + 1)
