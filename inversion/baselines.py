"""Prior-free baselines: TV-regularised reconstruction and Deep Image Prior.

* ``restore(y, op, None, method="tv")``: ``min_x 1/2 ||A x - y||^2 + lambda TV(x)`` over ``x`` in
  [0, 1], anisotropic TV (the value of ``kornia.losses.total_variation``), solved by the
  primal-dual algorithm of Chambolle & Pock (2011, Alg. 1) with ``K = [A; grad]``. Works for any
  :class:`~inversion.operators.LinearOperator`; starts from ``A^dagger y``.
* ``restore(y, op, None, method="dip")``: Deep Image Prior (Ulyanov et al. 2018): a small
  encoder-decoder with skip connections fitted per image from fixed noise to ``||A(f(z)) - y||^2``
  with Adam, the input noise perturbed at each step; the LAST iterate is returned (DIP's early stop
  is its regulariser). Scaled down for 32-64 px (the paper's "skip" net has 5 levels of 128
  channels and runs 2,000-5,000 steps).

Neither uses a prior: pass ``prior=None`` (any prior is ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inversion.engine import FitResult
from inversion.methods import MethodConfig, register_method

__all__ = ["DIPConfig", "DIPNet", "TVConfig", "dip", "grad2d", "tv", "tv_objective", "tv_restore"]


# -- TV ------------------------------------------------------------------------------------------
def grad2d(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary. Shape: (B, C, H, W) -> (B, 2, C, H, W)."""
    dh = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    dw = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return torch.stack([dh, dw], dim=1)


def grad2d_adjoint(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`grad2d` (minus the divergence). Shape: (B, 2, C, H, W) -> (B, C, H, W)."""
    ph, pw = p[:, 0], p[:, 1]
    out = torch.zeros_like(ph)
    out[..., :-1, :] -= ph[..., :-1, :]
    out[..., 1:, :] += ph[..., :-1, :]
    out[..., :, :-1] -= pw[..., :, :-1]
    out[..., :, 1:] += pw[..., :, :-1]
    return out


def tv_objective(x: torch.Tensor, y: torch.Tensor, operator: nn.Module, weight: float) -> torch.Tensor:
    """Per-image ``1/2 ||A x - y||^2 + weight * TV(x)`` (anisotropic TV, as kornia's). Shape: (B,)."""
    import kornia

    data = 0.5 * (operator.A(x) - y).pow(2).flatten(1).sum(1)
    return data + weight * kornia.losses.total_variation(x, reduction="sum").sum(-1)


def _operator_norm_sq(
    operator: nn.Module, shape: Sequence[int], like: torch.Tensor, iters: int = 30
) -> float:
    """``||A||^2`` by power iteration on ``A^T A`` (seeded: deterministic)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn((1, *shape[1:]), generator=g, dtype=like.dtype).to(like.device)
    one = operator.repeated(1) if hasattr(operator, "repeated") else operator
    lam = 1.0
    for _ in range(iters):
        v = v / v.norm().clamp_min(1e-12)
        w = one.A_adjoint(one.A(v))
        lam = float((w * v).sum())
        v = w
    return max(lam, 1e-12)


def tv_restore(
    y: torch.Tensor,
    operator: nn.Module,
    image_shape: Sequence[int],
    weight: float = 0.01,
    steps: int = 2000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TV-regularised reconstruction by Chambolle-Pock (2011, Alg. 1, theta = 1).

    Args:
        y: measurements ``(B, ...)`` of the linear ``operator``.
        image_shape: ``(C, H, W)`` of the unknown images.
        weight: lambda of the TV term (images in [0, 1]; the data term is a sum over measurements).
        steps: primal-dual iterations.

    Returns:
        the restorations ``(B, C, H, W)`` in [0, 1] and the objective per step ``(steps + 1, B)``.
    """
    if not getattr(operator, "linear", False):
        raise ValueError(f"TV reconstruction needs a linear operator, got {type(operator).__name__}")
    if not weight >= 0 or steps < 1:
        raise ValueError(f"tv_weight must be >= 0 and tv_steps >= 1, got {weight!r}, {steps!r}")
    shape = (y.shape[0], *(int(s) for s in image_shape))
    with torch.no_grad():
        x = operator.A_dagger(y).reshape(shape).clamp(0, 1)
        # ||K||^2 <= ||A||^2 + ||grad||^2, ||grad||^2 <= 8 in 2-D
        L = (_operator_norm_sq(operator, shape, y) + 8.0) ** 0.5
        tau = sigma = 0.99 / L
        xbar = x.clone()
        p = torch.zeros_like(y)  # dual of the data term
        q = torch.zeros_like(grad2d(x))  # dual of the TV term
        hist = [tv_objective(x, y, operator, weight)]
        for _ in range(steps):
            # prox of sigma F*: F(u) = 1/2 ||u - y||^2 -> (p + sigma (A xbar - y)) / (1 + sigma)
            p = (p + sigma * (operator.A(xbar) - y)) / (1.0 + sigma)
            # prox of sigma G*: G = weight ||.||_1 -> projection onto the l-inf ball of radius weight
            q = (q + sigma * grad2d(xbar)).clamp(-weight, weight)
            x_new = (x - tau * (operator.A_adjoint(p) + grad2d_adjoint(q))).clamp(0, 1)
            xbar = 2 * x_new - x
            x = x_new
            hist.append(tv_objective(x, y, operator, weight))
    return x, torch.stack(hist)


@dataclass
class TVConfig(MethodConfig):
    """Options of ``restore(..., method="tv")``: ``tv_weight`` (lambda) and ``tv_steps``.

    lambda = 0.01 and 2,000 steps suit noiseless 32 px tasks on [0, 1] images (a 12 px hole needs
    ~2,000 steps to fill); raise lambda with the noise level.
    """

    tv_weight: float = 0.01
    tv_steps: int = 2000


def _image_shape(prior, operator: nn.Module, y: torch.Tensor) -> tuple[int, ...]:
    if prior is not None:
        return tuple(prior.image_shape)
    shape = getattr(operator, "image_shape", None)
    if shape is None and y.dim() == 4:
        shape = tuple(operator.A_adjoint(y[:1]).shape[1:])
    if shape is None:
        raise ValueError(
            "flat measurements: pass a prior (for its image_shape) or an operator with image_shape"
        )
    return tuple(shape)[-3:]


def tv(prior, operator, y, seeds, labels=None, cfg=None, noisy=False, callbacks=(), loss_terms=None):
    """The registered ``restore(..., method="tv")`` entry (see :func:`tv_restore`)."""
    cfg = cfg or TVConfig()
    x, hist = tv_restore(y, operator, _image_shape(prior, operator, y), cfg.tv_weight, cfg.tv_steps)
    mse = (operator.A(x) - y).pow(2).flatten(1).mean(1)
    steps = torch.full((y.shape[0],), cfg.tv_steps, dtype=torch.long)
    return FitResult(x, x.clone(), hist[-1], mse, hist, steps), hist


# -- DIP -----------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, padding_mode="reflect"), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)
    )


class DIPNet(nn.Module):
    """DIP's "skip" encoder-decoder (Ulyanov et al., supp. Fig. 21), scaled down: ``depth`` levels of
    ``width`` channels, strided-conv down, bilinear up, a 1x1 skip of ``skip`` channels per level,
    sigmoid output.

    Shape:
        - z: ``(B, in_channels, H, W)`` with H, W divisible by ``2**depth`` -> ``(B, out_channels, H, W)``.
    """

    def __init__(
        self, in_channels: int = 32, out_channels: int = 3, width: int = 32, depth: int = 3, skip: int = 4
    ):
        super().__init__()
        self.depth = depth
        self.down = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.up = nn.ModuleList()
        c = in_channels
        for _ in range(depth):
            self.skips.append(nn.Sequential(nn.Conv2d(c, skip, 1), nn.BatchNorm2d(skip), nn.LeakyReLU(0.2)))
            self.down.append(nn.Sequential(_conv(c, width, 2), _conv(width, width)))
            c = width
        for _ in range(depth):
            self.up.append(
                nn.Sequential(
                    nn.BatchNorm2d(width + skip), _conv(width + skip, width), _conv(width, width, 1)
                )
            )
        self.head = nn.Conv2d(width, out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] % (2**self.depth) or z.shape[-2] % (2**self.depth):
            raise ValueError(
                f"DIP input {tuple(z.shape[-2:])} must be divisible by 2**depth = {2**self.depth}"
            )
        skips, h = [], z
        for sk, dn in zip(self.skips, self.down, strict=True):
            skips.append(sk(h))
            h = dn(h)
        for up, s in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, size=s.shape[-2:], mode="bilinear", align_corners=False)
            h = up(torch.cat([h, s], 1))
        return torch.sigmoid(self.head(h))


@dataclass
class DIPConfig(MethodConfig):
    """Options of ``restore(..., method="dip")``.

    DIP's settings (Ulyanov et al., supp.): Adam lr 0.01, input noise of 32 channels scaled by 0.1,
    perturbed by N(0, (1/30)^2) each step; 2,000+ steps on large images. Scaled: ``dip_steps=500``,
    ``dip_width=32``, ``dip_depth=3`` for 32 px images.
    """

    dip_steps: int = 500
    dip_lr: float = 0.01
    dip_width: int = 32
    dip_depth: int = 3
    dip_input_channels: int = 32
    dip_noise_reg: float = 1.0 / 30.0


def dip(prior, operator, y, seeds, labels=None, cfg=None, noisy=False, callbacks=(), loss_terms=None):
    """The registered ``restore(..., method="dip")`` entry: a fresh network per image, from its seed."""
    cfg = cfg or DIPConfig()
    c, h, w = _image_shape(prior, operator, y)
    images, hists = [], []
    for i, s in enumerate(seeds):
        gen = torch.Generator(device="cpu").manual_seed(int(s))
        torch.manual_seed(int(s))  # initial weights of this image's network
        net = DIPNet(cfg.dip_input_channels, c, cfg.dip_width, cfg.dip_depth).to(y.device)
        z = (torch.rand(1, cfg.dip_input_channels, h, w, generator=gen) * 0.1).to(y.device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.dip_lr)
        yi = y[i : i + 1]
        op_i = _row_operator(operator, i, y.shape[0])
        hist = []
        for _ in range(cfg.dip_steps):
            zin = (
                z + cfg.dip_noise_reg * torch.randn(z.shape, generator=gen).to(z) if cfg.dip_noise_reg else z
            )
            loss = (op_i.A(net(zin)) - yi).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hist.append(loss.detach())
        with torch.no_grad():
            net.eval()
            x = net(z)
            hist.append((op_i.A(x) - yi).pow(2).mean())
        images.append(x)
        hists.append(torch.stack(hist))
    x = torch.cat(images)
    hist = torch.stack(hists, dim=1)
    mse = (operator.A(x) - y).pow(2).flatten(1).mean(1)
    steps = torch.full((y.shape[0],), cfg.dip_steps, dtype=torch.long)
    return FitResult(x, x.clone(), hist[-1], mse, hist, steps), hist


def _row_operator(operator: nn.Module, i: int, n: int) -> nn.Module:
    """The operator that measures a single row as row ``i`` of an ``n``-row batch (per-image masks)."""
    if n == 1 or not (hasattr(operator, "row_dependent") and operator.row_dependent()):
        return operator
    return _Rows(operator, i, n)


class _Rows(nn.Module):
    def __init__(self, operator: nn.Module, i: int, n: int):
        super().__init__()
        self.op, self.i, self.n = operator, i, n

    def A(self, x: torch.Tensor) -> torch.Tensor:
        full = x.expand(self.n, *x.shape[1:])
        return self.op.A(full)[self.i : self.i + 1]


register_method("tv", tv, TVConfig)
register_method("dip", dip, DIPConfig)
