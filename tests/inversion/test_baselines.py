"""TV and Deep Image Prior baselines (inversion.methods.tv, inversion.methods.dip)."""

import pytest
import torch

from inversion import metrics as M
from inversion import restore
from inversion.operators import Inpainting, SuperResolution


def _blocks() -> torch.Tensor:
    """Two piecewise-constant 32x32 images (TV's model)."""
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 4:20, 6:26] = 0.8
    x[0, :, 14:30, 2:12] = 0.5
    x[1, :, 18:30, 10:22] = 0.3
    return x


@pytest.mark.parametrize(
    "op", [Inpainting("center", box_size=0.3), SuperResolution(factor=4, kernel="bicubic")]
)
def test_tv_beats_pseudo_inverse_and_decreases_objective(op):
    x = _blocks()
    y = op.A(x)
    res = restore(y, op, None, method="tv", x_true=x, tv_steps=400)
    base = M.psnr(op.A_dagger(y).clamp(0, 1), x)
    assert (res.metrics["psnr"] > base + 0.5).all(), (res.metrics["psnr"], base)
    hist = res.history
    assert hist.shape == (401, 2)
    assert (hist[-1] < 0.95 * hist[0]).all()  # started at A^dagger y
    assert (hist[-1] <= hist[len(hist) // 2] + 1e-4).all()  # still going down in the second half
    assert res.images.min() >= 0 and res.images.max() <= 1


def test_tv_rejects_nonlinear_and_bad_weight():
    from inversion.methods.tv import tv_restore

    class NotLinear(torch.nn.Module):
        def A(self, x):
            return x**2

    with pytest.raises(ValueError, match="linear operator"):
        tv_restore(torch.zeros(1, 1, 8, 8), NotLinear(), (1, 8, 8))
    with pytest.raises(ValueError, match="tv_weight"):
        tv_restore(torch.zeros(1, 1, 8, 8), Inpainting("center"), (1, 8, 8), weight=-1.0)


def test_grad_adjoint():
    from inversion.methods.tv import grad2d, grad2d_adjoint

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64)
    p = torch.randn(2, 2, 3, 7, 9, generator=g, dtype=torch.float64)
    assert torch.allclose((grad2d(x) * p).sum(), (x * grad2d_adjoint(p)).sum())


def test_dip_fits_measurements_fast_and_is_seeded():
    x = _blocks()[:1]
    op = Inpainting("center", box_size=0.3)
    y = op.A(x)
    kw = dict(dip_steps=30, dip_width=8, dip_depth=2, dip_input_channels=8)
    res = restore(y, op, None, method="dip", x_true=x, seed=3, **kw)
    assert res.history.shape == (31, 1)
    assert res.history[-5:].mean() < 0.5 * res.history[:5].mean()  # the residual decreases
    assert res.seconds < 10
    again = restore(y, op, None, method="dip", seed=3, **kw)
    assert torch.allclose(res.images, again.images)
    with pytest.raises(ValueError, match="divisible"):
        restore(torch.zeros(1, 1, 30, 30), Inpainting("center"), None, method="dip", dip_steps=1, dip_depth=2)
