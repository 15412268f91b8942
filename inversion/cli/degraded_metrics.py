"""Metrics that need no ground truth: measurement consistency of a restoration ``x`` with its ``y``.

* ``residual``: ``||A(x) - y||_2`` per image;
* inpainting: ``hole_fraction`` (share of pixels to fill) and ``hole_seam``, the mean absolute step
  across the hole's border (restored hole pixel vs. its kept 4-neighbour): a visible seam is large.

``residual_image`` shows ``|A(x) - y|`` at the image's size (image-shaped measurements up-sampled by
nearest neighbour, vectors through ``A^dagger``), times ``RESIDUAL_GAIN``, clipped to [0, 1].
"""

from __future__ import annotations

import torch

from inversion.metrics import measurement_residual

__all__ = ["RESIDUAL_GAIN", "no_truth_metrics", "residual_image"]

RESIDUAL_GAIN = 4.0


@torch.no_grad()
def no_truth_metrics(x: torch.Tensor, y: torch.Tensor, op) -> dict[str, torch.Tensor]:
    out = {"residual": measurement_residual(x, y, op)}
    mask_for = getattr(op, "mask_for", None)
    if mask_for is not None:
        keep = mask_for(x).to(x.dtype).expand(x.shape[0], 1, *x.shape[-2:])
        hole = 1 - keep
        out["hole_fraction"] = hole.flatten(1).mean(1)
        steps, count = torch.zeros(x.shape[0], dtype=x.dtype), torch.zeros(x.shape[0], dtype=x.dtype)
        for dim in (-1, -2):  # horizontal and vertical neighbours
            n = x.shape[dim] - 1
            a, b = x.narrow(dim, 0, n), x.narrow(dim, 1, n)
            ha, hb = hole.narrow(dim, 0, n), hole.narrow(dim, 1, n)
            border = (ha * (1 - hb) + hb * (1 - ha)).expand_as(a)
            steps += ((a - b).abs() * border).flatten(1).sum(1).cpu()
            count += border.flatten(1).sum(1).cpu()
        out["hole_seam"] = (steps / count.clamp_min(1)).to(x.device)
    return out


@torch.no_grad()
def residual_image(x: torch.Tensor, y: torch.Tensor, op) -> torch.Tensor:
    r = op.A(x) - y
    if r.dim() == 4:
        if r.shape[-2:] != x.shape[-2:]:
            r = torch.nn.functional.interpolate(r, size=x.shape[-2:], mode="nearest")
    elif getattr(op, "linear", False):
        r = op.A_dagger(r)
    else:
        return torch.zeros_like(x)
    r = r.abs()
    if r.shape[1] != x.shape[1]:
        r = r.expand(-1, x.shape[1], -1, -1) if r.shape[1] == 1 else r.mean(1, keepdim=True)
    return (RESIDUAL_GAIN * r).clamp(0, 1)
