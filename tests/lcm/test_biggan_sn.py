"""BigGAN's spectral norm applied as an output scale (``conv(x, W) / sigma`` where the output is smaller
than the weight) equals BigGAN-PyTorch's ``conv(x, W / sigma)`` up to rounding, in value and gradient,
without building ``W / sigma``; and the networks run in channels_last (no ``.view`` of a permuted weight)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lcm.architectures import biggan

DATA = Path(__file__).resolve().parents[1] / "data"


def _run(layer, x, scale: bool):
    """Output, weight gradient and the shapes of every ``a / b`` numerator of one forward + backward."""
    layer.sn_output_scale = scale
    layer.weight.grad = None
    seen, orig = [], torch.Tensor.__truediv__

    def spy(a, b):
        seen.append(tuple(a.shape))
        return orig(a, b)

    torch.Tensor.__truediv__ = spy
    try:
        y = layer(x)
    finally:
        torch.Tensor.__truediv__ = orig
    y.square().sum().backward()
    del layer.sn_output_scale
    return y.detach(), layer.weight.grad.clone(), seen


@pytest.mark.parametrize(
    "make, x, output_smaller",
    [
        (lambda: biggan.SNConv2d(64, 32, 3), torch.randn(1, 64, 4, 4), True),  # output 512 < weight 18432
        (lambda: biggan.SNLinear(40, 300), torch.randn(1, 40), True),
        (lambda: biggan.SNEmbedding(10, 16), torch.tensor([3, 7]), True),
        (lambda: biggan.SNConv2d(4, 8, 1, padding=0, bias=False), torch.randn(2, 4, 8, 8), False),
    ],
)
def test_output_scale_matches_weight_scale(make, x, output_smaller):
    torch.manual_seed(0)
    layer = make().eval()
    y1, g1, seen1 = _run(layer, x, True)
    y0, g0, seen0 = _run(layer, x, False)
    assert tuple(layer.weight.shape) in seen0  # BigGAN-PyTorch's way builds W / sigma
    assert (tuple(layer.weight.shape) in seen1) == (not output_smaller)  # the cheaper side is scaled
    assert torch.allclose(y1, y0, rtol=1e-5, atol=1e-6)
    assert float((g1 - g0).norm() / g0.norm()) <= 1e-5


def test_biggan_runs_in_channels_last():
    """The reference fixture's generator and discriminator, converted to channels_last, give its outputs."""
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    gen = biggan.build_generator(ref["G"]).eval().to(memory_format=torch.channels_last)
    disc = biggan.build_discriminator(ref["D"]).eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        x = gen(ref["z"], gen.shared(ref["y"]))
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert (x - ref["image"]).abs().max() <= 1e-4
        out, _ = disc.logits(ref["image"].contiguous(memory_format=torch.channels_last), ref["y"])
        assert (out - ref["d_out"]).abs().max() <= 1e-4
