"""The prior interface that every restoration method consumes.

A :class:`Prior` wraps a trained generator (and, where the model has them, a critic, a mapping
network and a latent ConvNet) behind one set of calls that work in image range ``[0, 1]``:

* ``prior(latent, labels=None)`` -> images ``(B, C, H, W)`` in ``[0, 1]`` (differentiable);
* ``prior.latent_kind`` in ``{"gaussian", "sphere", "convnet"}`` and ``prior.latent_shape``:
  what a restoration method optimises per image. For ``"convnet"`` (LCM) the latent *is* the
  flat parameter vector ``phi`` of the per-image latent ConvNet (LCM eq. 4), box-constrained;
* ``prior.sample_latent(n, generator=None)``; ``prior.project_latent(latent)`` (sphere / box
  constraint; identity for Gaussian latents); ``prior.latent_penalty(latent)`` (per-image
  negative log-prior up to a constant, zero where the latent set is bounded);
* ``prior.code(latent, labels)`` -> the generator input ``w`` (mapping network, or the latent
  ConvNet applied to its fixed noise); ``prior.synthesize(w, labels)`` -> images in ``[0, 1]``;
* ``prior.generator.blocks`` ordered from the latent side to the image side;
* ``prior.critic`` (``None`` if the model has none) whose ``features(x)`` and ``forward(x)`` take
  images in ``[0, 1]``; ``prior.mapping`` (identity if none); ``prior.num_classes`` (0 if
  unconditional); ``prior.image_shape``.

Networks work in ``[-1, 1]``; :func:`to_unit` / :func:`from_unit` are the one place that converts.
A user's own generator plugs in by passing it here: it needs ``forward(w, labels=None)`` returning
``[-1, 1]`` images and a ``blocks`` ``nn.ModuleList``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

LatentKind = Literal["gaussian", "sphere", "convnet"]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Network range [-1, 1] -> image range [0, 1]."""
    return (x + 1.0) * 0.5


def from_unit(x: torch.Tensor) -> torch.Tensor:
    """Image range [0, 1] -> network range [-1, 1]."""
    return x * 2.0 - 1.0


class UnitRangeCritic(nn.Module):
    """Wraps a critic that works in [-1, 1] so that it takes images in [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.features(from_unit(x))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            return self.net(from_unit(x))
        return self.net(from_unit(x), labels)


class Prior(nn.Module):
    """A trained image prior behind the interface every method consumes (see module docstring)."""

    def __init__(
        self,
        generator: nn.Module,
        latent_kind: LatentKind,
        latent_shape: tuple[int, ...],
        image_shape: tuple[int, int, int],
        critic: nn.Module | None = None,
        mapping: nn.Module | None = None,
        latent_net: nn.Module | None = None,
        noise: torch.Tensor | None = None,
        box: float | None = None,
        num_classes: int = 0,
        kind: str = "custom",
        labels_in_code: bool = False,
    ):
        super().__init__()
        if latent_kind not in ("gaussian", "sphere", "convnet"):
            raise ValueError(f"latent_kind must be 'gaussian', 'sphere' or 'convnet', got {latent_kind!r}")
        if not hasattr(generator, "blocks"):
            raise ValueError("generator must expose `blocks` (an nn.ModuleList ordered latent -> image)")
        if latent_kind == "convnet" and (latent_net is None or noise is None or box is None):
            raise ValueError("a 'convnet' latent needs latent_net, its fixed noise and the box bound B")
        self.generator = generator
        self.critic = UnitRangeCritic(critic) if critic is not None else None
        self.mapping = mapping if mapping is not None else nn.Identity()
        self.latent_net = latent_net
        if noise is not None:
            self.register_buffer("noise", noise)
        else:
            self.noise = None
        self.latent_kind = latent_kind
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.box = box
        self.num_classes = int(num_classes)
        # the class enters through code() only (StyleGAN's mapping): synthesize(w) needs no labels
        self.labels_in_code = bool(labels_in_code)
        self.kind = kind
        self.register_buffer("latent_mean", None)  # set by fit_latent_distribution
        self.register_buffer("latent_scale", None)

    def fit_latent_distribution(self, latents: torch.Tensor, max_full_dim: int = 1024) -> Prior:
        """Sample new latents from a Gaussian fitted to trained per-image latents (GLO, LCM).

        Bojanowski et al. (GLO) sample by fitting a full-covariance Gaussian to the learned
        codes; uniform draws on the sphere or in the box give meaningless images. Covariance is full
        up to ``max_full_dim`` dimensions, diagonal beyond. ``sample_latent`` then draws from it (and
        projects onto the latent set).

        Shape:
            - latents: ``(N, *latent_shape)`` with N >= 2.
        """
        flat = latents.detach().flatten(1).double()
        if flat.shape[0] < 2 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"latents must be (N >= 2, *{self.latent_shape}), got {tuple(latents.shape)}")
        ref = next(self.generator.parameters())
        mean = flat.mean(0)
        centred = flat - mean
        if flat.shape[1] <= max_full_dim:
            cov = centred.T @ centred / (flat.shape[0] - 1)
            jitter = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
            scale = torch.linalg.cholesky(cov + jitter * torch.eye(cov.shape[0], dtype=cov.dtype))
        else:
            scale = centred.pow(2).sum(0).div(flat.shape[0] - 1).sqrt()
        self.latent_mean = mean.to(ref)
        self.latent_scale = scale.to(ref)
        return self

    # -- latents ---------------------------------------------------------------------------
    @property
    def blocks(self) -> nn.ModuleList:
        return self.generator.blocks

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents from the prior's latent distribution (seeded by ``generator``).

        The draw happens on ``generator``'s device (a CPU generator gives the same latents for a CPU
        and a GPU prior); the result is on the prior's device.
        """
        ref = next(self.generator.parameters())
        shape = (n, *self.latent_shape)
        dev = generator.device if generator is not None else ref.device
        if self.latent_mean is not None:  # fitted to the training latents (GLO, Bojanowski et al.)
            eps = torch.randn(n, self.latent_mean.numel(), generator=generator, device=dev, dtype=ref.dtype)
            eps = eps.to(ref.device)
            scale = self.latent_scale.to(eps)
            flat = eps @ scale.T if scale.dim() == 2 else eps * scale
            return self.project_latent((flat + self.latent_mean.to(eps)).view(shape))
        if self.latent_kind == "convnet":
            u = torch.rand(shape, generator=generator, device=dev, dtype=ref.dtype).to(ref.device)
            return (u * 2.0 - 1.0) * self.box
        z = torch.randn(shape, generator=generator, device=dev, dtype=ref.dtype).to(ref.device)
        return self.project_latent(z)

    def project_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Map a latent onto the prior's latent set (GLO: unit sphere; LCM eq. 1: box [-B, B])."""
        if self.latent_kind == "sphere":
            flat = latent.flatten(1)
            return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)).view_as(latent)
        if self.latent_kind == "convnet":
            return latent.clamp(-self.box, self.box)
        return latent

    def latent_penalty(self, latent: torch.Tensor) -> torch.Tensor:
        """Per-image negative log-prior (up to constants): ||z||^2 / d for Gaussian latents."""
        if self.latent_kind == "gaussian":
            return latent.flatten(1).pow(2).mean(dim=1)
        return latent.new_zeros(latent.shape[0])

    # -- images ----------------------------------------------------------------------------
    def code(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generator input for ``latent``: f_phi(s) for LCM, mapping(z, c) otherwise."""
        if self.latent_kind == "convnet":
            return self.latent_net(latent, self.noise)
        if isinstance(self.mapping, nn.Identity):
            return latent
        self._check_labels(latent.shape[0], labels, needed=False)
        return self.mapping(latent, labels)

    def synthesize(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] from generator inputs ``w`` (``labels`` not needed where ``labels_in_code``:
        the codes already carry the class)."""
        self._check_labels(w.shape[0], labels, needed=not self.labels_in_code)
        out = self.generator(w, labels) if self.num_classes else self.generator(w)
        return to_unit(out)

    def forward(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesize(self.code(latent, labels), labels)

    def check_image_shape(self, shape: tuple[int, ...] | torch.Size) -> None:
        """Raise ValueError unless images of ``shape`` ((C, H, W) or (B, C, H, W)) match the generator."""
        got = tuple(int(s) for s in shape)[-3:]
        if len(tuple(shape)) not in (3, 4) or got != self.image_shape:
            c, h, w = self.image_shape
            raise ValueError(
                f"images of shape {tuple(shape)} do not match this {self.kind} prior's output (C, H, W) = "
                f"{self.image_shape}: resize/convert the data to {c} channel(s) at {h}x{w}, or train a prior "
                "at that size"
            )

    def _check_labels(self, n: int, labels: torch.Tensor | None, needed: bool = True) -> None:
        if self.num_classes and labels is None and needed:
            raise ValueError(f"this prior is class-conditional ({self.num_classes} classes): pass labels")
        if labels is None:
            return
        if isinstance(labels, torch.Tensor) and labels.dtype == torch.bool:
            raise ValueError(
                "labels is a bool tensor: pass integer class indices (B,) (a mask is not a class; "
                "labels.long() if True/False are classes 1/0)"
            )
        if labels.shape[0] != n:
            raise ValueError(f"labels has {labels.shape[0]} entries for a batch of {n}")

    def extra_repr(self) -> str:
        return (
            f"kind={self.kind}, latent_kind={self.latent_kind}, latent_shape={self.latent_shape}, "
            f"image_shape={self.image_shape}, num_classes={self.num_classes}, "
            f"latent_dim={math.prod(self.latent_shape)}"
        )
