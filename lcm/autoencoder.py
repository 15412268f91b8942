"""The LCM paper's autoencoder baseline (LCM Sec. 3, "AE"): an encoder and a DCGAN decoder trained
with Lap-L1 + MSE (the LCM paper uses latent dimension 1024 on 128 px CelebA; 256 here for 32 px).

As a prior (``lcm.load_prior``) only the decoder is used: restoration optimises its latent (LCM eq. 5,
``restore(..., method="latent")``). Latents are started from a diagonal Gaussian fitted to the
training codes (running mean / variance kept during training), as GLO samples from its codes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lcm.losses import lap_l1
from lcm.modules import MODULES, PriorModule
from lcm.networks import Critic, Generator
from lcm.prior import Prior, from_unit, to_unit

__all__ = ["AutoEncoder", "Encoder"]


class Encoder(nn.Module):
    """Strided-convolution encoder (the critic's trunk, layer norm) and a linear map to the code.

    Shape:
        - x: ``(B, C, R, R)`` in [-1, 1] -> ``(B, latent_dim)``.
    """

    def __init__(self, channels: int, resolution: int, latent_dim: int, width: int):
        super().__init__()
        self.trunk = Critic(channels, resolution, width)
        feat = self.trunk.head.in_features
        del self.trunk.head
        self.proj = nn.Linear(feat, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk.features(x)[-1].flatten(1))


class AutoEncoder(PriorModule):
    """Autoencoder with Lap-L1 + MSE reconstruction loss (LCM Sec. 3 baseline).

    Args:
        channels, resolution: image shape (linked from the datamodule by ``python -m lcm``).
        latent_dim: code size (LCM paper: 1024 at 128x128).
        width, encoder_width, norm: decoder / encoder sizes and decoder normalisation.
        lr, betas: Adam of encoder and decoder.
        mse_weight, levels: loss = Lap-L1(levels) + mse_weight * MSE (as GLO / LCM here).
        code_momentum: momentum of the running code mean / variance (the prior's latent Gaussian).
        sample_every_n_steps, seed: sample grids.
    """

    kind = "ae"

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        latent_dim: int = 256,
        width: int = 32,
        encoder_width: int = 16,
        norm: Literal["batch", "instance", "none"] = "batch",
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        mse_weight: float = 1.0,
        levels: int | None = None,
        code_momentum: float = 0.01,
        sample_every_n_steps: int = 500,
        seed: int = 0,
    ):
        super().__init__(channels, resolution, sample_every_n_steps)
        self.save_hyperparameters()
        self.latent_dim = int(latent_dim)
        self.encoder = Encoder(channels, resolution, latent_dim, encoder_width)
        self.generator = Generator((latent_dim,), channels, resolution, width, 0, norm)
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_var", torch.ones(latent_dim))
        self.register_buffer("code_seen", torch.zeros((), dtype=torch.bool))

    def configure_optimizers(self):
        hp = self.hparams
        return torch.optim.Adam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas))

    def reconstruction_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lap-L1 + mse_weight * MSE of the reconstructions of ``x`` (in [-1, 1]) and the codes."""
        code = self.encoder(x)
        out = self.generator(code)
        return lap_l1(out, x, self.hparams.levels) + self.hparams.mse_weight * F.mse_loss(out, x), code

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = from_unit(self._check_batch(batch))
        loss, code = self.reconstruction_loss(x)
        self._update_code_stats(code.detach())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def _update_code_stats(self, code: torch.Tensor) -> None:
        mean, var = code.mean(0), code.var(0, unbiased=False) if code.shape[0] > 1 else self.code_var
        if not bool(self.code_seen):
            self.code_mean.copy_(mean)
            self.code_var.copy_(var)
            self.code_seen.fill_(True)
            return
        m = self.hparams.code_momentum
        self.code_mean.lerp_(mean, m)
        self.code_var.lerp_(var, m)

    def sample_images(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.hparams.seed)
        return to_unit(self.generator(self.to_prior().sample_latent(n, generator=g)))

    def to_prior(self) -> Prior:
        prior = Prior(self.generator, "gaussian", (self.latent_dim,), self.image_shape, kind=self.kind)
        prior.latent_mean = self.code_mean.clone()
        prior.latent_scale = self.code_var.clamp_min(1e-12).sqrt()  # diagonal Gaussian of the codes
        return prior


MODULES[AutoEncoder.kind] = AutoEncoder  # lcm.load_prior reads "ae" checkpoints
