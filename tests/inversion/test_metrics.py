"""Metrics against known values; masked metrics ignore the outside; LPIPS fails clearly without weights;
offline perceptual / Frechet distances behave as distances."""

from __future__ import annotations

import math

import pytest
import torch

from inversion import metrics
from inversion.metrics import perceptual
from inversion.operators import Inpainting, SuperResolution


def _img(b=2, c=3, h=24, w=20, seed=0):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_psnr_of_known_mse():
    x = _img()
    y = x + torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)  # MSE 1e-2 and 1e-4
    assert torch.allclose(metrics.mse(y, x), torch.tensor([1e-2, 1e-4], dtype=torch.float64))
    assert torch.allclose(metrics.psnr(y, x), torch.tensor([20.0, 40.0], dtype=torch.float64))


def test_ssim_identity_and_drop():
    x = _img()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2, dtype=torch.float64))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)).clamp(
        0, 1
    )
    s = metrics.ssim(noisy, x)
    assert s.shape == (2,) and (s < 0.9).all()


def test_masked_metrics_ignore_outside():
    x = _img(h=32, w=32)
    op = Inpainting(box_size=12)
    hole = 1 - op.mask_for(x)  # DGP Table 2: score the hole only
    pred = x.clone()
    pred = pred + 0.05 * hole  # error of 0.05 inside the hole
    other = pred + 0.3 * (1 - hole)  # large change outside only
    for fn in (metrics.masked_mse, metrics.masked_psnr, metrics.masked_ssim):
        assert torch.allclose(fn(pred, x, hole), fn(other, x, hole))
    assert torch.allclose(metrics.masked_mse(pred, x, hole), torch.full((2,), 0.0025, dtype=torch.float64))
    assert torch.allclose(
        metrics.masked_psnr(pred, x, hole), torch.full((2,), 10 * math.log10(400), dtype=x.dtype)
    )
    assert not torch.allclose(metrics.psnr(pred, x), metrics.psnr(other, x))
    assert torch.allclose(metrics.masked_ssim(x, x, hole), torch.ones(2, dtype=x.dtype))
    with pytest.raises(ValueError, match="mask"):
        metrics.masked_mse(pred, x, torch.zeros_like(hole))


def test_measurement_residual():
    op = SuperResolution(2, "bicubic")
    x = _img()
    y = op.A(x)
    assert torch.allclose(metrics.measurement_residual(x, y, op), torch.zeros(2, dtype=x.dtype))
    shift = torch.full_like(y, 0.1)
    expect = math.sqrt(0.01 * y[0].numel())
    assert torch.allclose(
        metrics.measurement_residual(x, y + shift, op), torch.full((2,), expect, dtype=x.dtype)
    )


def test_colorization_scores_after_luminance_restore():
    from kornia.color import lab_to_rgb, rgb_to_lab

    target = _img(h=16, w=16)
    lab = rgb_to_lab(target)
    # right chroma, wrong lightness: restoring the target's L recovers the target
    wrong_l = lab_to_rgb(torch.cat([lab[:, :1] * 0.6, lab[:, 1:]], 1), clip=True)
    restored = metrics.restore_luminance(wrong_l, target)
    assert torch.allclose(metrics.colorization_psnr(wrong_l, target), metrics.psnr(restored, target))
    assert (metrics.colorization_psnr(wrong_l, target) > metrics.psnr(wrong_l, target) + 5).all()
    # a gray prediction keeps its (zero) chroma: worse than the right chroma
    gray = target.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert (metrics.colorization_psnr(gray, target) < metrics.colorization_psnr(wrong_l, target)).all()
    assert metrics.colorization_ssim(wrong_l, target).shape == (2,)
    with pytest.raises(ValueError, match="pred"):
        metrics.restore_luminance(target[:, :1], target)


def test_lpips_missing_weights_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    lp = metrics.LPIPS("alex")
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth") as err:
        lp(_img(), _img(seed=1))
    assert str(tmp_path / "checkpoints") in str(err.value)


def test_lpips_loads_local_trunk(tmp_path):
    """Plumbing test with a locally saved squeezenet trunk (random weights; nothing downloaded)."""
    import torchvision

    torch.manual_seed(0)
    torch.save(
        torchvision.models.squeezenet1_1(weights=None).state_dict(), tmp_path / "squeezenet1_1-b8a52dc0.pth"
    )
    lp = metrics.LPIPS("squeeze", weights_dir=str(tmp_path))
    x = _img(b=2, h=32, w=32).float()
    d0 = lp(x, x)
    d1 = lp(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert d0.shape == (2,) and torch.allclose(d0, torch.zeros(2)) and (d1 > 0).all()


class _TinyExtractor(torch.nn.Module):
    """A fixed random conv pyramid: a pluggable extractor (any callable -> list of feature maps)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(8, 3, 3, 3, generator=g, dtype=torch.float64)
        self.w2 = torch.randn(16, 8, 3, 3, generator=g, dtype=torch.float64)

    def forward(self, x):
        x = x.expand(-1, 3, -1, -1)
        h1 = torch.relu(torch.nn.functional.conv2d(x, self.w1, stride=2, padding=1))
        h2 = torch.relu(torch.nn.functional.conv2d(h1, self.w2, stride=2, padding=1))
        return [h1, h2]


@pytest.fixture(scope="module")
def lite0():
    return perceptual.EfficientNetLite0Features()


def test_efficientnet_lite0_features_load_and_shape(lite0):
    feats = lite0(_img(b=2, h=32, w=32).float())
    assert len(feats) == 9 and feats[-1].shape == (2, 1280, 1, 1)
    assert [f.shape[1] for f in feats[:8]] == [32, 16, 24, 40, 80, 112, 192, 320]
    gray = lite0(_img(b=1, c=1, h=32, w=32).float())
    assert torch.allclose(gray[-1], lite0(_img(b=1, c=1, h=32, w=32).float().expand(-1, 3, -1, -1))[-1])
    assert not any(p.requires_grad for p in lite0.net.parameters())


@pytest.mark.parametrize("which", ["lite0", "tiny"])
def test_offline_perceptual_distance(which, lite0):
    dist = perceptual.OfflinePerceptualDistance(lite0 if which == "lite0" else _TinyExtractor())
    x = _img(b=2, h=32, w=32)
    x = x.float() if which == "lite0" else x
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    d = [dist(x, (x + s * noise).clamp(0, 1)) for s in (0.0, 0.05, 0.3)]
    assert torch.allclose(d[0], torch.zeros(2, dtype=x.dtype))
    assert ((d[1] > 0) & (d[2] > d[1])).all()
    xr = x.clone().requires_grad_(True)
    dist(xr, x.flip(-1)).sum().backward()
    assert xr.grad.abs().sum() > 0


@pytest.mark.parametrize("which", ["lite0", "tiny"])
def test_frechet_feature_distance(which, lite0):
    fd = perceptual.FrechetFeatureDistance(lite0 if which == "lite0" else _TinyExtractor(), batch_size=8)
    a = _img(b=12, h=32, w=32)
    a = a.float() if which == "lite0" else a
    same, shifted = fd(a, a), fd(a, (a * 0.5 + 0.4).clamp(0, 1))
    assert abs(float(same)) < 1e-3 * float(shifted) and shifted > 0


def test_frechet_distance_gaussians_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    b = 2 * torch.randn(4000, 3, generator=g, dtype=torch.float64) + 1
    # N(0, I) vs N(1, 4I) in 3-D: |mu|^2 + tr(I + 4I - 2*2I) = 3 + 3 = 6
    assert abs(float(metrics.frechet_distance(a, b)) - 6.0) < 0.5
    with pytest.raises(ValueError, match="feat_a"):
        metrics.frechet_distance(a, b[:, :2])


def test_frechet_distance_low_sample_path_matches_full():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 10, generator=g, dtype=torch.float64)  # n m <= d^2: nuclear-norm path
    b = torch.randn(7, 10, generator=g, dtype=torch.float64) + 0.5
    fast = metrics.frechet_distance(a, b)
    # reference: the symmetric square-root formula on the full covariances
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    ea, va = torch.linalg.eigh(sa)
    ra = (va * ea.clamp_min(0).sqrt()) @ va.T
    ref_tr = torch.linalg.eigvalsh(ra @ sb @ ra).clamp_min(0).sqrt().sum()
    ref = (a.mean(0) - b.mean(0)).pow(2).sum() + sa.trace() + sb.trace() - 2 * ref_tr
    assert abs(float(fast - ref)) < 1e-8 * float(ref)


def test_lazy_networks_do_not_change_state_dict(lite0):
    dist = perceptual.OfflinePerceptualDistance(lite0)
    dist(_img(b=1, h=32, w=32).float(), _img(b=1, h=32, w=32, seed=1).float())
    assert len(dist.state_dict()) == 0  # frozen weights come from the package, not from checkpoints
