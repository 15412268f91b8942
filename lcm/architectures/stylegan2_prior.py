"""A StyleGAN2-ADA ``G_ema`` (and ``D``) behind :class:`lcm.Prior`.

* ``prior.latent``: Gaussian ``z`` ``(z_dim,)``; ``prior.code(z, labels)`` = the mapping network's ``w``
  ``(B, w_dim)`` (one-hot labels for ``c_dim > 0``; truncation ``psi`` towards ``w_avg``, a
  :func:`stylegan2_prior` option);
* ``prior.synthesize(ws)`` = ``(G_ema.synthesis(ws, noise_mode='const') + 1) / 2`` for W+ codes
  ``(B, num_ws, w_dim)``, W codes ``(B, w_dim)`` (broadcast to every layer), or W / W+ codes packed with
  per-image noise maps (:meth:`StyleSynthesis.pack`, used when the noise inputs are optimised);
* ``prior.generator.blocks`` = the synthesis blocks ``b4 ... b{R}``; ``prior.generator.num_ws``;
* ``prior.critic`` from ``D``: ``features`` = each residual block's output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lcm.architectures.stylegan2 import Discriminator, Generator, run_blocks
from lcm.prior import Prior

__all__ = ["StyleCritic", "StyleMapping", "StyleSynthesis", "stylegan2_prior"]


def _one_hot(labels: torch.Tensor | None, c_dim: int, n: int, ref: torch.Tensor) -> torch.Tensor | None:
    if c_dim == 0:
        return None
    if labels is None:
        raise ValueError(f"this StyleGAN2 prior is class-conditional ({c_dim} classes): pass labels")
    labels = torch.as_tensor(labels, device=ref.device)
    if labels.dtype == torch.bool:
        raise ValueError("labels is a bool tensor: pass integer class indices (B,) or one-hot rows (B, C)")
    if labels.dim() == 2:  # already one-hot / soft labels
        return labels.to(ref.dtype)
    labels = labels.long().view(-1)
    if labels.shape[0] != n or (labels < 0).any() or (labels >= c_dim).any():
        raise ValueError(f"labels must be {n} class indices in [0, {c_dim}), got {labels.tolist()}")
    return F.one_hot(labels, c_dim).to(ref.dtype)


class StyleMapping(nn.Module):
    """``(z, labels) -> w`` ``(B, w_dim)`` with truncation ``w_avg + psi (w - w_avg)``."""

    def __init__(self, mapping: nn.Module, truncation_psi: float = 1.0):
        super().__init__()
        self.net = mapping
        # a buffer, so that it is part of the weights' fingerprint (CRI's centroid cache keys on it)
        self.register_buffer("truncation_psi", torch.tensor(float(truncation_psi)))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        c = _one_hot(labels, self.net.c_dim, z.shape[0], z)
        return self.net(z, c, truncation_psi=float(self.truncation_psi), broadcast=False)


class StyleSynthesis(nn.Module):
    """The synthesis network as the prior's generator: ``forward(w)`` -> images in [-1, 1].

    ``w``: ``(B, w_dim)`` (W, broadcast), ``(B, num_ws, w_dim)`` (W+), or a flat ``(B, P)`` packing of
    either with one noise map per noise input (:meth:`pack`).
    """

    def __init__(self, synthesis: nn.Module, noise_mode: str = "const"):
        super().__init__()
        self.blocks = nn.ModuleList(synthesis.blocks)
        self.num_ws, self.w_dim = int(synthesis.num_ws), int(synthesis.w_dim)
        self.noise_shapes = synthesis.noise_shapes()
        self.noise_numel = sum(h * w for h, w in self.noise_shapes)
        self.noise_mode = noise_mode

    def const_noise(self) -> torch.Tensor:
        """The stored noise maps (``noise_mode='const'``), flattened and concatenated ``(noise_numel,)``."""
        return torch.cat([m.noise_const.flatten() for b in self.blocks for m in b.noise_layers()])

    def pack(self, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``(B, P)``: W ``(B, w_dim)`` or W+ ``(B, num_ws, w_dim)`` codes, then flat noise ``(B, N)``."""
        return torch.cat([w.flatten(1), noise.flatten(1)], dim=1)

    def unpack(self, w: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """``(ws (B, num_ws, w_dim), noise maps or None)`` from any accepted ``w``."""
        b = w.shape[0]
        if w.dim() == 3:
            return w, None
        if w.dim() != 2:
            raise ValueError(
                f"w must be (B, {self.w_dim}), (B, {self.num_ws}, {self.w_dim}) or packed (B, P)"
            )
        p = w.shape[1]
        if p == self.w_dim:
            return w.unsqueeze(1).expand(-1, self.num_ws, -1), None
        for k in (1, self.num_ws):
            if p == k * self.w_dim + self.noise_numel:
                ws = w[:, : k * self.w_dim].reshape(b, k, self.w_dim).expand(-1, self.num_ws, -1)
                flat, maps, i = w[:, k * self.w_dim :], [], 0
                for h, ww in self.noise_shapes:
                    maps.append(flat[:, i : i + h * ww].reshape(b, 1, h, ww))
                    i += h * ww
                return ws, maps
        raise ValueError(
            f"w of shape {tuple(w.shape)} is neither W ({self.w_dim}), W+ ({self.num_ws}, {self.w_dim}) nor "
            f"a packing of one of them with {self.noise_numel} noise values"
        )

    def forward(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        ws, noise = self.unpack(w)
        return run_blocks(self.blocks, ws, self.noise_mode, noise)


class StyleCritic(nn.Module):
    """``D`` with integer labels: ``forward(x, labels)`` logits ``(B, 1)``, ``features(x)`` block outputs."""

    def __init__(self, d: Discriminator):
        super().__init__()
        self.net = d

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.features(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, _one_hot(labels, self.net.c_dim, x.shape[0], x))


def stylegan2_prior(
    g: Generator, d: Discriminator | None = None, truncation_psi: float = 1.0, kind: str = "stylegan2"
) -> Prior:
    """A :class:`lcm.Prior` over a StyleGAN2-ADA generator (see the module docstring)."""
    if not 0.0 <= truncation_psi <= 1.0 or math.isnan(truncation_psi):
        raise ValueError(f"truncation_psi must lie in [0, 1], got {truncation_psi}")
    prior = Prior(
        StyleSynthesis(g.synthesis),
        "gaussian",
        (g.z_dim,),
        (g.img_channels, g.img_resolution, g.img_resolution),
        critic=None if d is None else StyleCritic(d),
        mapping=StyleMapping(g.mapping, truncation_psi),
        num_classes=g.c_dim,
        kind=kind,
        labels_in_code=True,  # NVIDIA's synthesis(ws) takes no labels: W codes carry the class
    )
    return prior.eval()
