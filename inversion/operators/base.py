"""Operator base classes: ``y = A(x) + n``; linear operators add ``A_adjoint`` and ``A_dagger``."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from torch import nn

from inversion.operators.functional import batch_dot, check_image, has_nan, least_squares

__all__ = ["BP_MODES", "Operator", "LinearOperator", "back_project", "forward_operator"]


class Operator(nn.Module):
    """A forward model ``y = A(x) + sigma * n`` with white Gaussian noise ``n``.

    Subclasses implement :meth:`_forward_op` (the noiseless map). :meth:`A` validates the input (4-D,
    floating point, no NaN) and calls it. ``forward`` adds the noise; pass a ``torch.Generator`` (on the
    input's device) for reproducible noise.

    Args:
        sigma: standard deviation of the additive Gaussian noise on the measurements (images in [0, 1];
            e.g. 10/255 as in IAGAN Tables 1, 3, 4).
    """

    linear: bool = False
    #: required number of input channels, or None when any count works
    in_channels: int | None = None

    def __init__(self, sigma: float = 0.0) -> None:
        super().__init__()
        if not sigma >= 0:
            raise ValueError(f"`sigma` must be >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A(self, x: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Noiseless measurement.

        ``check=False`` skips the NaN scan of ``x`` (the shape checks stay): for callers whose ``x`` is
        their own network's output, e.g. the restoration loop, where the scan would cost as much as a
        cheap operator itself.

        Shape:
            x: (B, C, H, W) in [0, 1] -> operator specific, (B, C', H', W') or (B, m).
        """
        check_image(x, "x", self.in_channels, values=check)
        return self._forward_op(x)

    def noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Add this operator's measurement noise to ``y``."""
        if self.sigma == 0:
            return y
        n = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return y + self.sigma * n

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noisy measurement ``A(x) + sigma * n``."""
        return self.noise(self.A(x), generator)

    # -- batch-position dependence (per-image masks) -------------------------------------------
    def for_index(self, index: int) -> Operator:
        """A copy that treats every row as the image at dataset position ``index``.

        Operators whose measurement depends on the batch position (per-image masks, also inside a
        :class:`Composite`) fix it to that of ``index``; others are returned as they are copied. A folder
        run uses it so an image's measurement depends on its index, not on its batch or process.
        """
        if not self.row_dependent():
            return self
        op = copy.deepcopy(self)
        for m in op.modules():
            if isinstance(m, Operator):
                m._set_index(int(index))
        return op

    def repeated(self, r: int) -> Operator:
        """A copy for ``n * r`` rows in which row ``j`` is measured as row ``j // r`` of the original.

        Restarts run ``r`` latents per image as one batch; per-image masks must follow the image.
        """
        if int(r) < 1:
            raise ValueError(f"repeat count must be >= 1, got {r!r}")
        if int(r) == 1 or not self.row_dependent():
            return self
        op = copy.deepcopy(self)
        for m in op.modules():
            if isinstance(m, Operator):
                m._set_repeat(int(r))
        return op

    def row_dependent(self) -> bool:
        """Whether the measurement of a row depends on its batch position (here or in a member)."""
        return any(m._own_row_dependence() for m in self.modules() if isinstance(m, Operator))

    def _own_row_dependence(self) -> bool:
        return False

    def _set_index(self, index: int) -> None:
        """Hook of :meth:`for_index` (no-op for batch-independent operators)."""

    def _set_repeat(self, r: int) -> None:
        """Hook of :meth:`repeated` (no-op for batch-independent operators)."""

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:g}"


class LinearOperator(Operator):
    """A linear operator with exact adjoint and a pseudo-inverse.

    The default :meth:`A_dagger` is CGLS (CG on ``A^T A x = A^T y`` from 0,
    :func:`functional.least_squares`): the minimum-norm least-squares solution for any ``y``, in the
    range of ``A`` or not, whatever the rank of ``A``. Subclasses override it with a closed form where
    one exists.

    Args:
        sigma: measurement noise standard deviation (see :class:`Operator`).
        cg_iters: maximum CGLS iterations of the default pseudo-inverse.
        cg_tol: relative normal-equation residual ``||A^T(y - Ax)|| / ||A^T y||`` at which CGLS stops
            (None: 1e-12 in float64, 1e-6 otherwise).
    """

    linear = True

    def __init__(self, sigma: float = 0.0, cg_iters: int = 200, cg_tol: float | None = None) -> None:
        super().__init__(sigma)
        self.cg_iters = int(cg_iters)
        self.cg_tol = cg_tol

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Exact adjoint ``A^T y`` under the real inner product. Output has the shape of ``x``.
        ``check=False``: no NaN scan of ``y`` (see :meth:`A`)."""
        if check and has_nan(y):
            raise ValueError("`y` contains NaN values")
        return self._adjoint(y)

    def A_dagger(self, y: torch.Tensor, check: bool = True) -> torch.Tensor:
        """Pseudo-inverse ``A^+ y``: the minimum-norm least-squares solution, for any ``y``.
        ``check=False``: no NaN scan of ``y`` (see :meth:`A`)."""
        if check and has_nan(y):
            raise ValueError("`y` contains NaN values")
        return self._dagger(y)

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        return least_squares(self._forward_op, self._adjoint, y, self.cg_iters, self.cg_tol)

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        """``A^T A x`` (the Gram operator of the data term)."""
        return self._adjoint(self.A(x))

    def adjointness_error(
        self, x: torch.Tensor, y: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> float:
        """Relative adjointness error ``|<Ax, y> - <x, A^T y>| / (|Ax| |y|)`` over the whole batch.

        ``y`` defaults to a standard normal tensor shaped like ``A(x)`` drawn from ``generator``.
        """
        ax = self.A(x)
        if y is None:
            y = torch.randn(ax.shape, generator=generator, dtype=ax.dtype, device=ax.device)
        aty = self.A_adjoint(y)
        lhs = batch_dot(ax, y).sum()
        rhs = batch_dot(x, aty).sum()
        return float((lhs - rhs).abs() / (ax.norm() * y.norm()).clamp_min(torch.finfo(x.dtype).tiny))


BP_MODES = ("code", "paper", "exact")


def back_project(
    x: torch.Tensor, y: torch.Tensor, operator: LinearOperator, bp: str = "exact"
) -> torch.Tensor:
    """Back-projection onto the measurements: ``x + A^+ (y - A x)`` (IAGAN eq. 10).

    ``bp`` picks ``A^+``: ``"exact"``, the exact pseudo-inverse (``operator.A_dagger``), which enforces
    ``A x_bp = y`` for ``y`` in the range of ``A`` while keeping the null-space part of ``x``; ``"code"``,
    the A-dagger of IAGAN's ``main.py`` (an operator's ``A_dagger_code``: ``F.interpolate(mode='bicubic')``
    for super-resolution, ``compress_FFT_t`` for :class:`IAGANFourier`; the exact one elsewhere);
    ``"paper"``, IAGAN's paper (Sec. 4.2, "A-dagger can be implemented by bicubic upsampling": an
    operator's ``A_dagger_bicubic``; the exact one elsewhere).

    Shape:
        x: (B, C, H, W); y: shaped like ``operator.A(x)`` -> (B, C, H, W)
    """
    if bp not in BP_MODES:
        raise ValueError(
            f"bp must be 'code' (IAGAN main.py's A-dagger), 'paper' (its paper's bicubic A-dagger for SR) or "
            f"'exact', got {bp!r}"
        )
    if not getattr(operator, "linear", False):
        raise ValueError(f"`operator` must be linear for back-projection, got {type(operator).__name__}")
    residual = y - operator.A(x)
    own = getattr(operator, {"code": "A_dagger_code", "paper": "A_dagger_bicubic"}.get(bp, ""), None)
    if callable(own):
        return x + own(residual)
    return x + operator.A_dagger(residual)


def forward_operator(operator: object, check: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """The noiseless forward map of ``operator``: its ``A`` method if it has one, else the callable itself.

    ``check=False`` (an :class:`Operator`'s ``A`` only): without the NaN scan, for loops that measure
    their own network's output every step.
    """
    fn = getattr(operator, "A", operator)
    if not callable(fn):
        raise ValueError(
            f"operator must have a callable `A(x)` or be callable itself, got {type(operator).__name__}"
        )
    if not check and isinstance(operator, Operator):
        return functools.partial(operator.A, check=False)
    return fn
