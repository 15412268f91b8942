"""Best-of-N latent initialisation (DGP appendix B "Initialization": 500 samples, nearest under the
discriminator feature metric), scored in batches in measurement space.

Candidates are drawn per *pool*: by default each image draws its own pool from its own seed (as the
paper does per target, and so an image's start does not depend on its batch); ``pool_seed`` makes
all images share one pool (the generator then runs once for all of them). For a class-conditional
prior a candidate is generated with the image's label, or -- label unknown (-1 or no labels; DGP's
adversarial defence) -- with a class drawn per candidate, which then becomes the image's label.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lcm.prior import Prior

__all__ = [
    "CandidateInit",
    "budget_candidates",
    "candidate_batch_for",
    "check_candidate_batch",
    "candidate_pool",
    "operators_per_image",
    "sample_labels",
    "scoring_precision",
    "select_latents",
]


@dataclass
class CandidateInit:
    """Chosen starts. ``latent``: ``(B, *latent_shape)``; ``labels``: ``(B,)`` or None; ``score``:
    ``(B,)`` distance of the chosen candidate; ``index``: ``(B,)`` its position in the image's pool."""

    latent: torch.Tensor
    labels: torch.Tensor | None
    score: torch.Tensor
    index: torch.Tensor


def candidate_pool(
    prior: Prior, n: int, seed: int, label: int | None = None, std: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` candidate latents (and classes for a conditional prior) drawn from ``seed``.

    ``label`` None on a conditional prior draws one class per candidate (after the latents). ``std``
    scales Gaussian latents (DGP's ``sample_std``: 0.3 in its BigGAN scripts).

    Shape:
        - output: latents ``(n, *latent_shape)``, labels ``(n,)`` int64 or None.
    """
    if n < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n}")
    device = next(prior.generator.parameters()).device
    g = torch.Generator(device=device).manual_seed(int(seed))
    z = prior.sample_latent(n, generator=g)
    if std != 1.0:
        if prior.latent_kind != "gaussian" or prior.latent_mean is not None:
            raise ValueError("candidate std applies to standard Gaussian latents only")
        z = z * float(std)
    if not prior.num_classes:
        return z, None
    if label is None:
        return z, torch.randint(0, prior.num_classes, (n,), generator=g, device=device)
    return z, torch.full((n,), int(label), dtype=torch.long, device=device)


def operators_per_image(operator: nn.Module, n: int, image_shape: Sequence[int], like: torch.Tensor) -> list:
    """The operator that image ``i`` of a batch of ``n`` sees, as a batch-independent operator.

    Operators with per-batch-position masks (``per_image`` inpainting) get one fixed-mask copy per
    image; any other operator is shared (the same object ``n`` times).
    """
    if not getattr(operator, "per_image", False) or not hasattr(operator, "set_mask"):
        return [operator] * n
    mask = operator.mask_for(like.new_zeros(n, *image_shape))
    ops = []
    for i in range(n):
        op = copy.deepcopy(operator)
        op.set_mask(mask[i : i + 1] if mask.shape[0] > 1 else mask)
        ops.append(op)
    return ops


@torch.no_grad()
def candidate_batch_for(
    prior: Prior,
    operator: nn.Module,
    metric,
    n_candidates: int,
    budget: int | None = None,
    bf16: bool = False,
) -> int:
    """Candidates per generator / critic call that fit ``budget`` bytes (None: a quarter of the device's free
    memory, :func:`lcm.runtime.budget_rows`), from the activations of one probe candidate through the
    generator, the operator and ``metric`` (at most ``n_candidates``, at least 1)."""
    return budget_candidates(
        prior, lambda x: metric.candidates(operator.A(x), operator), n_candidates, budget, bf16
    )


def budget_candidates(
    prior: Prior, score, n_candidates: int, budget: int | None = None, bf16: bool = False
) -> int:
    """Candidates per chunk (:func:`lcm.runtime.budget_rows`) from one probe candidate through the generator
    and ``score(x)`` (what is computed from its image), under :func:`scoring_precision`."""
    from lcm.runtime import budget_rows

    ref = next(prior.generator.parameters())
    z, lab = candidate_pool(prior, 1, 0)
    modules = [prior.generator] + ([prior.critic] if isinstance(prior.critic, nn.Module) else [])

    def probe():
        with torch.no_grad(), scoring_precision(bf16, ref.device):
            score(prior(z, lab))

    return budget_rows(modules, probe, n_candidates, budget, ref.device)


def check_candidate_batch(batch_size) -> None:
    """ValueError unless ``batch_size`` is an int >= 1 or ``"auto"`` (candidates per generator call)."""
    if batch_size == "auto":
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"candidate batch_size must be an int >= 1 or 'auto', got {batch_size!r}")


def scoring_precision(bf16: bool, device):
    """The context a forward-only scoring runs in: bf16 autocast when ``bf16`` (a named option; it must be
    shown to keep the decisions, tests/inversion/test_dgp_bulk.py), else nothing (fp32)."""
    import contextlib

    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


@torch.no_grad()
def select_latents(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    metric,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    n_candidates: int = 500,
    batch_size: int | str = "auto",
    pool_seed: int | None = None,
    std: float = 1.0,
    bf16: bool = False,
) -> CandidateInit:
    """For each image, the candidate whose degraded image is nearest to ``y`` under ``metric``.

    Args:
        prior: the prior.
        operator: forward model (``A``).
        y: measurements ``(B, ...)``.
        metric: :class:`~inversion.dgp.losses.CriticFeatureLoss` (DGP) or
            :class:`~inversion.dgp.losses.MeasurementMSE`: ``target(y_i, op)``,
            ``candidates(A(x), op)``, ``score(cands, target) -> (K,)``.
        seeds: one seed per image (its pool), ignored when ``pool_seed`` is given.
        labels: ``(B,)`` classes (-1 = unknown) for a conditional prior, else None.
        n_candidates: N (DGP: 500).
        batch_size: candidates per generator / critic call (1 = the published one-at-a-time loop), or
            ``"auto"`` (default): as many as fit a quarter of the free memory (:func:`candidate_batch_for`).
        pool_seed: one pool shared by every image.
        std: scale of Gaussian candidates (DGP's ``sample_std``).
        bf16: score under bf16 autocast (faster on CPUs and GPUs with bf16 units; scores move by
            rounding, so the pick can change where two candidates are that close: off by default).

    Shape:
        - y: ``(B, ...)``; result latent ``(B, *prior.latent_shape)``.
    """
    n = y.shape[0]
    if len(seeds) != n:
        raise ValueError(f"seeds has {len(seeds)} entries for {n} images: give one seed per image")
    if labels is not None and labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries for {n} images")
    cond = bool(prior.num_classes)
    ops = operators_per_image(operator, n, prior.image_shape, y)
    check_candidate_batch(batch_size)
    if batch_size == "auto":
        batch_size = candidate_batch_for(prior, ops[0], metric, n_candidates, bf16=bf16)
    # group images by pool: (seed, label) -> image indices
    pools: dict[tuple[int, int | None], list[int]] = {}
    for i in range(n):
        lab = int(labels[i]) if (cond and labels is not None and int(labels[i]) >= 0) else None
        key = (int(pool_seed) if pool_seed is not None else int(seeds[i]), lab)
        pools.setdefault(key, []).append(i)
    best = torch.full((n,), float("inf"), device=y.device)
    index = torch.zeros(n, dtype=torch.long, device=y.device)
    ref = next(prior.generator.parameters())
    latent = torch.zeros(n, *prior.latent_shape, dtype=ref.dtype, device=ref.device)
    out_labels = torch.zeros(n, dtype=torch.long, device=y.device) if cond else None
    for (seed, lab), members in pools.items():
        z, zl = candidate_pool(prior, n_candidates, seed, lab, std)
        # images of this pool that share an operator object share the candidates' features
        by_op: dict[int, list[int]] = {}
        for i in members:
            by_op.setdefault(id(ops[i]), []).append(i)
        targets = {i: metric.target(y[i : i + 1], ops[i]) for i in members}
        for start in range(0, n_candidates, batch_size):
            zc = z[start : start + batch_size]
            lc = None if zl is None else zl[start : start + batch_size]
            with scoring_precision(bf16, y.device):
                xc = prior(zc, lc)
            for group in by_op.values():
                op = ops[group[0]]
                with scoring_precision(bf16, y.device):
                    feats = metric.candidates(op.A(xc), op)
                for i in group:
                    d = metric.score(feats, targets[i]).float()
                    j = int(d.argmin())
                    if d[j] < best[i]:
                        best[i], index[i] = d[j], start + j
                        latent[i] = zc[j]
                        if cond:
                            out_labels[i] = lc[j]
    return CandidateInit(latent, out_labels, best, index)


def sample_labels(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    n_candidates: int = 500,
    batch_size: int | str = "auto",
    bf16: bool = False,
) -> torch.Tensor:
    """Classes for the images whose class is unknown (-1, or all when ``labels`` is None), picked as DGP
    does (its ``select_z(select_y=True)``): the class of the best of ``n_candidates`` random
    (latent, class) candidates under the critic feature distance (measurement MSE without a critic).
    Known classes are kept. ``batch_size`` and ``bf16``: as in :func:`select_latents`.

    Shape:
        - y: ``(B, ...)``; labels ``(B,)`` or None; output ``(B,)`` int64.
    """
    from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE

    if not prior.num_classes:
        raise ValueError("sample_labels needs a class-conditional prior (num_classes > 0)")
    metric = (
        CriticFeatureLoss(prior.critic, prior.image_shape) if prior.critic is not None else MeasurementMSE()
    )
    init = select_latents(prior, operator, y, metric, seeds, labels, n_candidates, batch_size, bf16=bf16)
    return init.labels.to(y.device)
