"""How good a prior is, measured during training on held-out images (``validation_step`` /
``test_step`` of :mod:`lcm.modules`).

* Held-out reconstruction: fresh latents fitted to unseen images for a few Adam steps (generator
  frozen; projection onto the latent set after each step), then Lap-L1 (LCM paper eq. 2) and PSNR of
  the fit. This is how GLO/LCM are judged in the LCM paper (sec. 4, reconstruction of held-out
  images); the same fit is applied to WGAN-GP. Short fits, so only trends are meaningful.
* Offline Fréchet distance (the FID formula, Heusel et al. 2017) between pooled EfficientNet-Lite0
  head features of samples and of held-out images (:mod:`lcm.features`); NOT comparable with
  published FID.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lcm.collectives import gather_rows
from lcm.features import EfficientNetLite0Features, frechet_distance
from lcm.losses import lap_l1
from lcm.prior import Prior, from_unit

__all__ = ["FrechetTracker", "fit_latents", "reconstruction_scores", "default_fit_lr"]

MIN_SIDE = 32  # images smaller than this are upsampled before the feature extractor


def default_fit_lr(prior: Prior) -> float:
    """Adam rate of the held-out latent fit: 0.05 for Gaussian / sphere latents, a tenth of the box
    for LCM's phi (box 0.01 in the LCM paper)."""
    return 0.1 * float(prior.box) if prior.latent_kind == "convnet" else 0.05


def fit_latents(
    prior: Prior,
    x: torch.Tensor,
    steps: int,
    lr: float | None = None,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one latent per image of ``x`` (in [0, 1]) by Adam on Lap-L1 + MSE, generator frozen.

    Only the latents get a gradient (``torch.autograd.grad``): the prior's parameters are not touched
    and accumulate no ``.grad``. Works inside Lightning's ``inference_mode`` validation loop.

    Returns:
        ``(latents, reconstructions in [0, 1])``, both detached.

    Shape:
        - x: ``(B, C, H, W)``; latents ``(B, *prior.latent_shape)``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr = default_fit_lr(prior) if lr is None else float(lr)
    with torch.inference_mode(False), torch.enable_grad():
        target = from_unit(x.detach().clone())
        labels = None if labels is None else labels.clone()
        z = prior.sample_latent(x.shape[0], generator=generator).detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            out = from_unit(prior(z, labels))
            loss = lap_l1(out, target) + F.mse_loss(out, target)
            (z.grad,) = torch.autograd.grad(loss, [z])
            opt.step()
            with torch.no_grad():
                z.copy_(prior.project_latent(z))
        with torch.no_grad():
            recon = prior(z, labels)
    return z.detach(), recon.detach()


def reconstruction_scores(recon: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Batch means of Lap-L1 (on [-1, 1], as trained) and PSNR in dB (per image, on [0, 1])."""
    lap = lap_l1(from_unit(recon), from_unit(x))
    mse = (recon - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return {"lap_l1": lap, "psnr": (10 * torch.log10(1.0 / mse)).mean()}


class FrechetTracker:
    """Pooled features of up to ``max_images`` held-out images per epoch (per process), compared at the
    epoch's end with as many samples of the prior; features are gathered over DDP ranks first.

    Args:
        max_images: held-out images (and samples) per process and epoch; 0 disables the distance.
        extractor: images in [0, 1] -> list of feature maps (default EfficientNet-Lite0, last map).
    """

    def __init__(self, max_images: int, extractor=None):
        self.max_images = int(max_images)
        self.extractor = extractor
        self.real: list[torch.Tensor] = []

    @property
    def count(self) -> int:
        return sum(f.shape[0] for f in self.real)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.extractor is None:
            self.extractor = EfficientNetLite0Features()
        if isinstance(self.extractor, EfficientNetLite0Features) and min(images.shape[-2:]) < MIN_SIDE:
            # Lite0's strided 5x5 stages need at least 32 px
            scale = MIN_SIDE / min(images.shape[-2:])
            images = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        with torch.no_grad():
            return self.extractor(images)[-1].mean((-2, -1)).double()

    def add_real(self, images: torch.Tensor) -> None:
        room = self.max_images - self.count
        if room > 0:
            self.real.append(self.features(images[:room]))

    def compute(self, sample, device=None, batch_size: int = 64) -> torch.Tensor | None:
        """Fréchet distance of ``sample(n)`` images against the collected ones (then reset);
        ``None`` when fewer than two images were collected over all ranks. ``device``: where an empty
        rank's placeholder lives (the process group's device; the 1280-wide Lite0 head is assumed)."""
        n = self.count
        real = torch.cat(self.real) if self.real else torch.zeros(0, 1280, dtype=torch.float64, device=device)
        self.real = []
        fake = [self.features(sample(k)) for k in _chunks(n, batch_size)]
        fake_t = torch.cat(fake) if fake else real[:0]
        real, fake_t = gather_rows(real), gather_rows(fake_t)
        if min(real.shape[0], fake_t.shape[0]) < 2:
            return None
        return frechet_distance(real, fake_t)


def _chunks(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)] if n else []
