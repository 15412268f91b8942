"""DGP on a prior without a critic: DGP Table 4's MSE and perceptual variants (presets mse, perceptual)."""

from __future__ import annotations

import pytest
import torch

from inversion import restore
from inversion.operators import Inpainting, SuperResolution
from lcm.architectures import dcgan

pytestmark = pytest.mark.usefixtures("one_thread")


def critic_less_prior():
    """A random 16-px tutorial-layout DCGAN (3 transposed convs), no discriminator."""
    torch.manual_seed(0)
    net = dcgan.DCGANGenerator([8, 16, 8, 1]).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
    return dcgan.dcgan_prior(net)


def _target(prior):
    with torch.no_grad():
        x = prior(prior.sample_latent(2, torch.Generator().manual_seed(5)))
    return (0.7 * x + 0.15).clamp(0, 1)  # off the prior's range: fine-tuning G has work to do


def test_dgp_mse_preset_runs_on_a_critic_less_prior_and_fits_the_measurements():
    prior = critic_less_prior()
    assert prior.critic is None
    x = _target(prior)
    op = SuperResolution(factor=2)
    y = op.A(x)
    res = restore(y, op, prior, "dgp", preset="mse", n_candidates=20, x_true=x)
    with torch.no_grad():
        start = (op.A(prior(_start(prior, op, y))) - y) ** 2
    assert res.images.shape == x.shape
    # fine-tuning every block under the MSE fits the measurements far better than the best candidate
    assert (res.measurement_mse < 0.5 * start.flatten(1).mean(1)).all()
    assert res.generators is not None and len(res.generators) == 2


def _start(prior, op, y):
    from inversion.dgp.init import select_latents
    from inversion.dgp.losses import MeasurementMSE

    return select_latents(prior, op, y, MeasurementMSE(), [0, 1], None, 20, 20).latent


def test_default_dgp_falls_back_to_the_mse_preset_with_a_notice():
    prior = critic_less_prior()
    x = _target(prior)
    op = Inpainting("center", box_size=0.375)
    y = op.A(x)
    with pytest.warns(UserWarning, match="falls back to DGP Table 4's MSE variant"):
        fallback = restore(y, op, prior, "dgp", n_candidates=20)
    explicit = restore(y, op, prior, "dgp", preset="mse", n_candidates=20)
    torch.testing.assert_close(fallback.images, explicit.images)


def test_a_critic_preset_on_a_critic_less_prior_names_the_presets_to_use():
    prior = critic_less_prior()
    x = _target(prior)
    op = SuperResolution(factor=2)
    with pytest.raises(ValueError, match=r"\{preset: mse\} or \{preset: perceptual\}"):
        restore(op.A(x), op, prior, "dgp", preset="sr_critic", n_candidates=4)


def test_dgp_perceptual_variant_registers_its_loss_term():
    prior = critic_less_prior()
    x = _target(prior)[:1]
    op = SuperResolution(factor=2)
    stages = [
        {
            "blocks": "all",
            "iterations": 3,
            "generator_lr": 1e-4,
            "latent_lr": 1e-3,
            "weights": {"perceptual": 1},
        }
    ]
    res = restore(op.A(x), op, prior, "dgp", preset="perceptual", stages=stages, n_candidates=4)
    assert torch.isfinite(res.history[-1]).all() and (res.history[-1] > 0).all()
