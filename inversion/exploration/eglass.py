"""e-GLASS: many measurement-consistent solutions from one, by latent geometry.

Montanaro, Valsesia, Magli, "Exploring the Solution Space of Linear Inverse Problems with GAN Latent
Geometry", ICIP 2022. From a solution latent ``z0``: take the K-th top eigenvector ``v^K`` of the perceptual
metric ``H_X``, project out the top eigenvectors ``u^j`` of the measurement metric ``H_Y`` that correlate
with it beyond a threshold, renormalise, repeat until none does (Algorithm 1), and step
``z = z0 + eta * d``. Each candidate is kept only if its measurement distance
``||A(G(z)) - y||^2 / numel(y)`` stays under the feasibility threshold (paper Sec. 4: 1e-2).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from inversion.exploration.geometry import (
    EigMethod,
    HvpBackend,
    LatentGeometry,
    as_single_latent,
    eval_mode,
    forward_operator,
    latent_geometry,
)

Tensor = torch.Tensor


def measurement_distance(operator: object, images: Tensor, y: Tensor) -> Tensor:
    """Per-image measurement distance ``||A(x) - y||^2 / numel(y)`` (the paper's feasibility l2).

    Shape:
        - images: (N, C, H, W); y: (1, ...) or (N, ...) -> (N,).
    """
    ax = forward_operator(operator)(images)
    if ax.shape[1:] != y.shape[1:]:
        raise ValueError(f"y has shape {tuple(y.shape)} but A(x) has per-image shape {tuple(ax.shape[1:])}")
    return (ax - y).flatten(1).pow(2).mean(dim=1)


@dataclass
class DirectionSearch:
    """Outcome of Algorithm 1's projection loop for one start vector.

    Attributes:
        start: the unit start direction ``v^K`` ``(d,)``.
        direction: the final unit direction ``d`` ``(d,)`` (zeros if it vanished).
        projected: indices (0-based, among the eligible top eigenvectors of ``H_Y``) projected out, in order.
        iterations: passes of the loop that projected something.
        converged: no eligible correlation exceeds the threshold at the end.
        vanished: the start vector lay (numerically) inside the span of the eligible ``u^j``.
    """

    start: Tensor
    direction: Tensor
    projected: list[int]
    iterations: int
    converged: bool
    vanished: bool


def search_direction(
    start: Tensor, vec_y: Tensor, threshold: float = 0.1, max_iter: int = 100
) -> DirectionSearch:
    """Algorithm 1 of e-GLASS: remove the correlations of ``start`` with the top eigenvectors of ``H_Y``.

    Each pass projects ``d`` onto the hyperplane orthogonal to every column ``u^j`` of ``vec_y`` with
    ``|<d, u^j>| > threshold``, then renormalises; renormalising can push other correlations over the
    threshold, so passes repeat until none exceeds it (or ``max_iter`` passes).

    Args:
        start: start direction ``(d,)`` (normalised here).
        vec_y: orthonormal columns ``(d, k_y)``: the eligible top eigenvectors of ``H_Y``.
        threshold: correlation threshold in ``[0, 1)``.
        max_iter: maximum number of passes.

    Shape:
        - start: (d,); vec_y: (d, k_y).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if start.dim() != 1 or vec_y.dim() != 2 or vec_y.shape[0] != start.shape[0]:
        raise ValueError(
            f"start must be (d,) and vec_y (d, k); got {tuple(start.shape)}, {tuple(vec_y.shape)}"
        )
    start = start / start.norm().clamp_min(1e-30)
    d = start.clone()
    projected: list[int] = []
    iterations = 0
    converged = False
    vanished = False
    for _ in range(max_iter):
        corr = vec_y.mT @ d
        over = (corr.abs() > threshold).nonzero().flatten()
        if over.numel() == 0:
            converged = True
            break
        sel = vec_y[:, over]
        d = d - sel @ (sel.mT @ d)
        norm = d.norm()
        projected.extend(int(j) for j in over)
        iterations += 1
        if norm <= 1e-8:
            d = torch.zeros_like(d)
            vanished = True
            break
        d = d / norm
    else:
        converged = bool((vec_y.mT @ d).abs().max() <= threshold) if vec_y.shape[1] else True
    return DirectionSearch(start, d, projected, iterations, converged, vanished)


def eligible_top_y(geometry: LatentGeometry, top_y: int | None, energy: float) -> int:
    """How many top eigenvectors of ``H_Y`` Algorithm 1 may project out (its set ``J``).

    ``top_y`` if given, else the smallest ``k`` whose eigenvalues hold ``energy`` of the trace of ``H_Y``
    (the paper leaves ``k`` open; this rule is ours).
    """
    available = int(geometry.eig_y.numel())
    if top_y is not None:
        if not 0 <= top_y <= available:
            raise ValueError(
                f"top_y must lie in [0, {available}] (computed eigenvectors of H_Y), got {top_y}"
            )
        return int(top_y)
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"y_energy must lie in (0, 1], got {energy}")
    lam = geometry.eig_y.clamp_min(0)
    total = geometry.trace_y if geometry.trace_y > 0 else float(lam.sum())
    if total <= 0:
        return 0
    cum = torch.cumsum(lam, 0) / total
    return min(available, int((cum < energy - 1e-12).sum()) + 1)


class FeasibleSet:
    """Views of a set of candidate ``latents``/``images`` with a ``feasible`` mask (shared by results)."""

    latents: Tensor
    images: Tensor
    feasible: Tensor

    @property
    def num_feasible(self) -> int:
        return int(self.feasible.sum())

    @property
    def feasible_latents(self) -> Tensor:
        return self.latents[self.feasible]

    @property
    def feasible_images(self) -> Tensor:
        return self.images[self.feasible]


@dataclass
class ExplorationResult(FeasibleSet):
    """Solutions found by e-GLASS around ``z0``, feasible or not, with everything needed to report them.

    Attributes:
        z0, x0, y: the start latent ``(1, *shape)``, its image ``(1, C, H, W)``, measurements ``(1, ...)``.
        x0_distance: measurement distance of ``x0`` itself.
        latents: ``(N, *shape)`` candidate latents (after ``prior.project_latent``).
        images: ``(N, C, H, W)`` their images in ``[0, 1]``.
        distances: ``(N,)`` measurement distances; ``feasible``: ``(N,)`` bool, ``distances <= threshold``.
        raw_distances: ``(N,)`` distances of the same step along the unprojected ``v^K`` (paper Fig. 2,
            middle row).
        k, eta, sign: ``(N,)`` the K (1-based), step and sign of each candidate.
        searches: ``{K: DirectionSearch}``.
        geometry: the :class:`LatentGeometry` at ``z0``; ``top_y``: size of the eligible set ``J``.
        threshold: the feasibility threshold; ``timings``: seconds per phase.
    """

    z0: Tensor
    x0: Tensor
    y: Tensor
    x0_distance: float
    latents: Tensor
    images: Tensor
    distances: Tensor
    feasible: Tensor
    raw_distances: Tensor
    k: Tensor
    eta: Tensor
    sign: Tensor
    searches: dict[int, DirectionSearch]
    geometry: LatentGeometry
    top_y: int
    threshold: float
    timings: dict[str, float] = field(default_factory=dict)

    def records(self) -> list[dict[str, float | int | bool]]:
        """One plain dict per candidate: K, eta, sign, distance, raw distance, feasible (kept or rejected)."""
        return [
            {
                "k": int(self.k[i]),
                "eta": float(self.eta[i]),
                "sign": int(self.sign[i]),
                "distance": float(self.distances[i]),
                "raw_distance": float(self.raw_distances[i]),
                "feasible": bool(self.feasible[i]),
            }
            for i in range(self.latents.shape[0])
        ]

    def save_grid(self, path: str | Path, nrow: int | None = None, feasible_only: bool = False) -> Path:
        """PNG grid: ``x0`` (blue frame), then the candidates, green frame kept / red frame rejected; each
        captioned with K, signed eta and measurement distance."""
        from inversion.exploration.plots import save_image_grid

        keep = (
            (self.feasible if feasible_only else torch.ones_like(self.feasible)).nonzero().flatten().tolist()
        )
        images = torch.cat([self.x0, self.images[keep]], dim=0)
        colors = [(40, 90, 220)] + [(30, 170, 60) if bool(self.feasible[i]) else (210, 40, 40) for i in keep]
        captions = [f"z0 {self.x0_distance:.1e}"] + [
            f"K{int(self.k[i])}{'+' if int(self.sign[i]) > 0 else '-'}{float(self.eta[i]):g} "
            f"{float(self.distances[i]):.1e}"
            for i in keep
        ]
        return save_image_grid(images, path, nrow=nrow, frame_colors=colors, captions=captions)

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


class EGlass:
    """e-GLASS explorer (config object; ``run`` explores around one solution latent).

    Args:
        ks: start eigenvectors ``v^K`` of ``H_X``, 1-based as in the paper (its figures use K = 8, 12, 26
            on BigGAN/PGGAN; small default here for small latents). The top ones are coupled with ``H_Y``.
        etas: step lengths along each direction (absolute, in latent units; the paper gives no values).
        signs: directions are defined up to sign; ``(1, -1)`` tries both.
        threshold: correlation threshold of Algorithm 1 (the paper gives no value; ours).
        max_iter: maximum passes of the projection loop.
        top_y: size of the eligible set ``J`` of top ``H_Y`` eigenvectors; ``None``: by ``y_energy``.
        y_energy: fraction of ``trace(H_Y)`` that ``J`` must hold when ``top_y`` is ``None`` (ours).
        feasibility_threshold: keep a candidate iff ``||A(G(z)) - y||^2 / numel(y)`` is at most this
            (paper Sec. 4: 1e-2).
        num_solutions: stop once this many feasible candidates exist (directions in the order of ``ks``);
            ``None`` evaluates every candidate.
        perceptual: ``"mse"``, ``"lpips"`` (the paper's choice: :class:`inversion.metrics.LPIPS`, which
            raises FileNotFoundError naming the file when its trunk weights are not on disk) or a
            distance ``d_X(x, x0) -> (B,)`` for ``H_X``.
        method, dense_max_dim, num_eig, num_blocks, chunk_size, seed, hvp_backend: see
            :func:`latent_geometry`.
        eval_batch: candidates per forward pass when evaluating.
    """

    def __init__(
        self,
        ks: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
        etas: Sequence[float] = (0.5, 1.0, 2.0),
        signs: Sequence[int] = (1, -1),
        threshold: float = 0.1,
        max_iter: int = 100,
        top_y: int | None = None,
        y_energy: float = 0.99,
        feasibility_threshold: float = 1e-2,
        num_solutions: int | None = None,
        perceptual: Literal["mse", "lpips"] | Callable[[Tensor, Tensor], Tensor] = "mse",
        method: EigMethod = "auto",
        dense_max_dim: int = 512,
        num_eig: int = 64,
        num_blocks: int = 6,
        chunk_size: int | None = None,
        seed: int = 0,
        eval_batch: int = 64,
        hvp_backend: HvpBackend = "autograd",
    ):
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"ks must be a non-empty list of 1-based eigenvector indices (>= 1), got {ks}")
        if not etas or any(not math.isfinite(float(e)) or float(e) <= 0 for e in etas):
            raise ValueError(f"etas must be a non-empty list of positive step lengths, got {etas}")
        if not signs or any(int(s) not in (1, -1) for s in signs):
            raise ValueError(f"signs must hold 1 and/or -1, got {signs}")
        if not feasibility_threshold > 0:
            raise ValueError(f"feasibility_threshold must be > 0, got {feasibility_threshold}")
        if num_solutions is not None and num_solutions < 1:
            raise ValueError(f"num_solutions must be >= 1 or None, got {num_solutions}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
        self.ks = [int(k) for k in ks]
        self.etas = [float(e) for e in etas]
        self.signs = [int(s) for s in signs]
        self.threshold = float(threshold)
        self.max_iter = int(max_iter)
        self.top_y = top_y
        self.y_energy = float(y_energy)
        self.feasibility_threshold = float(feasibility_threshold)
        self.num_solutions = num_solutions
        if perceptual == "lpips":  # the paper's H_X distance (needs the LPIPS trunk weights on disk)
            from inversion.metrics import LPIPS

            perceptual = LPIPS()
        self.perceptual = perceptual
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
            num_eig=max(self.num_eig, max(self.ks)),
            num_blocks=self.num_blocks,
            chunk_size=self.chunk_size,
            seed=self.seed,
            hvp_backend=self.hvp_backend,
        )

    @torch.no_grad()
    def _evaluate(self, prior, operator, latents: Tensor, y: Tensor, labels: Tensor | None):
        imgs, dists = [], []
        for i in range(0, latents.shape[0], self.eval_batch):
            z = latents[i : i + self.eval_batch]
            lab = None if labels is None else labels.expand(z.shape[0])
            x = prior(z, lab)
            imgs.append(x)
            dists.append(measurement_distance(operator, x, y))
        return torch.cat(imgs), torch.cat(dists)

    def run(
        self,
        prior: Callable[..., Tensor],
        operator: object,
        z0: Tensor,
        y: Tensor | None = None,
        labels: Tensor | None = None,
        geometry: LatentGeometry | None = None,
    ) -> ExplorationResult:
        """Explore around ``z0``: Hessians, Algorithm 1 per K, steps per eta and sign, feasibility.

        Args:
            prior: ``prior(z, labels) -> [0, 1]`` images; ``prior.project_latent`` is applied to each step if
                it exists.
            operator: object with ``A(x)`` or a callable ``x -> y``; it must treat every batch position alike
                (candidates are measured in batches), e.g. no per-position masks.
            z0: solution latent ``(1, *shape)`` or ``shape``.
            y: measurements ``(1, ...)``; ``None``: ``A(G(z0))`` (consistency with the start solution).
            labels: ``(1,)`` labels for a class-conditional prior.
            geometry: precomputed :class:`LatentGeometry` at ``z0`` (skips the Hessians).

        Shape:
            - z0: (1, *latent_shape); y: (1, ...) as ``A`` outputs.
        """
        t_start = time.perf_counter()
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
                x0_distance = float(measurement_distance(operator, x0, y)[0])
            if geometry is None:
                geometry = self.geometry(prior, operator, z0, labels)
            elif geometry.latent_shape != shape:
                raise ValueError(f"geometry is for latents {geometry.latent_shape}, z0 has {shape}")
            t_geo = time.perf_counter()
            num_x = geometry.vec_x.shape[1]
            bad = [k for k in self.ks if k > num_x]
            if bad:
                raise ValueError(
                    f"ks {bad} exceed the {num_x} computed eigenvectors of H_X: raise num_eig or lower ks"
                )
            top_y = eligible_top_y(geometry, self.top_y, self.y_energy)
            vec_y = geometry.vec_y[:, :top_y]
            z0f = z0.reshape(-1)
            searches: dict[int, DirectionSearch] = {}
            parts: dict[str, list[Tensor]] = {n: [] for n in ("z", "x", "dist", "raw", "k", "eta", "sign")}
            found = 0
            for k in self.ks:
                s = search_direction(geometry.vec_x[:, k - 1], vec_y, self.threshold, self.max_iter)
                searches[k] = s
                if s.vanished:
                    continue
                steps = torch.tensor(
                    [sg * e for e in self.etas for sg in self.signs], dtype=z0.dtype, device=z0.device
                )
                z = z0f + steps[:, None] * s.direction[None, :]
                z_raw = z0f + steps[:, None] * s.start[None, :]
                z, z_raw = z.view(-1, *shape), z_raw.view(-1, *shape)
                if project is not None:
                    z, z_raw = project(z), project(z_raw)
                x, dist = self._evaluate(prior, operator, z, y, labels)
                _, raw = self._evaluate(prior, operator, z_raw, y, labels)
                parts["z"].append(z)
                parts["x"].append(x)
                parts["dist"].append(dist)
                parts["raw"].append(raw)
                parts["k"].append(torch.full((z.shape[0],), k, dtype=torch.long, device=z0.device))
                parts["eta"].append(steps.abs())
                parts["sign"].append(torch.sign(steps).long())
                found += int((dist <= self.feasibility_threshold).sum())
                if self.num_solutions is not None and found >= self.num_solutions:
                    break
        t_end = time.perf_counter()
        if parts["z"]:
            cat = {n: torch.cat(v) for n, v in parts.items()}
        else:
            cat = {
                "z": z0.new_zeros((0, *shape)),
                "x": x0.new_zeros((0, *x0.shape[1:])),
                **{n: z0.new_zeros(0) for n in ("dist", "raw", "eta")},
                **{n: torch.zeros(0, dtype=torch.long, device=z0.device) for n in ("k", "sign")},
            }
        return ExplorationResult(
            z0=z0,
            x0=x0,
            y=y,
            x0_distance=x0_distance,
            latents=cat["z"],
            images=cat["x"],
            distances=cat["dist"],
            feasible=cat["dist"] <= self.feasibility_threshold,
            raw_distances=cat["raw"],
            k=cat["k"],
            eta=cat["eta"],
            sign=cat["sign"],
            searches=searches,
            geometry=geometry,
            top_y=top_y,
            threshold=self.feasibility_threshold,
            timings={"geometry": t_geo - t_start, "search": t_end - t_geo, "total": t_end - t_start},
        )


def explore(
    prior: Callable[..., Tensor],
    operator: object,
    z0: Tensor,
    y: Tensor | None = None,
    labels: Tensor | None = None,
    **config,
) -> ExplorationResult:
    """Functional form: ``EGlass(**config).run(prior, operator, z0, y, labels)``."""
    return EGlass(**config).run(prior, operator, z0, y, labels)
