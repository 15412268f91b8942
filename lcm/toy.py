"""A toy prior for tests, examples and the CLI's smoke runs: tiny generator, synthetic blob images.

Nothing here is a paper's model. :class:`TinyGenerator` implements the generator contract of the
project (``forward(w, labels=None)`` -> ``[-1, 1]`` images, ``blocks`` ordered latent -> image) at
a size that fits in a unit test; :func:`fit_toy_prior` fits it (as the decoder of a small
autoencoder) to images of random Gaussian blobs so that held-out blob images lie near, but not on,
its range — the situation that CSGM / IAGAN are about.
"""

from __future__ import annotations

import torch
from torch import nn

from lcm.prior import Prior, from_unit

__all__ = ["TinyGenerator", "blob_images", "fit_toy_prior", "tiny_prior"]


class TinyGenerator(nn.Module):
    """Linear -> 4x4 map -> two upsampling conv blocks -> ``channels x 16 x 16`` tanh images.

    Shape:
        - w: ``(B, latent_dim)``; output ``(B, channels, 16, 16)`` in ``[-1, 1]``.
    """

    def __init__(self, latent_dim: int = 8, channels: int = 1, width: int = 16, norm: bool = True):
        super().__init__()
        self.latent_dim = latent_dim
        bn = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(latent_dim, width * 16), nn.Unflatten(1, (width, 4, 4)), nn.ReLU()),
                nn.Sequential(
                    nn.Upsample(scale_factor=2), nn.Conv2d(width, width, 3, padding=1), bn(width), nn.ReLU()
                ),
                nn.Sequential(
                    nn.Upsample(scale_factor=2), nn.Conv2d(width, channels, 3, padding=1), nn.Tanh()
                ),
            ]
        )

    def forward(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            w = block(w)
        return w


def blob_images(
    n: int, size: int = 16, channels: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` images of one or two Gaussian blobs (random centre, width, brightness) in ``[0, 1]``.

    Shape:
        - output: ``(n, channels, size, size)``.
    """
    g = generator
    coords = torch.linspace(0.0, 1.0, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.zeros(n, channels, size, size)
    for _ in range(2):
        centre = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
        width = 0.08 + 0.12 * torch.rand(n, 1, generator=g)
        amp = 0.3 + 0.6 * torch.rand(n, channels, generator=g)
        d2 = (xx - centre[:, 0, None, None]) ** 2 + (yy - centre[:, 1, None, None]) ** 2
        blob = torch.exp(-d2 / (2 * width[:, :, None] ** 2))
        out = out + amp[:, :, None, None] * blob[:, None]
    return out.clamp(0.0, 1.0)


def tiny_prior(seed: int = 0, latent_dim: int = 8, channels: int = 1, dtype: str = "float32") -> Prior:
    """An untrained (seeded) :class:`TinyGenerator` wrapped as a Gaussian-latent :class:`lcm.Prior`.

    Importable as ``lcm.toy:tiny_prior`` — the CLI's ``--prior`` accepts such factories.
    """
    torch.manual_seed(seed)
    gen = TinyGenerator(latent_dim=latent_dim, channels=channels).to(getattr(torch, dtype)).eval()
    return Prior(gen, "gaussian", (latent_dim,), (channels, 16, 16), kind="toy")


def fit_toy_prior(
    steps: int = 400, seed: int = 0, latent_dim: int = 8, n_train: int = 512, width: int = 16
) -> tuple[Prior, torch.Tensor]:
    """Fit a :class:`TinyGenerator` as the decoder of a small autoencoder on blob images.

    The codes pass a non-affine BatchNorm so that they are roughly standard normal, which makes
    the Gaussian latent of the returned prior a sensible place to start a search from.

    Returns:
        ``(prior, train_images)``; the prior's generator is in eval mode and frozen.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data = blob_images(n_train, generator=g)
    gen = TinyGenerator(latent_dim=latent_dim, width=width)
    enc = nn.Sequential(
        nn.Conv2d(1, width, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * 16, latent_dim),
        nn.BatchNorm1d(latent_dim, affine=False),
    )
    opt = torch.optim.Adam([*gen.parameters(), *enc.parameters()], lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, n_train, (64,), generator=g)
        x = data[idx]
        loss = (gen(enc(from_unit(x))) - from_unit(x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    gen.eval().requires_grad_(False)
    return Prior(gen, "gaussian", (latent_dim,), (1, 16, 16), kind="toy"), data
