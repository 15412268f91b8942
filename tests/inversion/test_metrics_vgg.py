"""LCM's VGG16 feature distance (inversion.metrics.perceptual, lcm.features) and its offline fallback."""

import pytest
import torch

from inversion.metrics import FeatureMSE, VGG16Features, feature_metric


def test_missing_vgg_weights_raise_one_clear_error(tmp_path):
    f = VGG16Features(weights_dir=str(tmp_path))
    assert not VGG16Features.available(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        f(torch.rand(1, 3, 32, 32))
    name, _ = feature_metric("auto", weights_dir=str(tmp_path))
    assert name == "efficientnet"
    with pytest.raises(ValueError, match="kind"):
        feature_metric("alex")


def test_vgg_returns_the_five_relu_maps():
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    f = VGG16Features(features=make_layers(cfgs["D"]).eval(), resize=32)
    maps = f(torch.rand(2, 1, 32, 32))
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512, 512]
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]
    assert all((m >= 0).all() for m in maps)  # relu outputs


def test_feature_mse_counts_only_the_hole():
    dist = FeatureMSE(lambda x: [x, torch.nn.functional.avg_pool2d(x, 2)])
    x = torch.zeros(1, 1, 8, 8)
    hole = torch.zeros(1, 1, 8, 8)
    hole[..., 2:6, 2:6] = 1
    outside = x.clone()
    outside[..., 0, :] = 1.0  # differs only outside the (pooled) hole
    assert float(dist(outside, x, hole)) == pytest.approx(0.0, abs=1e-7)
    inside = x.clone()
    inside[..., 2:6, 2:6] = 1.0
    assert float(dist(inside, x, hole)) == pytest.approx(1.0)  # every hole pixel off by 1 at both scales
    assert float(dist(inside, x)) == pytest.approx(0.25)
