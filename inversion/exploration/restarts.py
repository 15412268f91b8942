"""Baseline: many solutions by re-solving the latent inversion from random starts (PULSE-style).

PULSE (Menon et al., CVPR 2020) gets several solutions by solving ``min_z ||y - A G(z)||^2`` (e-GLASS eq. 2)
by gradient descent from different random latents, stopping once the measurement distance is under a
threshold. Here: a small self-contained Adam fit of the latent only (weights frozen, their gradients never
computed), batched over the restarts with per-restart stopping, so that this package stays standalone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from inversion.exploration.eglass import FeasibleSet, measurement_distance
from inversion.exploration.geometry import eval_mode, forward_operator

Tensor = torch.Tensor


@dataclass
class RestartResult(FeasibleSet):
    """Latents fitted from random starts.

    Attributes:
        latents: ``(R, *shape)``; images: ``(R, C, H, W)``; distances: ``(R,)`` measurement distances
        ``||A(G(z)) - y||^2 / numel(y)``; feasible: ``(R,)`` bool (``<= threshold``); steps: ``(R,)`` Adam
        steps each restart took; threshold: the feasibility threshold; seconds: wall time.
    """

    latents: Tensor
    images: Tensor
    distances: Tensor
    feasible: Tensor
    steps: Tensor
    threshold: float
    seconds: float

    @staticmethod
    def concat(parts: list[RestartResult]) -> RestartResult:
        if not parts:
            raise ValueError("nothing to concatenate")
        return RestartResult(
            *(
                torch.cat([getattr(p, n) for p in parts])
                for n in ("latents", "images", "distances", "feasible")
            ),
            steps=torch.cat([p.steps for p in parts]),
            threshold=parts[0].threshold,
            seconds=sum(p.seconds for p in parts),
        )


def fit_latents(
    prior: Callable[..., Tensor],
    operator: object,
    y: Tensor,
    num_restarts: int = 8,
    steps: int = 300,
    lr: float = 0.05,
    latent_weight: float = 0.0,
    stop_threshold: float | None = 1e-2,
    feasibility_threshold: float = 1e-2,
    labels: Tensor | None = None,
    init: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> RestartResult:
    """Fit ``num_restarts`` latents to the measurements ``y`` of one image with Adam, batched.

    Loss per restart: ``||A(G(z)) - y||^2 / numel(y) + latent_weight * prior.latent_penalty(z)``; the batch
    loss is the sum (never the mean) so that each restart's step does not depend on the others. After each
    step the latent is projected (``prior.project_latent``). A restart stops (its latent is frozen) as soon as
    its measurement distance is at most ``stop_threshold`` (``None``: run all ``steps``).

    Args:
        prior: ``prior(z, labels) -> [0, 1]`` images with ``sample_latent(n, generator=)``, or pass ``init``.
        operator: object with ``A(x)`` or callable, alike on every batch position (restarts are batched).
        y: measurements of one image ``(1, ...)``.
        num_restarts: random starts, fitted together.
        steps, lr: Adam steps and learning rate.
        latent_weight: weight of the latent prior penalty (0 = PULSE-like pure data fit).
        stop_threshold: per-restart stopping distance.
        feasibility_threshold: marks ``feasible`` in the result (e-GLASS: 1e-2).
        labels: ``(1,)`` labels of a class-conditional prior.
        init: start latents ``(R, *shape)`` instead of sampling.
        generator: seeds the random starts.

    Shape:
        - y: (1, ...); returned latents: (R, *latent_shape).
    """
    t0 = time.perf_counter()
    if y.dim() == 0 or y.shape[0] != 1:
        raise ValueError(f"y must be the measurements of one image, (1, ...), got {tuple(y.shape)}")
    if steps < 0 or lr <= 0:
        raise ValueError(f"steps must be >= 0 and lr > 0, got steps={steps}, lr={lr}")
    a_fn = forward_operator(operator)
    project = getattr(prior, "project_latent", lambda z: z)
    if init is None:
        if num_restarts < 1:
            raise ValueError(f"num_restarts must be >= 1, got {num_restarts}")
        if not hasattr(prior, "sample_latent"):
            raise ValueError("prior has no sample_latent(n, generator=): pass init latents")
        z = prior.sample_latent(num_restarts, generator=generator)
    else:
        z = init
    z = project(z.detach().clone()).requires_grad_(True)
    r = z.shape[0]
    lab = None if labels is None else labels.expand(r)
    penalty = getattr(prior, "latent_penalty", None)
    done = torch.zeros(r, dtype=torch.bool, device=z.device)
    used = torch.full((r,), steps, dtype=torch.long)
    # Adam (Kingma & Ba 2015, default betas) written out so that stopped restarts get no update at all
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    b1, b2, eps = 0.9, 0.999, 1e-8
    with eval_mode(prior, operator):
        for t in range(steps):
            x = prior(z, lab)
            per = (a_fn(x) - y).flatten(1).pow(2).mean(dim=1)
            if stop_threshold is not None:
                newly = (per.detach() <= stop_threshold) & ~done
                if bool(newly.any()):
                    used[newly.cpu()] = t
                    done |= newly
                if bool(done.all()):
                    break
            loss = per.sum()
            if latent_weight and penalty is not None:
                loss = loss + latent_weight * penalty(z).sum()
            (g,) = torch.autograd.grad(loss, [z])  # latent only: no weight gradients
            with torch.no_grad():
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                step = (m / (1 - b1 ** (t + 1))) / ((v / (1 - b2 ** (t + 1))).sqrt() + eps)
                active = (~done).view(-1, *([1] * (z.dim() - 1)))
                z.copy_(torch.where(active, project(z - lr * step), z))
        with torch.no_grad():
            z = z.detach()
            images = prior(z, lab)
            dist = measurement_distance(a_fn, images, y)
    return RestartResult(
        z, images, dist, dist <= feasibility_threshold, used, feasibility_threshold, time.perf_counter() - t0
    )


def restart_solutions(
    prior: Callable[..., Tensor],
    operator: object,
    y: Tensor,
    num_solutions: int = 10,
    batch: int = 10,
    max_rounds: int = 10,
    seed: int = 0,
    labels: Tensor | None = None,
    **fit_kwargs,
) -> RestartResult:
    """PULSE-style: rounds of ``batch`` random restarts until ``num_solutions`` are feasible (``max_rounds``).

    Returns every restart of every round (check ``feasible``); ``seconds`` is the total wall time.
    ``fit_kwargs`` go to :func:`fit_latents` (steps, lr, stop_threshold, feasibility_threshold, ...).
    """
    if num_solutions < 1 or batch < 1 or max_rounds < 1:
        raise ValueError(
            f"num_solutions, batch, max_rounds must be >= 1, got {num_solutions}, {batch}, {max_rounds}"
        )
    ref = y
    gen = torch.Generator(device=ref.device).manual_seed(int(seed))
    parts: list[RestartResult] = []
    found = 0
    for _ in range(max_rounds):
        part = fit_latents(prior, operator, y, num_restarts=batch, labels=labels, generator=gen, **fit_kwargs)
        parts.append(part)
        found += part.num_feasible
        if found >= num_solutions:
            break
    return RestartResult.concat(parts)
