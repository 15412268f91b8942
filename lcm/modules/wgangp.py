"""WGAN-GP (Gulrajani et al. 2017), the LCM paper's GAN baseline, as a :class:`PriorModule`."""

from __future__ import annotations

import torch

from lcm.losses import gradient_penalty
from lcm.modules.base import PriorModule
from lcm.networks import Critic, Generator, MappingNetwork
from lcm.prior import Prior, from_unit, to_unit


# ----------------------------------------------------------------------------------------------
class WGANGP(PriorModule):
    """WGAN-GP (Gulrajani et al. 2017, Algorithm 1): the LCM paper's GAN baseline.

    One training step = one critic update on the batch; every ``n_critic``-th step also updates the
    generator. Defaults from Algorithm 1: ``n_critic=5``, ``gp_weight=10``, Adam(1e-4, (0.0, 0.9)).

    Args:
        channels, resolution: image shape (linked from the datamodule by ``python -m lcm``).
        num_classes: > 0 for a class-conditional generator and (projection) critic.
        latent_dim: dimension of z ~ N(0, I) (the LCM paper used 256 at 128x128; smaller here).
        width, critic_width: image-side channel counts of generator / critic.
        mapping_layers: > 0 adds a z -> w MLP mapping network of that depth.
        n_critic, gp_weight, lr, betas: Algorithm 1 hyper-parameters.
        sample_every_n_steps: sample-grid interval (optimizer steps; 0 = only at the end).
        seed: seed of the fixed latents used for sample grids.
        val_fit_steps, val_fd_images: validation / test quality measures (:mod:`lcm.evaluation`):
            Adam steps of the held-out latent fit, and held-out images (and as many samples) per
            process for the offline Fréchet distance (0: off).
    """

    kind = "wgangp"

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        num_classes: int = 0,
        latent_dim: int = 128,
        width: int = 64,
        critic_width: int = 64,
        mapping_layers: int = 0,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        sample_every_n_steps: int = 500,
        seed: int = 0,
        val_fit_steps: int = 30,
        val_fd_images: int = 256,
    ):
        super().__init__(channels, resolution, sample_every_n_steps, val_fit_steps, val_fd_images)
        self.save_hyperparameters()
        self.automatic_optimization = False
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.mapping = (
            MappingNetwork(latent_dim, latent_dim, mapping_layers, num_classes) if mapping_layers else None
        )
        self.generator = Generator((latent_dim,), channels, resolution, width, num_classes)
        self.critic = Critic(channels, resolution, critic_width, num_classes)
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.long))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("fixed_z", torch.randn(64, latent_dim, generator=g), persistent=False)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from z (through the mapping network if any)."""
        w = self.mapping(z, labels) if self.mapping is not None else z
        return self.generator(w, labels)

    def configure_optimizers(self):
        hp = self.hparams
        gen_params = list(self.generator.parameters())
        if self.mapping is not None:
            gen_params += list(self.mapping.parameters())
        opt_g = torch.optim.Adam(gen_params, lr=hp.lr, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        labels = batch["label"]
        if (labels < 0).any() or (labels >= self.num_classes).any():
            raise ValueError(
                f"class-conditional WGAN-GP needs labels in [0, {self.num_classes}); got {labels}"
            )
        return labels

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real = from_unit(self._check_batch(batch))
        labels = self._labels(batch)
        n = real.shape[0]
        # critic step (Algorithm 1, lines 2-9)
        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generate(torch.randn(n, self.latent_dim, device=real.device), labels)
        wdist = self.critic(real, labels).mean() - self.critic(fake, labels).mean()
        gp = gradient_penalty(self.critic, real, fake, labels, self.hparams.gp_weight)
        loss_d = -wdist + gp
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.critic_steps += 1
        self.log_dict(
            {"train/loss_critic": loss_d, "train/wasserstein": wdist, "train/gp": gp}, prog_bar=True
        )
        # generator step every n_critic critic steps (lines 10-11)
        if int(self.critic_steps) % self.hparams.n_critic == 0:
            self.toggle_optimizer(opt_g)
            fake = self.generate(torch.randn(n, self.latent_dim, device=real.device), labels)
            loss_g = -self.critic(fake, labels).mean()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            self.log("train/loss_generator", loss_g, prog_bar=True)

    def sample_images(self, n: int) -> torch.Tensor:
        z = self.fixed_z[:n]
        labels = torch.arange(z.shape[0], device=z.device) % self.num_classes if self.num_classes else None
        return to_unit(self.generate(z, labels))

    def to_prior(self) -> Prior:
        return Prior(
            self.generator,
            "gaussian",
            (self.latent_dim,),
            self.image_shape,
            critic=self.critic,
            mapping=self.mapping,
            num_classes=self.num_classes,
            kind=self.kind,
        )
