"""What the prior-inverting methods share: the latent space option and seeded starts with restarts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from inversion.engine import FitResult
from inversion.methods.registry import MethodConfig
from lcm.prior import Prior

__all__ = ["PriorConfig", "best_restart", "init_latents", "repeat_for_restarts"]


@dataclass
class PriorConfig(MethodConfig):
    """Options of every method that inverts a prior.

    ``space``: the latent the method optimises, ``z`` (the prior's own), ``w`` or ``w+`` (the codes of
    a prior with a mapping network, :func:`lcm.spaces.code_space_prior`); ``optimize_noise`` adds the
    generator's noise inputs to a W / W+ latent (StyleGAN2).
    """

    # False where a method gives ``space`` its own meaning (CRI: the offset's space; it clusters in W)
    space_is_latent: ClassVar[bool] = True

    space: str = "z"
    optimize_noise: bool = False


def init_latents(prior: Prior, seeds: Sequence[int], per_image: int = 1) -> torch.Tensor:
    """``per_image`` latents for each image, image ``i`` drawn from its own ``seeds[i]``.

    An image's start therefore does not depend on which other images share its batch or process.

    Shape:
        - output: ``(len(seeds) * per_image, *prior.latent_shape)``, restarts of an image adjacent.
    """
    device = next(prior.generator.parameters()).device
    out = []
    for s in seeds:
        g = torch.Generator(device=device).manual_seed(int(s))
        out.append(prior.sample_latent(per_image, generator=g))
    return torch.cat(out)


def repeat_for_restarts(
    operator: nn.Module, y: torch.Tensor, labels: torch.Tensor | None, r: int
) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    """The operator, measurements and labels of ``n * r`` restart rows: row ``j`` is image ``j // r``."""
    repeated = getattr(operator, "repeated", None)
    op = repeated(r) if r > 1 and callable(repeated) else operator
    lab = None if labels is None else labels.repeat_interleave(r, dim=0)
    return op, y.repeat_interleave(r, dim=0), lab


def best_restart(fit: FitResult, n: int, r: int, score: torch.Tensor | None = None) -> FitResult:
    """The fit of ``n * r`` restart rows restricted to each image's restart of least ``score`` ``(n * r,)``
    (default: the kept objective)."""
    score = fit.objective if score is None else score
    best = score.view(n, r).argmin(dim=1)
    rows = torch.arange(n, device=best.device) * r + best
    gens = None if fit.generators is None else [fit.generators[i] for i in rows.tolist()]
    return FitResult(
        fit.images[rows],
        fit.latent[rows],
        fit.objective[rows],
        fit.mse[rows],
        fit.history[:, rows],
        fit.steps[rows],
        gens,
    )
