"""GLO/LCM priors sample from a Gaussian fitted to their trained latents (GLO, Bojanowski et al.)."""

from __future__ import annotations

import pytest
import torch

from lcm.prior import Prior
from lcm.toy import TinyGenerator


def _prior(kind: str, d: int = 3) -> Prior:
    return Prior(TinyGenerator(latent_dim=d), kind, (d,), (1, 8, 8))


def test_samples_follow_the_fitted_full_covariance_gaussian():
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor([2.0, -1.0, 0.5])
    chol = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.2, 0.1]])
    latents = mean + torch.randn(4000, 3, generator=g) @ chol.T
    prior = _prior("gaussian").fit_latent_distribution(latents)
    z = prior.sample_latent(20000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), chol @ chol.T, atol=0.06, rtol=0)
    # seeded: the same generator seed gives the same draws
    a, b, c = (prior.sample_latent(5, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sphere_samples_stay_on_the_sphere_and_prefer_the_trained_direction():
    direction = torch.tensor([1.0, 0.0, 0.0])
    latents = direction + 0.1 * torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    prior = _prior("sphere").fit_latent_distribution(latents / latents.norm(dim=1, keepdim=True))
    z = prior.sample_latent(200, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(200))
    assert (z @ direction).mean() > 0.9  # uniform on the sphere would give ~0
    unfitted = _prior("sphere").sample_latent(2000, generator=torch.Generator().manual_seed(2))
    assert (unfitted @ direction).mean().abs() < 0.1


def test_fit_rejects_bad_latents():
    with pytest.raises(ValueError, match="latents must be"):
        _prior("gaussian").fit_latent_distribution(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="latents must be"):
        _prior("gaussian").fit_latent_distribution(torch.zeros(10, 4))


def test_high_dimensional_latents_get_a_diagonal_fit():
    latents = torch.randn(50, 3) * torch.tensor([1.0, 2.0, 3.0])
    prior = _prior("gaussian").fit_latent_distribution(latents, max_full_dim=2)
    assert prior.latent_scale.shape == (3,)
    torch.testing.assert_close(prior.latent_scale, latents.std(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["glo", "lcm"])
def test_load_prior_fits_the_checkpoints_latent_table(kind, tmp_path):
    import pytorch_lightning as pl
    from test_lcm_modules import TinyData, make, trainer

    from lcm import load_prior

    pl.seed_everything(0)
    model = make(kind)
    t = trainer(tmp_path, 3)
    t.fit(model, datamodule=TinyData(n=8, num_classes=0))
    t.save_checkpoint(tmp_path / "p.ckpt")
    prior = load_prior(tmp_path / "p.ckpt")
    rows = model.table.all().flatten(1)
    torch.testing.assert_close(prior.latent_mean, rows.mean(0))
    z = prior.sample_latent(4, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4, *prior.latent_shape)
    torch.testing.assert_close(prior.project_latent(z), z)  # on the sphere / inside the box
