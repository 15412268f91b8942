"""Deep Image Prior (Ulyanov et al. 2018), a prior-free baseline: ``restore(y, op, None, method="dip")``.

A small encoder-decoder with skip connections fitted per image from fixed noise to ``||A(f(z)) - y||^2``
with Adam, the input noise perturbed at each step; the LAST iterate is returned (DIP's early stop is its
regulariser). Scaled down for 32-64 px (the paper's "skip" net has 5 levels of 128 channels and runs
2,000-5,000 steps). No prior is used: pass ``prior=None`` (any prior is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inversion.engine import run_stages, stack_results
from inversion.methods.registry import MethodConfig, check_number, check_positive_int, register_method
from inversion.methods.tv import image_shape_of
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = ["DIPConfig", "DIPNet", "dip"]


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

    def check(self) -> None:
        check_positive_int(self, "dip_steps", "dip_width", "dip_depth", "dip_input_channels")
        check_number(self, "dip_lr", positive=True)
        check_number(self, "dip_noise_reg")


class _DIPGenerator(nn.Module):
    """A DIP network as the engine's generator: input ``z`` perturbed by ``N(0, noise_reg^2)`` at each
    training forward (DIP's ``reg_noise_std``), output in [-1, 1] (the engine maps it back to [0, 1])."""

    def __init__(self, net: DIPNet, noise_reg: float, generator: torch.Generator):
        super().__init__()
        self.blocks = nn.ModuleList([net])
        self.noise_reg, self.gen = float(noise_reg), generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise_reg:
            z = z + self.noise_reg * torch.randn(z.shape, generator=self.gen).to(z)
        return self.blocks[0](z) * 2.0 - 1.0


@register_method("dip", DIPConfig)
def dip(prior, operator, y, seeds, labels=None, cfg=None, noisy=False, callbacks=(), loss_terms=None):
    """The registered ``restore(..., method="dip")`` entry: a fresh network per image, from its seed, fitted
    on the engine (its generator stage with the input noise as a frozen latent, the network in train mode,
    the last iterate kept)."""
    cfg = cfg or DIPConfig()
    c, h, w = image_shape_of(prior, operator, y)
    fits = []
    stage = Stage(cfg.dip_steps, latent=False, generator="all", generator_lr=cfg.dip_lr, name="dip")
    for i, s in enumerate(seeds):
        gen = torch.Generator(device="cpu").manual_seed(int(s))
        torch.manual_seed(int(s))  # initial weights of this image's network
        net = DIPNet(cfg.dip_input_channels, c, cfg.dip_width, cfg.dip_depth).to(y.device)
        z = (torch.rand(1, cfg.dip_input_channels, h, w, generator=gen) * 0.1).to(y.device)
        net_prior = Prior(
            _DIPGenerator(net, cfg.dip_noise_reg, gen), "gaussian", tuple(z.shape[1:]), (c, h, w)
        )
        fit = run_stages(
            net_prior, _row_operator(operator, i, y.shape[0]), y[i : i + 1], z, [stage],
            callbacks=callbacks, keep="last", copies_train=True, adam={"fused": False},
        )  # fmt: skip
        fit.latent, fit.generators = fit.images.clone(), None
        fits.append(fit)
    fit = stack_results(fits, cfg.dip_steps + 1)
    with torch.no_grad():
        fit.mse = (operator.A(fit.images) - y).pow(2).flatten(1).mean(1)
    return fit, fit.history


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
