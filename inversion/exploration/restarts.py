"""Baseline: many solutions by re-solving the inversion from random starts (PULSE-style), and the one
IAGAN-style fit that e-GLASS starts from -- the same solver, the same stopping criterion.

PULSE (Menon et al., CVPR 2020) gets several solutions by solving ``min_z ||y - A G(z)||^2`` (e-GLASS
eq. 2) from different random latents, stopping once the measurement distance is under a threshold.
e-GLASS (Sec. 4) starts from IAGAN's solution (Abu Hussein et al. 2020, eq. 3: z, then z and the
generator weights). :func:`fit_solutions` does both phases, batched over the starts (each start gets a
private generator copy in the second phase, stacked weights through ``torch.func.functional_call`` +
``vmap``), and stops each start as soon as it meets the :class:`~inversion.exploration.criteria.Feasibility`
criterion (or a tighter ``stop_tol``). A start that meets it in the z phase never fine-tunes
(``finetune_steps=0``: pure PULSE). Standalone (no Lightning), so that both methods run the same loop.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from inversion.exploration.criteria import Distinctness, Feasibility, check_row_independent
from inversion.exploration.geometry import eval_mode
from inversion.operators.base import forward_operator

Tensor = torch.Tensor


class GeneratorPrior(nn.Module):
    """``prior`` with its generator replaced by a fitted copy (IAGAN's / DGP's per-image generator).

    ``forward(z, labels)`` is ``to_unit(generator(prior.code(z, labels)))``; the latent interface
    (``latent_shape``, ``project_latent``, ``sample_latent``, ``latent_penalty``) is the prior's.
    """

    def __init__(self, prior: nn.Module, generator: nn.Module):
        super().__init__()
        if not hasattr(prior, "code"):
            raise ValueError("prior must be an lcm.Prior (with code(latent, labels)) to swap its generator")
        self.base = prior
        self.generator = generator
        self.latent_shape = tuple(prior.latent_shape)
        self.image_shape = tuple(getattr(prior, "image_shape", ()))
        self.num_classes = int(getattr(prior, "num_classes", 0))

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        from lcm.prior import to_unit

        w = self.base.code(z, labels)
        if self.num_classes:
            if labels is None:
                raise ValueError(f"this prior is class-conditional ({self.num_classes} classes): pass labels")
            return to_unit(self.generator(w, labels))
        return to_unit(self.generator(w))

    def project_latent(self, z: Tensor) -> Tensor:
        return self.base.project_latent(z)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.base.sample_latent(n, generator=generator)

    def latent_penalty(self, z: Tensor) -> Tensor:
        return self.base.latent_penalty(z)


@dataclass
class RestartResult:
    """Solutions fitted from random starts.

    Attributes:
        latents: ``(R, *shape)``; images: ``(R, C, H, W)``; residuals: ``(R,)`` relative measurement
            residuals (the criterion's); feasible: ``(R,)`` bool; steps: ``(R,)`` Adam steps taken (both
            phases); finetuned: ``(R,)`` bool, whether the start needed the generator phase;
            generators: per-start fitted generator modules (None where not fine-tuned, or when
            ``keep_generators`` was off); tolerance: the criterion's tolerance for ``y``;
            selected: indices of the distinct feasible solutions (:func:`restart_solutions`), in order;
            seconds: wall time.
    """

    latents: Tensor
    images: Tensor
    residuals: Tensor
    feasible: Tensor
    steps: Tensor
    finetuned: Tensor
    tolerance: float
    seconds: float
    generators: list[nn.Module | None] | None = None
    selected: list[int] = field(default_factory=list)

    @property
    def num_feasible(self) -> int:
        return int(self.feasible.sum())

    @property
    def solutions(self) -> Tensor:
        """Images of the distinct feasible solutions ``(S, C, H, W)``."""
        return self.images[self.selected]

    @staticmethod
    def concat(parts: list[RestartResult]) -> RestartResult:
        if not parts:
            raise ValueError("nothing to concatenate")
        offset, selected, gens = 0, [], []
        for p in parts:
            selected += [offset + i for i in p.selected]
            gens += p.generators if p.generators is not None else [None] * p.latents.shape[0]
            offset += p.latents.shape[0]
        cat = {
            n: torch.cat([getattr(p, n) for p in parts])
            for n in ("latents", "images", "residuals", "feasible", "steps", "finetuned")
        }
        return RestartResult(
            **cat,
            tolerance=parts[0].tolerance,
            seconds=sum(p.seconds for p in parts),
            generators=gens,
            selected=selected,
        )


class _Adam:
    """Adam (Kingma & Ba 2015, default betas) on stacked tensors whose dim 0 is the start. Each step
    updates only the given rows (the starts still running), with a per-row step count, so a start's
    iterates do not depend on which other starts share its batch."""

    def __init__(self, tensors: list[Tensor], lr: float):
        self.tensors, self.lr = tensors, float(lr)
        self.t = torch.zeros(tensors[0].shape[0], dtype=tensors[0].dtype, device=tensors[0].device)
        self.m = [torch.zeros_like(p) for p in tensors]
        self.v = [torch.zeros_like(p) for p in tensors]

    @torch.no_grad()
    def step(self, grads: list[Tensor], rows: Tensor, project: Callable[[Tensor], Tensor] | None = None):
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t[rows] += 1
        t = self.t[rows]
        for i, (p, g) in enumerate(zip(self.tensors, grads, strict=True)):
            tt = t.view(-1, *([1] * (p.dim() - 1)))
            m = self.m[i][rows] * b1 + g * (1 - b1)
            v = self.v[i][rows] * b2 + g * g * (1 - b2)
            self.m[i][rows], self.v[i][rows] = m, v
            new = p[rows] - self.lr * (m / (1 - b1**tt)) / ((v / (1 - b2**tt)).sqrt() + eps)
            p[rows] = project(new) if project is not None and i == 0 else new


def fit_solutions(
    prior: nn.Module,
    operator: object,
    y: Tensor,
    init: Tensor,
    criterion: Feasibility | None = None,
    stop_tol: float | None = None,
    z_steps: int = 300,
    z_lr: float = 0.1,
    finetune_steps: int = 200,
    finetune_latent_lr: float = 1e-4,
    generator_lr: float = 1e-4,
    labels: Tensor | None = None,
    keep_generators: bool = True,
) -> RestartResult:
    """Fit one solution per start latent to the measurements ``y`` of one image, batched over starts.

    Phase 1 (CSGM / PULSE): Adam on the latents, loss ``mean((A(G(z)) - y)^2)`` per start, summed over
    starts. Phase 2 (IAGAN eq. 3), for the starts not yet stopped: Adam on the latent and on a private
    copy of the generator per start. A start stops (frozen) once its relative residual is at most
    ``stop_tol`` (default: the criterion's tolerance for ``y``). Defaults scaled from IAGAN (CSGM
    1600-1800 steps, lr 0.1; joint phase 500-600 steps, lrs 1e-4) for 32x32 priors.

    Args:
        prior: an :class:`lcm.Prior` (phase 2 needs its ``generator`` and ``code``); phase 1 alone works
            with any ``prior(z, labels)``.
        operator: forward model, alike on every batch row (see :func:`check_row_independent`).
        y: measurements of one image ``(1, ...)``.
        init: start latents ``(R, *latent_shape)``.
        criterion: the :class:`Feasibility` criterion (default ``Feasibility()``).
        stop_tol: relative residual at which a start stops (default: the criterion's tolerance).
        z_steps, z_lr: phase 1 budget and learning rate.
        finetune_steps, finetune_latent_lr, generator_lr: phase 2 budget and learning rates.
        labels: ``(1,)`` labels of a class-conditional prior.
        keep_generators: return the fitted generator copies (one ``deepcopy`` each).

    Shape:
        - y: (1, ...); init: (R, *latent_shape); returned images (R, C, H, W).
    """
    t0 = time.perf_counter()
    if y.dim() == 0 or y.shape[0] != 1:
        raise ValueError(f"y must be the measurements of one image, (1, ...), got {tuple(y.shape)}")
    if z_steps < 0 or finetune_steps < 0 or z_lr <= 0:
        raise ValueError(f"steps must be >= 0 and lr > 0, got {z_steps}, {finetune_steps}, {z_lr}")
    check_row_independent(operator)
    criterion = criterion or Feasibility()
    tol = criterion.tolerance(operator, y)
    stop = tol if stop_tol is None else float(stop_tol)
    a_fn = forward_operator(operator, check=False)  # its own generator's images, every step
    project = getattr(prior, "project_latent", None)
    z = init.detach().clone()
    if project is not None:
        z = project(z)
    r = z.shape[0]
    lab = None if labels is None else labels.expand(r)
    y_norm = y.flatten().norm().clamp_min(torch.finfo(y.dtype).tiny)
    done = torch.zeros(r, dtype=torch.bool, device=z.device)
    steps = torch.zeros(r, dtype=torch.long, device=z.device)
    finetuned = torch.zeros(r, dtype=torch.bool, device=z.device)

    all_rows = torch.arange(r, device=z.device)

    def residual_loss(images: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Summed MSE loss of the rows, and the subset (positions in ``rows``) still above ``stop``:
        a row meeting it here stops at this iterate (no step), so the test costs no extra forward."""
        diff = (a_fn(images) - y).flatten(1)
        res = diff.detach().norm(dim=1) / y_norm
        met = res <= stop
        done[rows[met]] = True
        return diff.pow(2).mean(1).sum(), (~met).nonzero().flatten()

    stacked = single = None
    with eval_mode(prior, operator):
        opt = _Adam([z], z_lr)
        for _ in range(z_steps):
            rows = (~done).nonzero().flatten()
            if rows.numel() == 0:
                break
            zz = z[rows].detach().requires_grad_(True)
            loss, go = residual_loss(prior(zz, None if lab is None else lab[rows]), rows)
            if go.numel() == 0:
                break
            (g,) = torch.autograd.grad(loss, [zz])
            steps[rows[go]] += 1
            opt.step([g[go]], rows[go], project)
        if finetune_steps > 0 and not bool(done.all()):
            gen = prior.generator
            cond = bool(getattr(prior, "num_classes", 0))
            from lcm.prior import to_unit

            if r == 1:  # one start: a plain copy is ~2x faster per step than vmap over stacked weights
                single = copy.deepcopy(gen).eval().requires_grad_(True)
                names = [n for n, _ in single.named_parameters()]
                # views sharing the copy's storage: Adam's row updates write into the copy
                stacked = {n: p.detach().unsqueeze(0) for n, p in single.named_parameters()}
            else:
                single = None
                names = [n for n, _ in gen.named_parameters()]
                stacked = {
                    n: p.detach().unsqueeze(0).repeat(r, *([1] * p.dim())).clone()
                    for n, p in gen.named_parameters()
                }
            buffers = dict(gen.named_buffers())

            def one(params, wi, li):
                args = (wi.unsqueeze(0), li.unsqueeze(0)) if cond else (wi.unsqueeze(0),)
                return torch.func.functional_call(gen, (params, buffers), args).squeeze(0)

            def images_of(zz, params, rows):
                lr_ = None if lab is None else lab[rows]
                w = prior.code(zz, lr_)
                if single is not None:
                    return to_unit(single(w, lr_) if cond else single(w))
                li = lr_ if cond else torch.zeros(rows.numel(), device=w.device)
                return to_unit(torch.func.vmap(one)(params, w, li))

            opt_z = _Adam([z], finetune_latent_lr)
            opt_g = _Adam([stacked[n] for n in names], generator_lr)
            for _ in range(finetune_steps):
                rows = (~done).nonzero().flatten()
                if rows.numel() == 0:
                    break
                zz = z[rows].detach().requires_grad_(True)
                if single is None:
                    params = {n: stacked[n][rows].detach().requires_grad_(True) for n in names}
                    leaves = list(params.values())
                else:
                    params, leaves = None, list(single.parameters())
                loss, go = residual_loss(images_of(zz, params, rows), rows)
                if go.numel() == 0:
                    break
                # allow_unused: parameters the forward does not use (DGP's BigGAN carries instance-norm
                # weights for its BN->IN option) get zero gradients, so Adam leaves them as they are
                grads = torch.autograd.grad(loss, [zz, *leaves], allow_unused=True)
                wrt = [zz, *leaves]
                grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt, strict=True)]
                if single is not None:
                    grads = (grads[0], *(g.unsqueeze(0) for g in grads[1:]))
                steps[rows[go]] += 1
                finetuned[rows[go]] = True
                opt_z.step([grads[0][go]], rows[go], project)
                opt_g.step([g[go] for g in grads[1:]], rows[go])
        if single is not None:
            single.requires_grad_(False)
        with torch.no_grad():
            if stacked is None:
                images = prior(z, lab)
            else:
                images = images_of(z, stacked, all_rows)
            residual = (a_fn(images) - y).flatten(1).norm(dim=1) / y_norm
    generators = None
    if keep_generators and stacked is not None:
        generators = []
        for i in range(r):
            if not bool(finetuned[i]):
                generators.append(None)
                continue
            g = copy.deepcopy(prior.generator).eval().requires_grad_(False)
            with torch.no_grad():
                for n, p in g.named_parameters():
                    p.copy_(stacked[n][i])
            generators.append(g)
    return RestartResult(
        latents=z.detach(),
        images=images.detach(),
        residuals=residual,
        feasible=residual <= tol,
        steps=steps.cpu(),
        finetuned=finetuned.cpu(),
        tolerance=tol,
        seconds=time.perf_counter() - t0,
        generators=generators,
    )


def fit_start(
    prior: nn.Module,
    operator: object,
    y: Tensor,
    criterion: Feasibility | None = None,
    margin: float = 0.5,
    seed: int = 0,
    labels: Tensor | None = None,
    **fit_kwargs,
):
    """e-GLASS's start: one IAGAN-style fit (same solver as the restarts) from one seeded random latent,
    stopped at ``margin`` times the criterion's tolerance (the exploration needs room below it).

    Returns:
        an :class:`inversion.RestoreResult` of one image (``method="iagan-style"``, the fitted
        generator in ``generators`` when the fit fine-tuned it), ready for :func:`explore`.
    """
    from inversion.methods import RestoreResult

    if not 0 < margin <= 1:
        raise ValueError(f"margin must lie in (0, 1], got {margin}")
    criterion = criterion or Feasibility()
    gen = torch.Generator().manual_seed(int(seed))
    init = prior.sample_latent(1, generator=gen)
    tol = criterion.tolerance(operator, y)
    fit = fit_solutions(prior, operator, y, init, criterion, margin * tol, labels=labels, **fit_kwargs)
    with torch.no_grad():
        mse = (forward_operator(operator)(fit.images) - y).flatten(1).pow(2).mean(1)
    return RestoreResult(
        images=fit.images,
        raw=fit.images,
        latent=fit.latents,
        objective=mse,
        measurement_mse=mse,
        history=mse.new_zeros(0, 1),
        method="iagan-style",
        seconds=fit.seconds,
        generators=None if fit.generators is None or fit.generators[0] is None else fit.generators,
        config={"stop_tol": margin * tol, "steps": int(fit.steps[0]), **fit_kwargs},
    )


def restart_solutions(
    prior: nn.Module,
    operator: object,
    y: Tensor,
    num_solutions: int = 10,
    criterion: Feasibility | None = None,
    distinct: Distinctness | None = None,
    batch: int = 10,
    max_rounds: int = 10,
    seed: int = 0,
    labels: Tensor | None = None,
    **fit_kwargs,
) -> RestartResult:
    """PULSE-style: rounds of ``batch`` random restarts, each stopped at the criterion, until
    ``num_solutions`` distinct feasible solutions exist (greedy, in restart order, under ``distinct``
    with latent offsets from the origin) or ``max_rounds`` rounds ran.

    Returns every restart of every round; ``selected`` indexes the distinct feasible ones; ``seconds``
    is the total wall time. ``fit_kwargs`` go to :func:`fit_solutions`.
    """
    if num_solutions < 1 or batch < 1 or max_rounds < 1:
        raise ValueError(
            f"num_solutions, batch, max_rounds must be >= 1, got {num_solutions}, {batch}, {max_rounds}"
        )
    if not hasattr(prior, "sample_latent"):
        raise ValueError("prior has no sample_latent(n, generator=): it cannot draw random starts")
    criterion = criterion or Feasibility()
    distinct = distinct or Distinctness()
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    parts: list[RestartResult] = []
    kept_images: list[Tensor] = []
    kept_latents: list[Tensor] = []
    for _ in range(max_rounds):
        init = prior.sample_latent(batch, generator=gen)
        part = fit_solutions(prior, operator, y, init, criterion, labels=labels, **fit_kwargs)
        for i in part.feasible.nonzero().flatten().tolist():
            if len(kept_images) >= num_solutions:
                break
            ki = torch.stack(kept_images) if kept_images else part.images[:0]
            kl = torch.stack(kept_latents) if kept_latents else part.latents[:0].flatten(1)
            if distinct.distinct_from(part.images[i], part.latents[i].flatten(), ki, kl):
                part.selected.append(i)
                kept_images.append(part.images[i])
                kept_latents.append(part.latents[i].flatten())
        parts.append(part)
        if len(kept_images) >= num_solutions:
            break
    out = RestartResult.concat(parts)
    out.seconds = time.perf_counter() - t0
    return out
