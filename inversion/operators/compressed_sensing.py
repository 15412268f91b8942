"""Compressed sensing: dense Gaussian matrix (Bora et al., IAGAN) or subsampled orthonormal Fourier."""

from __future__ import annotations

from typing import Literal

import torch

from inversion.operators import functional as Fn
from inversion.operators.base import LinearOperator

__all__ = ["CompressedSensing"]


class CompressedSensing(LinearOperator):
    """``y = A vec(x)`` per image, with ``m = round(ratio * n)`` measurements of ``n = C H W`` values.

    * ``gaussian``: dense i.i.d. N(0, 1/m) matrix (Bora et al. 2017; IAGAN Fig. 2). Pseudo-inverse
      ``A^T (A A^T)^{-1} y`` through a precomputed Cholesky factor. Memory is m n numbers: use it for
      small images (3x64x64 at ratio 0.5 is 6144 x 12288).
    * ``fourier``: orthonormal 2-D DFT of each channel, subsampled (IAGAN Table 1, ratios 0.3 / 0.5,
      noise 10/255). Complex coefficients are represented by real orthonormal coordinates
      (sqrt(2) Re, sqrt(2) Im per conjugate pair; Re for self-conjugate frequencies), so the adjoint is
      exact under the real inner product and A A^T = I: ``A_dagger = A_adjoint``. ``round(ratio H W)``
      coordinates per channel are kept, the same for every channel, drawn without replacement from a
      variable density ~ 1 / (1 + (r / 0.05)^2) in the normalised radial frequency r (most samples at low
      frequencies, like IAGAN Fig. 5; the paper's exact masks are not published).

    The matrix / mask is created LAZILY for the input shape from ``seed`` (on the CPU in float64, then
    cast), so the same seed and shape always give the same operator; ``image_shape`` optionally fixes
    the shape at construction, and :meth:`A_adjoint` needs it (or one earlier call of :meth:`A`).

    Args:
        ratio: m / n in (0, 1].
        kind: "gaussian" or "fourier".
        seed: seed of the matrix / mask.
        image_shape: optional [C, H, W].
        sigma: measurement noise standard deviation.

    Shape:
        x: (B, C, H, W) -> y: (B, m)
    """

    def __init__(
        self,
        ratio: float = 0.3,
        kind: Literal["gaussian", "fourier"] = "fourier",
        seed: int = 0,
        image_shape: list[int] | None = None,
        sigma: float = 0.0,
    ) -> None:
        super().__init__(sigma=sigma)
        if not (isinstance(ratio, int | float) and 0 < ratio <= 1):
            raise ValueError(f"`ratio` must lie in (0, 1], got {ratio!r}")
        if kind not in ("gaussian", "fourier"):
            raise ValueError(f"`kind` must be 'gaussian' or 'fourier', got {kind!r}")
        if image_shape is not None and (len(image_shape) != 3 or min(image_shape) < 1):
            raise ValueError(f"`image_shape` must be [C, H, W] with positive entries, got {image_shape!r}")
        self.ratio, self.kind, self.seed = float(ratio), kind, int(seed)
        self.image_shape = tuple(int(s) for s in image_shape) if image_shape is not None else None
        self._built: tuple[int, int, int] | None = None
        if self.image_shape is not None:
            self._build(self.image_shape)

    # ---------------------------------------------------------------------------------- construction
    def _build(self, shape: tuple[int, int, int]) -> None:
        if self._built == shape:
            return
        c, h, w = shape
        g = torch.Generator().manual_seed(self.seed)
        if self.kind == "gaussian":
            n = c * h * w
            m = max(1, round(self.ratio * n))
            mat = torch.randn(m, n, generator=g, dtype=torch.float64) / m**0.5
            gram = mat @ mat.T
            self.register_buffer("matrix", mat, persistent=False)
            self.register_buffer("chol", torch.linalg.cholesky(gram), persistent=False)
            self._cast = None
        else:
            freq, coef, radius = Fn.real_fourier_coordinates(h, w)
            m = max(1, round(self.ratio * h * w))
            density = 1.0 / (1.0 + (radius / 0.05) ** 2)
            order = torch.multinomial(density, h * w, replacement=False, generator=g)
            pick = order[:m].sort().values
            self.register_buffer("freq", freq[pick], persistent=False)
            self.register_buffer("coef", coef[pick], persistent=False)
        self._built = shape

    def _matrix_like(self, ref: torch.Tensor) -> torch.Tensor:
        """The matrix in ``ref``'s dtype/device; the last cast is cached (no copy per call)."""
        if self.matrix.dtype == ref.dtype and self.matrix.device == ref.device:
            return self.matrix
        if self._cast is None or self._cast.dtype != ref.dtype or self._cast.device != ref.device:
            self._cast = self.matrix.to(ref)
        return self._cast

    def _shape_of(self, x: torch.Tensor) -> tuple[int, int, int]:
        shape = tuple(x.shape[1:])
        if self.image_shape is not None and shape != self.image_shape:
            raise ValueError(
                f"`x` has shape {shape} but this operator was built for `image_shape`={self.image_shape}"
            )
        return shape

    @property
    def num_measurements(self) -> int:
        """m (per image), available once the shape is known."""
        if self._built is None:
            raise ValueError("the operator has no shape yet: pass `image_shape` or call A(x) first")
        return self.matrix.shape[0] if self.kind == "gaussian" else self._built[0] * self.freq.numel()

    def frequency_mask(self) -> torch.Tensor:
        """(H, W) 0/1 map of the sampled frequencies (fourier kind; both conjugates of a pair shown)."""
        if self.kind != "fourier" or self._built is None:
            raise ValueError("`frequency_mask` needs kind='fourier' and a known image shape")
        _, h, w = self._built
        m = torch.zeros(h * w, device=self.freq.device)
        m[self.freq] = 1
        m = m.view(h, w)
        return torch.maximum(m, torch.roll(m.flip(0, 1), shifts=(1, 1), dims=(0, 1)))

    # -------------------------------------------------------------------------------------- operator
    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        self._build(self._shape_of(x))
        if self.kind == "gaussian":
            return x.flatten(1) @ self._matrix_like(x).T
        return Fn.fourier_subsample(x, self.freq, self.coef)

    def _need_shape(self) -> tuple[int, int, int]:
        if self._built is None:
            raise ValueError("`image_shape` is unknown: pass image_shape=[C, H, W] or call A(x) first")
        return self._built

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        shape = self._need_shape()
        if y.ndim != 2 or y.shape[1] != self.num_measurements:
            raise ValueError(f"`y` must have shape (B, {self.num_measurements}), got {tuple(y.shape)}")
        if self.kind == "gaussian":
            return (y @ self._matrix_like(y)).view(-1, *shape)
        return Fn.fourier_subsample_adjoint(y, self.freq, self.coef, shape)

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "fourier":  # orthonormal rows: A^+ = A^T
            return self._adjoint(y)
        chol = self.chol.to(y.device)
        u = torch.cholesky_solve(y.T.to(chol.dtype), chol).T.to(y.dtype)
        return self._adjoint(u)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:g}, kind={self.kind!r}, seed={self.seed}, {super().extra_repr()}"
