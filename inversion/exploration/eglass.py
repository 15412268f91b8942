"""e-GLASS: many measurement-consistent solutions from one, by latent geometry.

Montanaro, Valsesia, Magli, "Exploring the Solution Space of Linear Inverse Problems with GAN Latent
Geometry", ICIP 2022. From a solution latent ``z0`` (IAGAN's fit, with IAGAN's fine-tuned generator,
paper Sec. 4): take the K-th top eigenvector ``v^K`` of the perceptual metric ``H_X``, project out the
top eigenvectors ``u^j`` of the measurement metric ``H_Y`` that correlate with it beyond a threshold,
renormalise, repeat until none does (Algorithm 1), and step ``z = z0 + eta * d``. A candidate is a
solution when it meets the shared :class:`~inversion.exploration.criteria.Feasibility` criterion and is
distinct (:class:`~inversion.exploration.criteria.Distinctness`) from every solution kept before it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from inversion.exploration.criteria import (
    Distinctness,
    Feasibility,
    check_row_independent,
    diversity,
)
from inversion.exploration.geometry import (
    EigMethod,
    HvpBackend,
    LatentGeometry,
    as_single_latent,
    eval_mode,
    latent_geometry,
)
from inversion.exploration.search import DirectionSearch, eligible_top_y, search_direction
from inversion.operators.base import forward_operator

Tensor = torch.Tensor


@dataclass
class ExplorationResult:
    """Candidates tried by e-GLASS around ``z0`` and the distinct feasible solutions among them.

    Attributes:
        z0, x0, y: the start latent ``(1, *shape)``, its image ``(1, C, H, W)``, measurements ``(1, ...)``.
        x0_residual: relative measurement residual of ``x0`` (the criterion's).
        latents: ``(N, *shape)`` candidate latents (after ``project_latent``); images ``(N, C, H, W)``.
        residuals: ``(N,)`` relative residuals; feasible: ``(N,)`` bool, within the criterion's tolerance.
        raw_residuals: ``(N,)`` residuals of the same step along the unprojected ``v^K`` (paper Fig. 2,
            middle row); NaN when not computed.
        k, eta, sign: ``(N,)`` the K (1-based), step and sign of each candidate.
        selected: indices of the solutions (feasible, pairwise distinct, in the order found).
        searches: ``{K: DirectionSearch}``; skipped: ``{K: reason}`` for directions that supplied nothing
            (search not converged, direction vanished).
        geometry: the :class:`LatentGeometry` at ``z0``; top_y: size of the eligible set ``J``.
        criterion, distinct: the rules used; tolerance: the criterion's tolerance for ``y``.
        timings: seconds per phase.
    """

    z0: Tensor
    x0: Tensor
    y: Tensor
    x0_residual: float
    latents: Tensor
    images: Tensor
    residuals: Tensor
    feasible: Tensor
    raw_residuals: Tensor
    k: Tensor
    eta: Tensor
    sign: Tensor
    selected: list[int]
    searches: dict[int, DirectionSearch]
    skipped: dict[int, str]
    geometry: LatentGeometry
    top_y: int
    criterion: Feasibility
    distinct: Distinctness
    tolerance: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_feasible(self) -> int:
        return int(self.feasible.sum())

    @property
    def num_solutions(self) -> int:
        return len(self.selected)

    @property
    def solutions(self) -> Tensor:
        """Images of the distinct feasible solutions ``(S, C, H, W)``."""
        return self.images[self.selected]

    @property
    def solution_latents(self) -> Tensor:
        return self.latents[self.selected]

    def diversity(self, operator: object | None = None) -> dict[str, float]:
        """Mean pairwise image distance of the solutions (see :func:`criteria.diversity`)."""
        return diversity(self.solutions, operator)

    def records(self) -> list[dict[str, float | int | bool]]:
        """One plain dict per candidate: K, eta, sign, residual, raw residual, feasible, selected."""
        chosen = set(self.selected)
        return [
            {
                "k": int(self.k[i]),
                "eta": float(self.eta[i]),
                "sign": int(self.sign[i]),
                "residual": float(self.residuals[i]),
                "raw_residual": float(self.raw_residuals[i]),
                "feasible": bool(self.feasible[i]),
                "selected": i in chosen,
            }
            for i in range(self.latents.shape[0])
        ]

    def save_grid(self, path: str | Path, nrow: int | None = None, solutions_only: bool = True) -> Path:
        """PNG grid: ``x0`` (blue frame), then the solutions (green frame) or every candidate (green
        solution, grey feasible but not distinct, red infeasible), captioned with K, signed eta and
        relative residual."""
        from inversion.exploration.plots import save_tile_grid

        keep = self.selected if solutions_only else list(range(self.latents.shape[0]))
        chosen = set(self.selected)
        images = torch.cat([self.x0, self.images[keep]], dim=0)

        def color(i: int) -> tuple[int, int, int]:
            if i in chosen:
                return (30, 170, 60)
            return (150, 150, 150) if bool(self.feasible[i]) else (210, 40, 40)

        colors = [(40, 90, 220)] + [color(i) for i in keep]
        captions = [f"z0 {self.x0_residual:.1e}"] + [
            f"K{int(self.k[i])}{'+' if int(self.sign[i]) > 0 else '-'}{float(self.eta[i]):g} "
            f"{float(self.residuals[i]):.1e}"
            for i in keep
        ]
        return save_tile_grid(images, path, nrow=nrow, frame_colors=colors, captions=captions)

    def save_diagnostic(self, path: str | Path, k: int | None = None, num_show: int = 40) -> Path:
        """The paper's Fig. 1: |correlation| of ``v^K`` (blue) and of the final ``d`` (red) with the top
        eigenvectors of ``H_Y`` and ``H_X``."""
        from inversion.exploration.plots import save_correlation_plot

        if not self.searches:
            raise ValueError("no direction was searched: nothing to plot")
        k = min(self.searches) if k is None else int(k)
        if k not in self.searches:
            raise ValueError(f"k={k} was not explored; explored: {sorted(self.searches)}")
        s = self.searches[k]
        geo = self.geometry
        panels = []
        for name, vecs in (("H_Y eigenvectors u^j", geo.vec_y), ("H_X eigenvectors v^j", geo.vec_x)):
            n = min(num_show, vecs.shape[1])
            panels.append(
                (
                    name,
                    (vecs[:, :n].mT @ s.start).abs().tolist(),
                    (vecs[:, :n].mT @ s.direction).abs().tolist(),
                )
            )
        title = f"e-GLASS direction search, K={k}: v^K (blue) vs final d (red); |J|={self.top_y}"
        return save_correlation_plot(panels, path, title=title, labels=("v^K", "d"))


def resolve_perceptual(perceptual):
    """e-GLASS's ``H_X`` distance: ``"auto"`` -> LPIPS (e-GLASS Sec. 3: ``H_X`` from 1/2 the Hessian of
    LPIPS) when its trunk weights are on disk, else ``"mse"`` with a warning naming the missing file;
    ``"lpips"`` -> :class:`inversion.metrics.LPIPS` (which raises naming the file when they are missing)."""
    if perceptual not in ("auto", "lpips"):
        return perceptual
    from inversion.metrics import LPIPS

    lpips_distance = LPIPS()
    if perceptual == "auto" and not lpips_distance.weight_file().is_file():
        warnings.warn(
            f"e-GLASS H_X: LPIPS trunk weights {str(lpips_distance.weight_file())!r} not found, so H_X is "
            "built from pixel MSE instead of the paper's LPIPS; copy that file there for the paper's H_X "
            "(or pass perceptual='mse' to choose pixels and silence this)",
            stacklevel=3,
        )
        return "mse"
    return lpips_distance


class EGlass:
    """e-GLASS explorer (config object; ``run`` explores around one solution latent).

    Each direction ``d`` (one per K) is tried at every step ``eta`` and sign in one batch; per sign the
    largest feasible step is the candidate solution (the farthest point of that half-line that still fits
    ``y``), kept if it is distinct from the solutions before it. So one direction gives at most two
    solutions (``+d`` and ``-d``), and N solutions come from at least N / 2 directions.

    Args:
        ks: start eigenvectors ``v^K`` of ``H_X``, 1-based as in the paper (its figures use K = 8, 12, 26
            on BigGAN/PGGAN). Default ``None``: K = 2..25 (as many as the latent has; ``v^1`` is the most
            coupled with ``H_Y``).
        etas: step lengths, absolute latent units (the paper gives none; ours, for unit-Gaussian
            latents of 64 dimensions).
        signs: directions are defined up to sign; ``(1, -1)`` tries both.
        threshold: correlation threshold of Algorithm 1 (the paper gives no value; ours).
        max_iter: maximum passes of the projection loop; a search that has not converged by then
            supplies no solution.
        top_y: size of the eligible set ``J``; ``None``: by ``y_energy`` (see :func:`eligible_top_y`).
        y_energy: fraction of ``trace(H_Y)`` that ``J`` must hold when ``top_y`` is ``None`` (ours).
        criterion: the :class:`Feasibility` criterion (shared with the restart baseline).
        distinct: the :class:`Distinctness` rule (latent offsets measured from ``z0``).
        num_solutions: stop once this many distinct feasible solutions exist (directions in the order of
            ``ks``); ``None``: try every direction. Fewer found than asked: a warning.
        compare_raw: also measure the same steps along the raw ``v^K`` (Fig. 2's middle row).
        perceptual: ``"auto"`` (default: the paper's ``H_X = 1/2 Hessian of LPIPS``,
            :class:`inversion.metrics.LPIPS`, when its trunk weights are on disk, else pixel MSE with a
            warning naming the missing file), ``"lpips"`` (raises FileNotFoundError naming the file when
            the weights are missing), ``"mse"`` or a distance ``d_X(x, x0) -> (B,)`` for ``H_X``.
        method, dense_max_dim, num_eig, num_blocks, chunk_size, seed, hvp_backend: see
            :func:`latent_geometry`.
        eval_batch: candidates per forward pass when evaluating.
    """

    def __init__(
        self,
        ks: Sequence[int] | None = None,
        etas: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
        signs: Sequence[int] = (1, -1),
        threshold: float = 0.1,
        max_iter: int = 100,
        top_y: int | None = None,
        y_energy: float = 0.99,
        criterion: Feasibility | None = None,
        distinct: Distinctness | None = None,
        num_solutions: int | None = None,
        compare_raw: bool = True,
        perceptual: Literal["auto", "mse", "lpips"] | Callable[[Tensor, Tensor], Tensor] = "auto",
        method: EigMethod = "auto",
        dense_max_dim: int = 512,
        num_eig: int = 64,
        num_blocks: int = 6,
        chunk_size: int | None = None,
        seed: int = 0,
        eval_batch: int = 256,
        hvp_backend: HvpBackend = "autograd",
    ):
        if ks is not None and (not ks or any(int(k) < 1 for k in ks)):
            raise ValueError(f"ks must be a non-empty list of 1-based eigenvector indices (>= 1), got {ks}")
        if not etas or any(not math.isfinite(float(e)) or float(e) <= 0 for e in etas):
            raise ValueError(f"etas must be a non-empty list of positive step lengths, got {etas}")
        if not signs or any(int(s) not in (1, -1) for s in signs):
            raise ValueError(f"signs must hold 1 and/or -1, got {signs}")
        if num_solutions is not None and num_solutions < 1:
            raise ValueError(f"num_solutions must be >= 1 or None, got {num_solutions}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
        if criterion is not None and not isinstance(criterion, Feasibility):
            raise ValueError(f"criterion must be a Feasibility, got {type(criterion).__name__}")
        if distinct is not None and not isinstance(distinct, Distinctness):
            raise ValueError(f"distinct must be a Distinctness, got {type(distinct).__name__}")
        self.ks = None if ks is None else [int(k) for k in ks]
        self.etas = sorted(float(e) for e in etas)
        self.signs = [int(s) for s in signs]
        self.threshold = float(threshold)
        self.max_iter = int(max_iter)
        self.top_y = top_y
        self.y_energy = float(y_energy)
        self.criterion = criterion or Feasibility()
        self.distinct = distinct or Distinctness()
        self.num_solutions = num_solutions
        self.compare_raw = bool(compare_raw)
        self.perceptual = resolve_perceptual(perceptual)
        self.method = method
        self.dense_max_dim = int(dense_max_dim)
        self.num_eig = int(num_eig)
        self.num_blocks = int(num_blocks)
        self.chunk_size = chunk_size
        self.seed = int(seed)
        self.eval_batch = int(eval_batch)
        self.hvp_backend = hvp_backend

    def geometry(
        self, prior: Callable[..., Tensor], operator: object, z0: Tensor, labels: Tensor | None = None
    ) -> LatentGeometry:
        """``H_Y`` and ``H_X`` at ``z0`` with this explorer's settings (see :func:`latent_geometry`)."""
        return latent_geometry(
            prior,
            operator,
            z0,
            labels,
            perceptual=self.perceptual,
            method=self.method,
            dense_max_dim=self.dense_max_dim,
            num_eig=max(self.num_eig, max(self.ks or [25])),
            num_blocks=self.num_blocks,
            chunk_size=self.chunk_size,
            seed=self.seed,
            hvp_backend=self.hvp_backend,
        )

    @torch.no_grad()
    def _evaluate(self, prior, operator, latents: Tensor, y: Tensor, labels: Tensor | None):
        imgs, res = [], []
        for i in range(0, latents.shape[0], self.eval_batch):
            z = latents[i : i + self.eval_batch]
            lab = None if labels is None else labels.expand(z.shape[0])
            x = prior(z, lab)
            imgs.append(x)
            res.append(self.criterion.residual(operator, x, y))
        return torch.cat(imgs), torch.cat(res)

    def run(
        self,
        prior: Callable[..., Tensor],
        operator: object,
        z0: Tensor,
        y: Tensor | None = None,
        labels: Tensor | None = None,
        geometry: LatentGeometry | None = None,
    ) -> ExplorationResult:
        """Explore around ``z0``: Hessians, Algorithm 1 per K, steps per eta and sign, solutions.

        Args:
            prior: ``prior(z, labels) -> [0, 1]`` images (for a fitted start: the generator that fitted
                it, see :class:`~inversion.exploration.restarts.GeneratorPrior`); ``prior.project_latent``
                is applied to each step if it exists.
            operator: object with ``A(x)`` or a callable ``x -> y``; it must measure every batch row
                alike (per-image-mask operators are refused: pass ``operator.for_index(i)``).
            z0: solution latent ``(1, *shape)`` or ``shape``.
            y: measurements ``(1, ...)``; ``None``: ``A(G(z0))`` (consistency with the start solution).
            labels: ``(1,)`` labels for a class-conditional prior.
            geometry: precomputed :class:`LatentGeometry` at ``z0`` (skips the Hessians).

        Shape:
            - z0: (1, *latent_shape); y: (1, ...) as ``A`` outputs.
        """
        t_start = time.perf_counter()
        check_row_independent(operator)
        z0 = as_single_latent(z0, getattr(prior, "latent_shape", None))
        shape = tuple(z0.shape[1:])
        project = getattr(prior, "project_latent", None)
        with eval_mode(prior, operator, self.perceptual):
            with torch.no_grad():
                x0 = prior(z0, labels)
                y = forward_operator(operator)(x0) if y is None else y.detach()
                if y.dim() == 0 or y.shape[0] != 1:
                    raise ValueError(
                        f"y must be the measurements of one image, (1, ...), got {tuple(y.shape)}"
                    )
                x0_residual = float(self.criterion.residual(operator, x0, y)[0])
            tol = self.criterion.tolerance(operator, y)
            if x0_residual > tol:
                warnings.warn(
                    f"the start solution itself is infeasible (relative residual {x0_residual:.3g} > "
                    f"tolerance {tol:.3g}): explore around a fitted solution, with the generator that "
                    "fitted it (explore(restore_result, operator, y))",
                    stacklevel=2,
                )
            if geometry is None:
                geometry = self.geometry(prior, operator, z0, labels)
            elif geometry.latent_shape != shape:
                raise ValueError(f"geometry is for latents {geometry.latent_shape}, z0 has {shape}")
            t_geo = time.perf_counter()
            num_x = geometry.vec_x.shape[1]
            ks = self.ks if self.ks is not None else list(range(min(2, num_x), min(26, num_x + 1)))
            bad = [k for k in ks if k > num_x]
            if bad:
                raise ValueError(
                    f"ks {bad} exceed the {num_x} computed eigenvectors of H_X: raise num_eig or lower ks"
                )
            top_y = eligible_top_y(geometry, self.top_y, self.y_energy)
            vec_y = geometry.vec_y[:, :top_y]
            z0f = z0.reshape(-1)
            searches: dict[int, DirectionSearch] = {}
            skipped: dict[int, str] = {}
            parts: dict[str, list[Tensor]] = {n: [] for n in ("z", "x", "res", "raw", "k", "eta", "sign")}
            selected: list[int] = []
            sol_x: list[Tensor] = []
            sol_off: list[Tensor] = []
            offset = 0
            raw_seconds = 0.0
            steps = torch.tensor(
                [sg * e for sg in self.signs for e in self.etas], dtype=z0.dtype, device=z0.device
            )
            for k in ks:
                s = search_direction(geometry.vec_x[:, k - 1], vec_y, self.threshold, self.max_iter)
                searches[k] = s
                if s.vanished or not s.converged:
                    skipped[k] = "vanished" if s.vanished else f"not converged in {self.max_iter} passes"
                    continue
                z = (z0f + steps[:, None] * s.direction[None, :]).view(-1, *shape)
                if project is not None:
                    z = project(z)
                x, res = self._evaluate(prior, operator, z, y, labels)
                if self.compare_raw:  # a diagnostic (Fig. 2), timed apart from the search
                    t_raw = time.perf_counter()
                    z_raw = (z0f + steps[:, None] * s.start[None, :]).view(-1, *shape)
                    _, raw = self._evaluate(prior, operator, project(z_raw) if project else z_raw, y, labels)
                    raw_seconds += time.perf_counter() - t_raw
                else:
                    raw = torch.full_like(res, float("nan"))
                ok = res <= tol
                for sg in self.signs:  # per half-line: the largest feasible step
                    idx = [i for i in range(steps.numel()) if int(torch.sign(steps[i])) == sg and bool(ok[i])]
                    if not idx:
                        continue
                    i = max(idx, key=lambda j: float(steps[j].abs()))
                    off = (z[i] - z0[0]).flatten()
                    kept_x = torch.stack(sol_x) if sol_x else x[:0]
                    kept_off = torch.stack(sol_off) if sol_off else off.new_zeros(0, off.numel())
                    if self.distinct.distinct_from(x[i], off, kept_x, kept_off):
                        selected.append(offset + i)
                        sol_x.append(x[i])
                        sol_off.append(off)
                offset += z.shape[0]
                parts["z"].append(z)
                parts["x"].append(x)
                parts["res"].append(res)
                parts["raw"].append(raw)
                parts["k"].append(torch.full((z.shape[0],), k, dtype=torch.long, device=z0.device))
                parts["eta"].append(steps.abs())
                parts["sign"].append(torch.sign(steps).long())
                if self.num_solutions is not None and len(selected) >= self.num_solutions:
                    selected = selected[: self.num_solutions]
                    break
        t_end = time.perf_counter()
        if self.num_solutions is not None and len(selected) < self.num_solutions:
            warnings.warn(
                f"e-GLASS found {len(selected)} of {self.num_solutions} distinct feasible solutions "
                f"({len(skipped)} of {len(searches)} directions supplied none: "
                f"{sorted(set(skipped.values())) or 'all searches converged'}); try more ks, other etas, "
                "or a looser Distinctness",
                stacklevel=2,
            )
        if parts["z"]:
            cat = {n: torch.cat(v) for n, v in parts.items()}
        else:
            cat = {
                "z": z0.new_zeros((0, *shape)),
                "x": x0.new_zeros((0, *x0.shape[1:])),
                **{n: z0.new_zeros(0) for n in ("res", "raw", "eta")},
                **{n: torch.zeros(0, dtype=torch.long, device=z0.device) for n in ("k", "sign")},
            }
        return ExplorationResult(
            z0=z0,
            x0=x0,
            y=y,
            x0_residual=x0_residual,
            latents=cat["z"],
            images=cat["x"],
            residuals=cat["res"],
            feasible=cat["res"] <= tol,
            raw_residuals=cat["raw"],
            k=cat["k"],
            eta=cat["eta"],
            sign=cat["sign"],
            selected=selected,
            searches=searches,
            skipped=skipped,
            geometry=geometry,
            top_y=top_y,
            criterion=self.criterion,
            distinct=self.distinct,
            tolerance=tol,
            timings={
                "geometry": t_geo - t_start,
                "search": t_end - t_geo - raw_seconds,
                "raw_diagnostic": raw_seconds,
                "total": t_end - t_start - raw_seconds,
            },
        )


def _is_restore_result(obj: object) -> bool:
    return all(hasattr(obj, a) for a in ("latent", "generators", "images", "method"))


def start_from(restored, index: int = 0, prior: Callable[..., Tensor] | None = None):
    """``(prior_for_exploring, z0)`` of image ``index`` of a :class:`inversion.RestoreResult`: its latent
    and the generator that produced it (IAGAN's / DGP's fine-tuned copy, else the prior's own)."""
    from inversion.exploration.restarts import GeneratorPrior

    n = restored.latent.shape[0]
    if not -n <= int(index) < n:
        raise ValueError(f"index {index} out of range for a RestoreResult of {n} images")
    index = int(index) % n
    base = prior if prior is not None else getattr(restored, "prior", None)
    if base is None:
        raise ValueError("this RestoreResult does not keep its prior: pass prior=")
    gens = restored.generators
    z0 = restored.latent[index : index + 1].detach()
    if gens is None:
        return base, z0
    return GeneratorPrior(base, gens[index]).eval(), z0


def explore(
    source,
    operator: object,
    z0_or_y: Tensor | None = None,
    y: Tensor | None = None,
    labels: Tensor | None = None,
    index: int = 0,
    prior: Callable[..., Tensor] | None = None,
    **config,
) -> ExplorationResult:
    """e-GLASS around a fitted solution, or around a latent of a plain prior.

    * ``explore(restored, operator, y, num_solutions=10, index=0)``: ``restored`` is an
      :class:`inversion.RestoreResult`; exploration starts at image ``index``'s latent with the generator
      that produced it (IAGAN's / DGP's fine-tuned copy; the prior's own for CSGM / latent-only) --
      the paper's setting (Sec. 4). ``y``: that image's measurements ``(1, ...)``.
    * ``explore(prior, operator, z0, y=None)``: a plain prior and a latent.

    ``config``: :class:`EGlass` options (``num_solutions``, ``criterion``, ``distinct``, ``ks``, ...).
    """
    explorer = EGlass(**config)
    if _is_restore_result(source):
        if y is not None:
            raise ValueError("explore(restored, operator, y): give y as the third argument only")
        p, z0 = start_from(source, index, prior)
        n = source.latent.shape[0]
        _check_finite_y(z0_or_y)
        y_img = _row(z0_or_y, "y", index, n)
        return explorer.run(p, operator, z0, y_img, _row(labels, "labels", index, n))
    if z0_or_y is None:
        raise ValueError("explore(prior, operator, z0, y): z0 is required for a plain prior")
    _check_finite_y(y)
    return explorer.run(source, operator, z0_or_y, y, labels)


def _check_finite_y(y: Tensor | None) -> None:
    """NaN / Inf measurements are refused as ``restore`` refuses them (not explored to 0 solutions)."""
    if isinstance(y, Tensor) and (y.is_floating_point() or y.is_complex()):
        for bad, found in (("NaN", torch.isnan(y)), ("Inf", torch.isinf(y))):
            if found.any():
                raise ValueError(
                    f"y contains {bad} values ({int(found.sum())} of {y.numel()} entries): the measurements "
                    "must be finite; check how y was computed or loaded"
                )


def _row(t: Tensor | None, what: str, index: int, n: int) -> Tensor | None:
    """Row ``index`` of a per-image ``t`` of a RestoreResult of ``n`` images (one row: used as it is)."""
    if t is None or t.dim() == 0 or t.shape[0] == 1:
        return t
    if t.shape[0] == n:
        i = int(index) % n
        return t[i : i + 1]
    raise ValueError(
        f"{what} has {t.shape[0]} rows for a RestoreResult of {n} images: pass all {n} rows (row index="
        f"{index} is used) or the one image's row (1, ...)"
    )
