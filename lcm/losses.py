"""Losses for prior training: Laplacian-pyramid L1 (Lap-L1) and the WGAN-GP gradient penalty."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur (Burt & Adelson 1983), reflect padding, per channel."""
    k = x.new_tensor(_BINOMIAL) / 16.0
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode=mode), k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode=mode), k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def max_pyramid_levels(size: tuple[int, int]) -> int:
    """Levels until the coarsest side would drop below 4 pixels (at least 1)."""
    levels, s = 1, min(size)
    while s >= 8:
        s = (s + 1) // 2
        levels += 1
    return levels


def laplacian_pyramid(x: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
    """Laplacian pyramid (Burt & Adelson 1983): band-pass levels, then the low-pass residual last.

    ``L^j = G^j - up(G^{j+1})`` with ``G^0 = x``, ``G^{j+1} = down2(blur(G^j))`` and ``up`` bilinear
    to the size of ``G^j``; the last entry is ``G^{levels-1}``. Summing the levels back up
    (coarse to fine) reconstructs ``x`` exactly.

    Shape:
        - x: ``(B, C, H, W)``; output: ``levels`` tensors ``(B, C, H_j, W_j)``, ``H_j = ceil(H / 2^j)``.
    """
    if x.dim() != 4:
        raise ValueError(f"laplacian_pyramid expects (B, C, H, W), got {tuple(x.shape)}")
    levels = max_pyramid_levels(x.shape[-2:]) if levels is None else levels
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    out, g = [], x
    for _ in range(levels - 1):
        down = _blur(g)[..., ::2, ::2]
        out.append(g - F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False))
        g = down
    out.append(g)
    return out


def lap_l1(
    x: torch.Tensor, y: torch.Tensor, levels: int | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Laplacian-L1 distance (Bojanowski et al. 2018; LCM paper sec. 2): sum_j 2^(-2j) |L^j(x - y)|_1.

    The per-image value is divided by ``C * H * W`` (the full-resolution pixel count) so that it is on
    the scale of a mean absolute error; this constant does not change the minimiser.

    Args:
        x, y: images of the same shape.
        levels: pyramid levels (default: until the coarse side is under 8 pixels).
        reduction: ``"mean"`` over the batch, ``"sum"``, or ``"none"`` (per image, shape ``(B,)``).

    Shape:
        - x, y: ``(B, C, H, W)``. Output: scalar, or ``(B,)`` with ``reduction="none"``.
    """
    if x.shape != y.shape:
        raise ValueError(f"lap_l1: x {tuple(x.shape)} and y {tuple(y.shape)} must have the same shape")
    pyramid = laplacian_pyramid(x - y, levels)  # the pyramid is linear: L^j(x) - L^j(y) = L^j(x - y)
    per_image = sum(4.0**-j * lvl.abs().flatten(1).sum(1) for j, lvl in enumerate(pyramid))
    per_image = per_image / x[0].numel()
    if reduction == "none":
        return per_image
    if reduction == "sum":
        return per_image.sum()
    if reduction == "mean":
        return per_image.mean()
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class LapL1Loss(nn.Module):
    """Module form of :func:`lap_l1` (optionally plus ``mse_weight * MSE``, as LCM sec. 2 adds)."""

    def __init__(self, levels: int | None = None, mse_weight: float = 0.0):
        super().__init__()
        self.levels, self.mse_weight = levels, mse_weight

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mse_weight={self.mse_weight}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = lap_l1(x, y, self.levels)
        if self.mse_weight:
            loss = loss + self.mse_weight * F.mse_loss(x, y)
        return loss


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017, eq. 3; lambda = 10): weight * E[(||grad D(x_hat)|| - 1)^2].

    ``x_hat`` are random interpolates between real and fake samples (one uniform weight per sample).

    Shape:
        - real, fake: ``(B, C, H, W)``; labels ``(B,)`` or None. Output: scalar.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} must have the same shape")
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat) if labels is None else critic(x_hat, labels)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return weight * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
