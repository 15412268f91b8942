"""What counts as a solution: one feasibility criterion and one distinctness rule, shared by e-GLASS and
the restart baseline, and the diversity report of a set of solutions.

* :class:`Feasibility`: the paper (e-GLASS Sec. 4, Fig. 2) calls a reconstruction feasible when the
  l2 distance between its measurements and ``y`` is under a threshold (1e-2 there, on BigGAN's
  measurements). Here: the Euclidean norm of the measurement residual *relative to* ``||y||_2``,
  ``||A(x) - y||_2 / ||y||_2 <= rel_tol``. Relative, so that one number means the same for an 8x8
  low-resolution image and for 768 observed pixels, and for any intensity range; with a noise floor
  ``noise_factor * sigma * sqrt(m) / ||y||`` for noisy operators (no solution can fit below the noise).
  Default ``rel_tol = 0.05``, scaled to our 32x32 priors: IAGAN fits of held-out images reach
  0.001-0.01; searched directions stay under 0.05 for steps at which the raw ``v^K`` steps exceed it
  (Fig. 2 ordering; measured in ``python -m benchmarks.eglass``, tested in
  tests/inversion/test_eglass.py).
* :class:`Distinctness`: two solutions are different when their images differ by at least
  ``min_image_distance`` (pixel RMS) and their latent offsets from the anchor differ in direction by at
  least ``min_angle`` degrees (the paper only needs "different"; the numbers are ours).
* :func:`diversity`: mean pairwise image distance, split into the part the measurements constrain
  (``A^+ A (x_i - x_j)``: outside the hole, the low frequencies) and the part they do not.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from inversion.operators.base import forward_operator

Tensor = torch.Tensor


def check_row_independent(operator: object) -> None:
    """Raise ValueError when ``operator`` measures batch rows differently (per-image masks).

    Candidates and restarts of one image are measured as one batch; an operator whose rows differ
    would measure row ``j`` with image ``j``'s mask, silently wrong.
    """
    row_dependent = getattr(operator, "row_dependent", None)
    if callable(row_dependent) and row_dependent():
        raise ValueError(
            f"{type(operator).__name__} measures each batch row differently (per-image masks); "
            "exploring one image measures many candidates in one batch. Pass the operator of that "
            "image: operator.for_index(i) for the image at position i (or one fixed mask)"
        )


@dataclass(frozen=True)
class Feasibility:
    """Measurement-consistency criterion ``||A(x) - y||_2 / ||y||_2 <= tolerance(y)`` (see module doc).

    Args:
        rel_tol: relative residual tolerance (ours: 0.05; paper Sec. 4: an absolute l2 of 1e-2 on its
            measurements).
        noise_factor: for an operator with noise ``sigma > 0`` the tolerance is at least
            ``noise_factor * sigma * sqrt(m) / ||y||`` (the expected residual of the true image is
            ``sigma * sqrt(m)``).
    """

    rel_tol: float = 0.05
    noise_factor: float = 1.5

    def __post_init__(self):
        if not (math.isfinite(self.rel_tol) and self.rel_tol > 0):
            raise ValueError(f"rel_tol must be a positive number, got {self.rel_tol}")
        if not self.noise_factor >= 0:
            raise ValueError(f"noise_factor must be >= 0, got {self.noise_factor}")

    def residual(self, operator: object, images: Tensor, y: Tensor) -> Tensor:
        """Relative residuals ``||A(x_i) - y||_2 / ||y||_2``, ``(N,)``, for images ``(N, C, H, W)``."""
        ax = forward_operator(operator)(images)
        if ax.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"y has shape {tuple(y.shape)} but A(x) has per-image shape {tuple(ax.shape[1:])}"
            )
        y_norm = y.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny)
        return (ax - y).flatten(1).norm(dim=1) / y_norm

    def tolerance(self, operator: object, y: Tensor) -> float:
        """The tolerance for measurements ``y`` of one image ``(1, ...)``."""
        sigma = float(getattr(operator, "sigma", 0.0) or 0.0)
        tol = self.rel_tol
        if sigma > 0:
            y_norm = float(y.flatten().norm())
            tol = max(tol, self.noise_factor * sigma * math.sqrt(y[0].numel()) / max(y_norm, 1e-30))
        return tol

    def feasible(self, operator: object, images: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(residuals (N,), feasible (N,) bool)``."""
        r = self.residual(operator, images, y)
        return r, r <= self.tolerance(operator, y)


@dataclass(frozen=True)
class Distinctness:
    """When two solutions count as two: images and latent offset directions both far enough apart.

    Args:
        min_image_distance: least pixel RMS distance between the two images (images in [0, 1]).
        min_angle: least angle in degrees between the latent offsets ``z_i - anchor`` and
            ``z_j - anchor`` (e-GLASS: the anchor is ``z0``, so points on one line through ``z0`` on the
            same side are one solution; restarts: the latent origin, the centre of a Gaussian latent).
    """

    min_image_distance: float = 0.02
    min_angle: float = 30.0

    def __post_init__(self):
        if not self.min_image_distance >= 0:
            raise ValueError(f"min_image_distance must be >= 0, got {self.min_image_distance}")
        if not 0 <= self.min_angle <= 180:
            raise ValueError(f"min_angle must lie in [0, 180] degrees, got {self.min_angle}")

    def distinct_from(self, image: Tensor, offset: Tensor, kept_images: Tensor, kept_offsets: Tensor) -> bool:
        """Whether a candidate (image ``(C, H, W)``, flat offset ``(d,)``) is distinct from all kept ones."""
        if kept_images.shape[0] == 0:
            return True
        img = (kept_images - image).flatten(1).pow(2).mean(1).sqrt()
        if bool((img < self.min_image_distance).any()):
            return False
        if self.min_angle <= 0:
            return True
        a = offset / offset.norm().clamp_min(1e-30)
        b = kept_offsets / kept_offsets.norm(dim=1, keepdim=True).clamp_min(1e-30)
        cos = (b @ a).clamp(-1.0, 1.0)
        return bool((cos <= math.cos(math.radians(self.min_angle)) + 1e-12).all())

    def select(
        self,
        images: Tensor,
        latents: Tensor,
        anchor: Tensor | None = None,
        limit: int | None = None,
        kept: list[int] | None = None,
    ) -> list[int]:
        """Greedy selection, in the given order, of candidates distinct from all earlier kept ones.

        Args:
            images: ``(N, C, H, W)``; latents: ``(N, *shape)``; anchor: ``(1, *shape)`` or None (origin).
            limit: stop after this many kept; kept: indices already kept (extended in place).

        Returns:
            indices kept (including ``kept``).
        """
        kept = [] if kept is None else kept
        offsets = latents.flatten(1) - (0.0 if anchor is None else anchor.flatten(1))
        for i in range(images.shape[0]):
            if limit is not None and len(kept) >= limit:
                break
            if i in kept:
                continue
            if self.distinct_from(images[i], offsets[i], images[kept], offsets[kept]):
                kept.append(i)
        return kept


def pairwise_distance(images: Tensor) -> Tensor:
    """Pixel RMS distance of every pair, ``(N (N - 1) / 2,)``."""
    pairs = list(itertools.combinations(range(images.shape[0]), 2))
    if not pairs:
        return images.new_zeros(0)
    a = images[[i for i, _ in pairs]]
    b = images[[j for _, j in pairs]]
    return (a - b).flatten(1).pow(2).mean(1).sqrt()


@torch.no_grad()
def diversity(images: Tensor, operator: object | None = None) -> dict[str, float]:
    """Mean pairwise pixel-RMS distance of a set of solutions, and where it lies.

    For a linear operator with ``A_dagger`` each pairwise difference ``e`` splits into the part the
    measurements see, ``A^+ A e`` (inpainting: outside the hole; box SR: the low frequencies), and the
    rest (the hole; the high frequencies): ``constrained`` and ``free`` are the mean pairwise RMS of
    the two parts (``free**2 + constrained**2`` is the mean squared total for an orthogonal split).
    """
    n = images.shape[0]
    nan = float("nan")
    if n < 2:
        return {"pairwise_rms": nan, "free": nan, "constrained": nan}
    pairs = list(itertools.combinations(range(n), 2))
    diff = images[[i for i, _ in pairs]] - images[[j for _, j in pairs]]
    out = {"pairwise_rms": float(diff.flatten(1).pow(2).mean(1).sqrt().mean())}
    dagger = getattr(operator, "A_dagger", None)
    if operator is not None and callable(dagger) and getattr(operator, "linear", False):
        seen = dagger(forward_operator(operator)(diff))
        out["constrained"] = float(seen.flatten(1).pow(2).mean(1).sqrt().mean())
        out["free"] = float((diff - seen).flatten(1).pow(2).mean(1).sqrt().mean())
    else:
        out["constrained"] = out["free"] = nan
    return out
