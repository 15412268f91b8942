"""Device-dependent behaviour, run on every device present (the ``device`` fixture: CPU always, CUDA where
present): operators' adjoints, the engine's fits and BigGAN's spectral norm give on the device what they
give on CPU, and nothing falls back to a CPU-only construct."""

from __future__ import annotations

import pytest
import torch

from inversion import restore
from inversion.operators import Blur, CompressedSensing, Inpainting, SuperResolution
from lcm.toy import tiny_prior

OPERATORS = {
    "sr2": lambda: SuperResolution(2, "bicubic"),
    "blur": lambda: Blur("gaussian", 7),
    "inpaint": lambda: Inpainting("boxes", box_size=4, per_image=True),
    "cs": lambda: CompressedSensing(0.3, seed=1),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_adjoint_on_device(name, device):
    torch.manual_seed(0)
    op = OPERATORS[name]().to(device, torch.float64)
    x = torch.randn(2, 1, 16, 16, device=device, dtype=torch.float64)
    ax = op.A(x)
    y = torch.randn_like(ax)
    lhs, rhs = (ax * y).sum(), (x * op.A_adjoint(y)).sum()
    assert ax.device.type == device.type
    assert abs(float(lhs - rhs)) <= 1e-8 * max(1.0, abs(float(lhs)))


@pytest.mark.parametrize("method", ["csgm", "iagan"])
def test_restore_fits_on_device(method, device):
    """One small batched fit through the engine (a Lightning fit on the device's accelerator): its outputs
    stay on the device and it lowers the objective. (The starts come from the device's own random stream,
    so CUDA and CPU start elsewhere: no cross-device equality.)"""
    opts = {"csgm_steps": 8, "restarts": 2, **({"iagan_steps": 4} if method == "iagan" else {})}
    prior = tiny_prior().to(device)
    op = SuperResolution(2, "bicubic").to(device)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
    res = restore(op.A(x), op, prior, method, seed=0, **opts)
    assert res.images.device.type == res.latent.device.type == device.type
    assert torch.isfinite(res.images).all()
    assert bool((res.objective.cpu() < res.history[0].cpu()).all())


def test_biggan_spectral_norm_on_device(device):
    from lcm.architectures import biggan

    torch.manual_seed(0)
    layer = biggan.SNConv2d(16, 8, 3).eval().to(device)
    x = torch.randn(1, 16, 4, 4, device=device)
    got = layer(x)
    layer.sn_output_scale = False
    want = layer(x)
    assert got.device.type == device.type and torch.allclose(got, want, rtol=1e-5, atol=1e-6)
