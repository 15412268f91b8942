"""Compressed sensing: dense Gaussian matrix (Bora et al., IAGAN) or subsampled orthonormal Fourier."""

from __future__ import annotations

from typing import Literal

import torch

from inversion.operators import functional as Fn
from inversion.operators.base import LinearOperator

__all__ = ["CompressedSensing", "IAGANFourier", "iagan_fourier_mask"]


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


def iagan_fourier_mask(size: int, thresh: float, seed: int) -> torch.Tensor:
    """The frequency mask of IAGAN's ``rand_mask(size, thresh)`` (``IAGAN.py``) after ``np.random.seed``.

    Two ``|randn| * thresh`` draws (x, then y indices, modulo ``size // 2``) mark frequencies of the
    top-left quadrant; the other quadrants mirror it by index flips (``i -> size // 2 - 1 - i`` inside
    each half), not by conjugate symmetry.

    Shape:
        - output: ``(size, size)`` float64 0/1.
    """
    import numpy as np  # IAGAN draws from numpy's legacy global generator (a RandomState)

    half = size // 2
    rs = np.random.RandomState(int(seed))
    idx_x = np.mod(np.floor(np.abs(rs.randn(half, half)) * thresh), half).astype(np.int64)
    idx_y = np.mod(np.floor(np.abs(rs.randn(half, half)) * thresh), half).astype(np.int64)
    q = torch.zeros(half, half, dtype=torch.float64)
    q[torch.from_numpy(idx_y), torch.from_numpy(idx_x)] = 1
    top = torch.cat([q, q.flip(1)], dim=1)
    return torch.cat([top, top.flip(0)], dim=0)


class IAGANFourier(LinearOperator):
    """IAGAN's Fourier compressed sensing (``IAGAN.py`` ``rand_mask`` + ``compress_FFT``; IAGAN Table 1).

    Per channel, the real and the imaginary part of every masked frequency of the orthonormal two-sided
    2-D DFT, row-major and interleaved (``Re, Im`` of each frequency in turn), as ``compress_FFT`` lays
    them out: ``y`` is ``(B, C, 2 K)`` for ``K`` masked frequencies. The mask is given, or drawn as
    ``rand_mask(size, thresh)`` draws it after ``np.random.seed(seed)``. Some measurements repeat others
    (conjugate pairs) or are always 0 (the imaginary part at DC), so ``A`` has dependent rows:
    :meth:`A_dagger` is the exact pseudo-inverse (CGLS), while :meth:`A_dagger_code` is the code's
    ``compress_FFT_t`` (zero fill, then the inverse DFT of the half spectrum), which
    ``back_project(bp="code")`` uses.

    Args:
        thresh: ``rand_mask``'s spread (IAGAN's ``main.py`` example: ``size * ratio / 2``; 8.5 at 64 px
            keeps 30% of the frequencies).
        seed: numpy seed of the mask draw.
        mask: a given ``(H, W)`` 0/1 mask instead (square images of that size only).
        sigma: measurement noise standard deviation (on [0, 1] images; IAGAN adds its noise to [-1, 1]
            images, so its 10/255 is 5/255 here).

    Shape:
        x: (B, C, H, H), H even -> y: (B, C, 2 K)
    """

    def __init__(
        self,
        thresh: float = 8.5,
        seed: int = 0,
        mask: torch.Tensor | None = None,
        sigma: float = 0.0,
        cg_iters: int = 200,
    ) -> None:
        super().__init__(sigma=sigma, cg_iters=cg_iters)
        if not (isinstance(thresh, int | float) and thresh > 0):
            raise ValueError(f"`thresh` must be a number > 0, got {thresh!r}")
        self.thresh, self.seed = float(thresh), int(seed)
        self.register_buffer("mask", None, persistent=False)
        self._size: int | None = None
        if mask is not None:
            mask = torch.as_tensor(mask)
            if (
                mask.dim() != 2
                or mask.shape[0] != mask.shape[1]
                or not bool(((mask == 0) | (mask == 1)).all())
            ):
                raise ValueError(f"`mask` must be a square (H, H) 0/1 tensor, got shape {tuple(mask.shape)}")
            self._set_mask(mask.to(torch.float64))

    def _set_mask(self, mask: torch.Tensor) -> None:
        self.mask = mask
        self._size = int(mask.shape[0])
        # indices into the flattened (H, W, 2) spectrum of compress_FFT's layout
        self.register_buffer("index", torch.nonzero(mask.flatten() > 0).flatten(), persistent=False)

    def _build(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if h != w or h % 2:
            raise ValueError(f"IAGANFourier needs square images of even side, got {h}x{w}")
        if self._size is None:
            self._set_mask(iagan_fourier_mask(h, self.thresh, self.seed).to(x.device))
        elif self._size != h:
            raise ValueError(f"`x` is {h}x{w} but this operator's mask is {self._size}x{self._size}")

    def _measured(self, dev: torch.device) -> torch.Tensor:
        i = self.index.to(dev)
        return torch.stack([2 * i, 2 * i + 1], dim=1).flatten()

    @property
    def frequencies(self) -> int:
        """K, the masked frequencies (known once the mask is)."""
        if self._size is None:
            raise ValueError("the mask is not drawn yet: pass `mask` or call A(x) first")
        return int(self.index.numel())

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        self._build(x)
        spec = torch.view_as_real(torch.fft.fft2(x, norm="ortho"))  # (B, C, H, W, 2)
        return spec.flatten(2)[..., self._measured(x.device)]

    def _fill(self, y: torch.Tensor) -> torch.Tensor:
        if self._size is None:
            raise ValueError("the mask is not drawn yet: pass `mask` or call A(x) first")
        k2 = 2 * self.frequencies
        if y.dim() != 3 or y.shape[-1] != k2:
            raise ValueError(f"`y` must have shape (B, C, {k2}), got {tuple(y.shape)}")
        n = self._size
        full = y.new_zeros(*y.shape[:2], n * n * 2)
        full[..., self._measured(y.device)] = y
        return torch.view_as_complex(full.view(*y.shape[:2], n, n, 2).contiguous())

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.fft.ifft2(self._fill(y), norm="ortho").real

    def A_dagger_code(self, y: torch.Tensor) -> torch.Tensor:
        """IAGAN's ``compress_FFT_t``: zero fill, then ``irfft`` (``onesided=False``, normalised), which as
        torch 1.x read it is the inverse real DFT of the half spectrum's first ``W / 2 + 1`` columns."""
        n = self._size or 0
        return torch.fft.irfft2(self._fill(y)[..., : n // 2 + 1], s=(n, n), norm="ortho")

    def extra_repr(self) -> str:
        return f"thresh={self.thresh:g}, seed={self.seed}, {super().extra_repr()}"
