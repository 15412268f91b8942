"""IAGAN-BP: the paper's A-dagger for super-resolution is bicubic up-sampling (IAGAN Sec. 4.2); ``bp: exact``
is the exact pseudo-inverse."""

from __future__ import annotations

import pytest
import torch

from inversion.methods import restore
from inversion.operators import CompressedSensing, SuperResolution, back_project
from inversion.operators.functional import bicubic_upsample
from tests.inversion.test_dgp import images, tiny


def test_bicubic_upsampling_is_matlab_imresize_bicubic():
    # Keys a = -0.5 reproduces linear ramps away from the border, and constants everywhere
    ramp = torch.arange(8, dtype=torch.float64).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    up = bicubic_upsample(ramp, 4)
    want = (torch.arange(32, dtype=torch.float64) + 0.5) / 4 - 0.5
    assert torch.allclose(up[0, 0, 5, 8:24], want[8:24])
    assert torch.allclose(bicubic_upsample(torch.full((1, 2, 3, 5), 0.7), 2), torch.full((1, 2, 6, 10), 0.7))
    # [0 1] up x2: output 0 sits at u = -0.25 over the symmetric border (1 0 | 0 1 | 1 0), so it is
    # w(1.75) + w(1.25) = -0.0234375 - 0.0703125 with Keys' a = -0.5 (by hand); the rest by symmetry
    step = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2).expand(1, 1, 2, 2)
    want = torch.tensor([-0.09375, 0.203125, 0.796875, 1.09375])
    assert torch.allclose(bicubic_upsample(step, 2)[0, 0, 0], want)


def test_iagan_bp_paper_a_dagger_is_bicubic_for_sr_and_exact_by_name():
    torch.manual_seed(0)
    op = SuperResolution(factor=2, kernel="bicubic")
    x = torch.rand(2, 1, 16, 16)
    y = op.A(torch.rand(2, 1, 16, 16))
    paper = back_project(x, y, op, "paper")
    assert torch.allclose(paper, x + bicubic_upsample(y - op.A(x), 2))
    exact = back_project(x, y, op, "exact")
    assert (op.A(exact) - y).abs().max() < 1e-4  # A x_bp = y
    assert (op.A(paper) - y).abs().max() > 1e-3  # bicubic up-sampling is not A's pseudo-inverse
    cs = CompressedSensing(ratio=0.2, kind="gaussian", seed=0)  # others: the pseudo-inverse either way
    ycs = cs.A(torch.rand(1, 1, 16, 16))
    assert torch.allclose(back_project(x[:1], ycs, cs, "paper"), back_project(x[:1], ycs, cs, "exact"))
    with pytest.raises(ValueError, match="bp must be"):
        back_project(x, y, op, "bilinear")


def test_csgm_bp_through_restore_uses_the_configured_a_dagger():
    prior = tiny()
    op = SuperResolution(factor=2, kernel="bicubic")
    y = op.A(images(prior, 1))
    opts = {"csgm_steps": 3, "restarts": 1}
    plain = restore(y, op, prior, "csgm", seed=0, **opts)
    bp = restore(y, op, prior, "csgm_bp", seed=0, **opts)
    paper = restore(y, op, prior, "csgm_bp", seed=0, bp="paper", **opts)
    exact = restore(y, op, prior, "csgm_bp", seed=0, bp="exact", **opts)
    residual = y - op.A(plain.raw)  # default: IAGAN main.py's A-dagger, PyTorch's bicubic interpolation
    assert torch.allclose(
        bp.raw,
        plain.raw + torch.nn.functional.interpolate(residual, scale_factor=2, mode="bicubic"),
        atol=1e-6,
    )
    assert torch.allclose(paper.raw, plain.raw + bicubic_upsample(residual, 2), atol=1e-6)
    assert (op.A(exact.raw) - y).abs().max() < 1e-4
    with pytest.raises(ValueError, match="unknown restore"):  # bp belongs to the _bp methods only
        restore(y, op, prior, "csgm", seed=0, bp="exact", **opts)
    with pytest.raises(ValueError, match="bp must be"):
        restore(y, op, prior, "csgm_bp", seed=0, bp="bilinear", **opts)
