"""Held-out samples of a prior: its own images as an in-range test set (IAGAN's "in-range" images).

Sample ``i`` is ``prior(z_i)`` with ``z_i`` drawn from a CPU generator seeded ``HELD_OUT_SEED + i``: a seed
no method uses (``restore`` seeds its starts and candidate pools with ``seed + index``, the CLI with
31-bit keys), so no method starts from the latent that made its target.
"""

from __future__ import annotations

import torch

from lcm.prior import Prior

__all__ = ["HELD_OUT_SEED", "held_out_samples"]

HELD_OUT_SEED = 2**40


@torch.no_grad()
def held_out_samples(prior: Prior, n: int, start: int = 0) -> torch.Tensor:
    """Samples ``start .. start + n - 1`` of ``prior`` (unconditional priors), ``(n, C, H, W)`` in [0, 1].

    Each sample depends on its index only (not on ``n``), on any device.
    """
    if prior.num_classes:
        raise ValueError("held-out samples are drawn from unconditional priors only")
    out = []
    for i in range(start, start + int(n)):
        g = torch.Generator().manual_seed(HELD_OUT_SEED + i)
        out.append(prior(prior.sample_latent(1, generator=g)).clamp(0, 1).cpu())
    if not out:
        return torch.zeros(0, *prior.image_shape)
    return torch.cat(out)
