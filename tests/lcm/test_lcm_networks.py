"""lcm networks and losses: shapes, gradients, batched latent ConvNet == per-image loop, Lap-L1."""

import math

import pytest
import torch
import torch.nn.functional as F

import lcm
from lcm.losses import gradient_penalty, lap_l1, laplacian_pyramid
from lcm.networks import Critic, Generator, LatentConvNet, MappingNetwork


def _all_params_have_grad(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]


@pytest.mark.parametrize(
    "latent_shape, resolution, num_classes",
    [((8,), 16, 0), ((8,), 32, 3), ((4, 4, 4), 16, 0), ((4, 8, 8), 16, 2)],
)
def test_generator_shapes_range_and_gradients(latent_shape, resolution, num_classes):
    torch.manual_seed(0)
    g = Generator(latent_shape, out_channels=3, resolution=resolution, width=4, num_classes=num_classes)
    w = torch.randn(3, *latent_shape)
    labels = torch.tensor([0, 1, 1]) if num_classes else None
    out = g(w, labels)
    assert out.shape == (3, 3, resolution, resolution)
    assert out.abs().max() <= 1 and torch.isfinite(out).all()
    out.square().sum().backward()
    assert _all_params_have_grad(g) == []
    # blocks run from the latent side to the image side
    assert g.blocks[-1][-1].__class__ is torch.nn.Tanh
    n_up = int(math.log2(resolution // (4 if len(latent_shape) == 1 else latent_shape[1])))
    assert len(g.blocks) == n_up + 2


def test_generator_rejects_bad_input():
    g = Generator((8,), 1, 16, 4, num_classes=2)
    with pytest.raises(ValueError, match="labels"):
        g(torch.randn(2, 8))
    with pytest.raises(ValueError, match="latents of shape"):
        g(torch.randn(2, 9), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="power of two"):
        Generator((8,), 1, 24, 4)


def test_class_conditioning_changes_output():
    torch.manual_seed(0)
    g = Generator((8,), 1, 16, 4, num_classes=3).eval()
    c = Critic(1, 16, 4, num_classes=3)
    w = torch.randn(1, 8).expand(2, -1)
    labels = torch.tensor([0, 2])
    out = g(w, labels)
    assert (out[0] - out[1]).abs().max() > 1e-4
    x = torch.rand(1, 1, 16, 16).expand(2, -1, -1, -1)
    s = c(x, labels)
    assert (s[0] - s[1]).abs() > 1e-6


def test_critic_features_and_gradient_penalty_grads():
    torch.manual_seed(0)
    c = Critic(2, 16, 4)
    x = torch.randn(5, 2, 16, 16)
    feats = c.features(x)
    assert [f.shape[-1] for f in feats] == [16, 8, 4]
    assert c(x).shape == (5,)
    gp = gradient_penalty(c, x, torch.randn_like(x))
    assert gp > 0
    (c(x).mean() + gp).backward()
    assert _all_params_have_grad(c) == []
    with pytest.raises(ValueError, match="critic expects"):
        c(torch.randn(1, 1, 16, 16))


def test_gradient_penalty_is_zero_for_unit_slope_critic():
    class Linear(torch.nn.Module):
        def forward(self, x):
            v = torch.ones(x[0].numel()) / math.sqrt(x[0].numel())
            return x.flatten(1) @ v

    x = torch.randn(4, 1, 4, 4)
    assert gradient_penalty(Linear(), x, torch.randn_like(x)).abs() < 1e-10


def test_mapping_network():
    m = MappingNetwork(6, 5, 2, num_classes=2)
    w = m(torch.randn(3, 6), torch.tensor([0, 1, 1]))
    assert w.shape == (3, 5)
    with pytest.raises(ValueError):
        MappingNetwork(6, 5, 0)


@pytest.mark.parametrize(
    "noise_shape, out_shape, hidden", [((3, 4, 4), (5, 4, 4), (6,)), ((2, 2, 2), (4, 8, 8), (3, 4))]
)
def test_latent_convnet_batched_equals_loop(noise_shape, out_shape, hidden):
    net = LatentConvNet(noise_shape, out_shape, hidden, box=0.01)
    g = torch.Generator().manual_seed(0)
    phi = ((torch.rand(4, net.num_params, generator=g, dtype=torch.float64) * 2 - 1) * 0.01).requires_grad_()
    s = torch.rand(noise_shape, generator=g, dtype=torch.float64)
    out = net(phi, s)
    assert out.shape == (4, *out_shape)
    loop = torch.stack([net.forward_single(p, s) for p in phi])
    torch.testing.assert_close(out, loop, rtol=1e-12, atol=1e-12)
    # gradients agree too, and image i's output depends only on phi_i
    (g1,) = torch.autograd.grad(out[1].sum(), phi)
    assert g1[[0, 2, 3]].abs().max() == 0 and g1[1].abs().max() > 0
    (g_loop,) = torch.autograd.grad(loop.square().sum(), phi)
    (g_batch,) = torch.autograd.grad(net(phi, s).square().sum(), phi)
    torch.testing.assert_close(g_batch, g_loop, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="phi must be"):
        net(phi[:, :-1], s)


def _pyramid_direct(x, levels):
    """Independent per-level Laplacian pyramid: explicit 5x5 binomial kernel, reflect pad, stride 2."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype) / 16
    k = (k1[:, None] * k1[None, :]).expand(x.shape[1], 1, 5, 5)
    gs = [x]
    for _ in range(levels - 1):
        gs.append(F.conv2d(F.pad(gs[-1], (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])[..., ::2, ::2])
    bands = [
        gs[j] - F.interpolate(gs[j + 1], size=gs[j].shape[-2:], mode="bilinear", align_corners=False)
        for j in range(levels - 1)
    ]
    return [*bands, gs[-1]]


def test_lap_l1_equals_direct_per_level_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 17, 20, generator=g, dtype=torch.float64)
    y = torch.rand(3, 2, 17, 20, generator=g, dtype=torch.float64)
    levels = 3
    px, py = _pyramid_direct(x, levels), _pyramid_direct(y, levels)
    for a, b in zip(laplacian_pyramid(x, levels), px, strict=True):
        torch.testing.assert_close(a, b)
    pairs = enumerate(zip(px, py, strict=True))
    direct = sum(2.0 ** (-2 * j) * (a - b).abs().sum(dim=(1, 2, 3)) for j, (a, b) in pairs)
    direct = direct / x[0].numel()
    torch.testing.assert_close(lap_l1(x, y, levels, reduction="none"), direct)
    torch.testing.assert_close(lap_l1(x, y, levels), direct.mean())
    # collapsing the pyramid gives the image back
    rec = laplacian_pyramid(x, levels)[-1]
    for band in reversed(laplacian_pyramid(x, levels)[:-1]):
        rec = band + F.interpolate(rec, size=band.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(rec, x)
    # a constant offset lives in the low-pass level only: weight 2^(-2(J-1)) times its pixel share
    c = lap_l1(x + 0.5, x, levels)
    n_low = laplacian_pyramid(x, levels)[-1][0].numel()
    torch.testing.assert_close(
        c, torch.tensor(0.5 * 4.0 ** -(levels - 1) * n_low / x[0].numel(), dtype=c.dtype)
    )
    with pytest.raises(ValueError, match="same shape"):
        lap_l1(x, y[:, :1])


def test_lazy_exports():
    assert lcm.Generator is Generator and lcm.lap_l1 is lap_l1
    assert callable(lcm.load_prior)


def test_latent_convnet_weights_are_the_box_constrained_phi(monkeypatch):
    """LCM eq. 1 bounds the ConvNet's weights: every kernel and bias given to conv2d lies in [-B, B];
    the He gain is a fixed layer after each conv, so outputs equal convs with weights ``gain * phi``."""
    net = LatentConvNet((2, 2, 2), (4, 8, 8), (3, 4), box=0.01)
    g = torch.Generator().manual_seed(1)
    phi = (torch.rand(3, net.num_params, generator=g, dtype=torch.float64) * 2 - 1) * 0.01
    s = torch.rand((2, 2, 2), generator=g, dtype=torch.float64)
    seen = []
    conv = F.conv2d

    def spy(x, w, b=None, *args, **kwargs):
        seen.append(max(float(w.abs().max()), float(b.abs().max())))
        return conv(x, w, b, *args, **kwargs)

    monkeypatch.setattr(F, "conv2d", spy)
    out = net(phi, s)
    net.forward_single(phi[0], s)
    monkeypatch.setattr(F, "conv2d", conv)
    assert len(seen) == 6 and max(seen) <= 0.01
    # reference: the same ConvNet with the gains folded into the weights (per image, explicit)
    ref = []
    for p in phi:
        h, off = s[None], 0
        for i, (cin, cout, up, gain) in enumerate(net.layers):
            nw = cout * cin * 9
            w = p[off : off + nw].view(cout, cin, 3, 3) * gain
            b = p[off + nw : off + nw + cout] * gain
            off += nw + cout
            if up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = conv(h, w, b, padding=1)
            if i < len(net.layers) - 1:
                h = F.leaky_relu(h, 0.2)
        ref.append(h[0])
    torch.testing.assert_close(out, torch.stack(ref), rtol=1e-12, atol=1e-12)
