"""Super-resolution and blur operators (anti-aliased downsampling; convolution)."""

from __future__ import annotations

from typing import Literal

import torch

from inversion.operators import functional as Fn
from inversion.operators.base import LinearOperator
from inversion.operators.functional import PadMode

__all__ = ["SuperResolution", "Blur"]


class SuperResolution(LinearOperator):
    """Anti-aliased downsampling by an integer factor: separable filter, then stride ``factor``.

    DGP and LCM downsample with Lanczos (DGP following DIP), IAGAN with the bicubic anti-aliasing kernel
    (IAGAN Tables 2, 3). The kernel is built explicitly (:func:`functional.resize_kernel_1d`), so the
    adjoint (transposed conv, folded padding) is exact. ``box`` gives A A^T = I / f^2 and a closed-form
    pseudo-inverse; the others use CGLS (:meth:`LinearOperator.A_dagger`; well conditioned: a few dozen
    iterations).

    Conventions (for measurements made by other tools):

    * sampling phase: output pixel ``i`` is centred at input coordinate ``(i + 0.5) f - 0.5`` (pixel
      centres at integers), i.e. ``4 i + 1.5`` for ``f = 4`` -- the PIL / Matlab ``imresize`` convention.
      deepinv 0.5's ``Downsampling`` centres it at ``4 i + 0.5`` (one input pixel earlier): shift by
      one pixel before comparing measurements.
    * the filter is a correlation with the (symmetric) kernel, so convolution vs correlation does not
      matter here.
    * border: ``reflect`` (mirror without repeating the edge pixel, like ``F.pad(mode="reflect")``) by
      default; deepinv's ``Downsampling`` defaults to ``circular``, PIL renormalises the kernel at the
      border instead (close to ``replicate`` for smooth images).

    Args:
        factor: integer downscaling factor; H and W must be divisible by it.
        kernel: "bicubic" (Keys, a=-0.5), "lanczos" (Lanczos-3) or "box".
        padding: border handling, "reflect" (default), "replicate", "circular" or "zeros".
        sigma: measurement noise standard deviation.
        cg_iters: maximum CG iterations of the pseudo-inverse (bicubic / Lanczos).

    Shape:
        x: (B, C, H, W) -> y: (B, C, H/f, W/f)
    """

    def __init__(
        self,
        factor: int = 4,
        kernel: Literal["bicubic", "lanczos", "box"] = "bicubic",
        padding: PadMode = "reflect",
        sigma: float = 0.0,
        cg_iters: int = 200,
    ) -> None:
        super().__init__(sigma=sigma, cg_iters=cg_iters)
        if padding not in ("reflect", "replicate", "circular", "zeros"):
            raise ValueError(f"`padding` must be reflect, replicate, circular or zeros; got {padding!r}")
        self.factor = int(factor)
        self.kernel = kernel
        self.padding = padding
        self.register_buffer("k1d", Fn.resize_kernel_1d(factor, kernel), persistent=False)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f"image size {h}x{w} is not divisible by `factor`={self.factor}; crop or resize the image"
            )
        return Fn.downsample(x, self.k1d, self.factor, self.padding)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        return Fn.downsample_adjoint(
            y, self.k1d, self.factor, self.padding, (h * self.factor, w * self.factor)
        )

    def A_dagger_bicubic(self, y: torch.Tensor) -> torch.Tensor:
        """IAGAN's A-dagger for SR: bicubic up-sampling (Matlab ``imresize``; IAGAN Sec. 4.2), not the exact
        pseudo-inverse (:meth:`A_dagger`)."""
        return Fn.bicubic_upsample(y, self.factor)

    def A_dagger_code(self, y: torch.Tensor) -> torch.Tensor:
        """IAGAN's code's A-dagger for SR (``main.py``: ``F.interpolate(mode='bicubic')``: Keys a = -0.75,
        clamped border), which neither its paper's bicubic (:meth:`A_dagger_bicubic`) nor the exact
        pseudo-inverse is."""
        return torch.nn.functional.interpolate(y, scale_factor=self.factor, mode="bicubic")

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        if self.kernel == "box":  # rows of A are disjoint with squared norm 1/f^2
            return self._adjoint(y) * self.factor**2
        return super()._dagger(y)

    def extra_repr(self) -> str:
        return (
            f"factor={self.factor}, kernel={self.kernel!r}, padding={self.padding!r}, {super().extra_repr()}"
        )


class Blur(LinearOperator):
    """Same-size blur ``y = k * x`` per channel (IAGAN Table 4: 9x9 uniform, noise 10/255).

    With ``padding="circular"`` (default) A is diagonal in the Fourier basis and :meth:`A_dagger` is the
    closed-form Tikhonov inverse ``conj(K) Y / (|K|^2 + reg)``; ``reg=0`` gives the exact pseudo-inverse
    (frequencies with |K|^2 below 1e-12 max|K|^2 are treated as zero). Other paddings solve
    ``(A^T A + reg I) x = A^T y`` by CG, or with ``reg=0`` take the minimum-norm least-squares solution
    by CGLS.

    Conventions (for measurements made by other tools):

    * correlation ``y[i, j] = sum_{u, v} k[u, v] x[i + u - kh//2, j + v - kw//2]`` (``F.conv2d``), not
      convolution; deepinv's ``Blur`` convolves (flips the kernel). The built-in kernels are symmetric,
      so both agree for them.
    * same-size output, padded by ``kh//2``, ``kw//2`` with ``padding``: ``circular`` by default (the
      periodic model of IAGAN's FFT deblurring and the closed-form pseudo-inverse). deepinv's ``Blur``
      defaults to ``valid`` (a smaller output); pass its ``padding="circular"`` to match ours.
    * A is one depthwise (grouped) convolution over all ``B * C`` channels; the adjoint the matching
      grouped transposed convolution with the padding folded back (exact for every padding).

    Args:
        kernel: "uniform" or "gaussian".
        size: odd kernel side in pixels.
        kernel_sigma: Gaussian standard deviation in pixels (ignored for uniform).
        padding: "circular", "reflect", "replicate" or "zeros".
        reg: Tikhonov weight of the pseudo-inverse (0 = exact pseudo-inverse).
        sigma: measurement noise standard deviation.
        cg_iters: CG iterations of the non-circular pseudo-inverse.

    Shape:
        x: (B, C, H, W) -> y: (B, C, H, W)
    """

    def __init__(
        self,
        kernel: Literal["uniform", "gaussian"] = "uniform",
        size: int = 9,
        kernel_sigma: float = 2.0,
        padding: PadMode = "circular",
        reg: float = 1e-3,
        sigma: float = 0.0,
        cg_iters: int = 100,
    ) -> None:
        super().__init__(sigma=sigma, cg_iters=cg_iters)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"`size` must be a positive odd integer, got {size!r}")
        if kernel == "uniform":
            k = Fn.uniform_kernel(size)
        elif kernel == "gaussian":
            if not kernel_sigma > 0:
                raise ValueError(f"`kernel_sigma` must be > 0, got {kernel_sigma!r}")
            k = Fn.gaussian_kernel(size, kernel_sigma)
        else:
            raise ValueError(f"`kernel` must be 'uniform' or 'gaussian', got {kernel!r}")
        if padding not in ("reflect", "replicate", "circular", "zeros"):
            raise ValueError(f"`padding` must be reflect, replicate, circular or zeros; got {padding!r}")
        if not reg >= 0:
            raise ValueError(f"`reg` must be >= 0, got {reg!r}")
        self.kernel, self.size, self.kernel_sigma = kernel, int(size), float(kernel_sigma)
        self.padding, self.reg = padding, float(reg)
        self.register_buffer("k2d", k, persistent=False)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        return Fn.filter2d(x, self.k2d, self.padding)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return Fn.filter2d_adjoint(y, self.k2d, self.padding)

    def transfer_function(
        self, height: int, width: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Fourier multiplier of the circular blur (FFT of its impulse response). Shape: (H, W) complex."""
        delta = torch.zeros(1, 1, height, width, dtype=dtype, device=device)
        delta[..., 0, 0] = 1
        return torch.fft.fft2(Fn.filter2d(delta, self.k2d, "circular"))[0, 0]

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        if self.padding == "circular":
            k = self.transfer_function(y.shape[-2], y.shape[-1], y.dtype, y.device)
            power = k.abs() ** 2
            if self.reg > 0:
                inv = k.conj() / (power + self.reg)
            else:
                keep = power > 1e-12 * power.max()
                inv = torch.where(keep, k.conj() / torch.where(keep, power, 1), 0)
            return torch.fft.ifft2(torch.fft.fft2(y) * inv).real
        if self.reg == 0:
            return Fn.least_squares(self._forward_op, self._adjoint, y, self.cg_iters, self.cg_tol)
        rhs = self._adjoint(y)
        return Fn.conjugate_gradient(
            lambda v: self._adjoint(self._forward_op(v)) + self.reg * v, rhs, self.cg_iters, self.cg_tol
        )

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, size={self.size}, padding={self.padding!r}, reg={self.reg:g}"
