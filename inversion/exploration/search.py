"""e-GLASS Algorithm 1 (Montanaro et al., ICIP 2022): from a top eigenvector ``v^K`` of ``H_X``, project out
the eigenvectors ``u^j`` of ``H_Y`` that correlate with it beyond a threshold until none does
(:func:`search_direction`), and the choice of how many ``H_Y`` directions are eligible
(:func:`eligible_top_y`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from inversion.exploration.geometry import LatentGeometry

Tensor = torch.Tensor


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
    level = max(float(threshold), 1e-10)  # below 1e-10 a correlation is rounding: threshold 0 can converge
    projected: list[int] = []
    iterations = 0
    converged = False
    vanished = False
    for _ in range(max_iter):
        corr = vec_y.mT @ d
        over = (corr.abs() > level).nonzero().flatten()
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
        converged = bool((vec_y.mT @ d).abs().max() <= level) if vec_y.shape[1] else True
    return DirectionSearch(start, d, projected, iterations, converged, vanished)


def eligible_top_y(geometry: LatentGeometry, top_y: int | None, energy: float) -> int:
    """How many top eigenvectors of ``H_Y`` Algorithm 1 may project out (its set ``J``).

    ``top_y`` if given, else the smallest ``k`` whose eigenvalues hold ``energy`` of the trace of ``H_Y``
    (the paper leaves ``k`` open; this rule is ours). ``J`` never spans the whole latent space (every
    direction would be projected away): an explicit ``top_y = d`` is an error, and the energy rule is
    capped at ``d - 1`` with a warning (the few directions left give few distinct solutions).
    """
    available = int(geometry.eig_y.numel())
    dim = geometry.dim
    if top_y is not None:
        if not 0 <= top_y <= available:
            raise ValueError(
                f"top_y must lie in [0, {available}] (computed eigenvectors of H_Y), got {top_y}"
            )
        if top_y >= dim:
            raise ValueError(
                f"top_y={top_y} would project out the whole {dim}-d latent space: use top_y < {dim}"
            )
        return int(top_y)
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"y_energy must lie in (0, 1], got {energy}")
    lam = geometry.eig_y.clamp_min(0)
    total = geometry.trace_y if geometry.trace_y > 0 else float(lam.sum())
    if total <= 0:
        return 0
    cum = torch.cumsum(lam, 0) / total
    k = min(available, int((cum < energy - 1e-12).sum()) + 1)
    if k >= dim:
        warnings.warn(
            f"the top eigenvectors of H_Y holding {energy:g} of its trace span the whole {dim}-d latent "
            f"space (the measurements constrain every direction); J is capped at {dim - 1}: expect few "
            "or no distinct solutions (lower y_energy or set top_y)",
            stacklevel=3,
        )
        k = dim - 1
    return k
