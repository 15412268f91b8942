"""DGP's own degradations (``DGP.pre_process`` in ``models/dgp.py`` of XingangPan/deep-generative-prior) as
operators on images in [0, 1]: :func:`dgp_operator` ``(mode, resolution)``.

DGP measures the *target* photo and the *estimate* ``G(z)`` along two different paths, both ending on
the image grid in [-1, 1] (what its MSE and its discriminator loss compare):

* ``SR`` (x4): target = PIL Lanczos ("ANTIALIAS") x1/4 of the uint8 image; estimate = DIP's
  ``Downsampler(lanczos2, factor 4, phase 0.5, preserve_size=True)`` (``models/downsampler.py``); both
  lifted back by bilinear x4.
* ``inpainting``: a centred square hole of side ``min(h, w) // 3`` set to 0 in [-1, 1] (grey), both paths.
* ``colorization``: gray ``0.2989 R + 0.5870 G + 0.1140 B`` of the [-1, 1] image, both paths, copied to
  three channels when lifted.

Here ``forward(x)`` / :meth:`DGPOperator.measure` is the target path (what a camera gave), ``A(x)`` the
estimate path (what the fit differentiates), and :meth:`DGPOperator.lift` maps a measurement onto the
[-1, 1] image grid as DGP does. Measurements are in [0, 1]: SR gives the ``(B, 3, H/4, W/4)`` low
resolution image, colorization the ``(B, 1, H, W)`` gray image, inpainting the masked image with a grey
hole. SR is linear (``A_adjoint``, ``A_dagger``); inpainting and colorization are affine in [0, 1]
(linear in DGP's [-1, 1]), so they carry no adjoint.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from inversion.operators.base import LinearOperator, Operator
from lcm.prior import from_unit, to_unit

__all__ = [
    "DGPColorization",
    "DGPInpainting",
    "DGPOperator",
    "DGPSuperResolution",
    "dip_lanczos2_kernel",
    "dgp_operator",
    "pil_lanczos_downsample",
]

GRAY = (0.2989, 0.5870, 0.1140)  # DGP pre_process (colorization)
MODES = ("SR", "inpainting", "colorization")


def dip_lanczos2_kernel(factor: int) -> torch.Tensor:
    """DIP's ``get_kernel(factor, 'lanczos', phase=0.5, kernel_width=4 * factor + 1, support=2)``:
    the ``(4 factor, 4 factor)`` float64 kernel, normalised to sum 1 (``models/downsampler.py``)."""
    width = 4 * factor + 1
    center = (width + 1) / 2.0
    idx = np.arange(1, width, dtype=np.float64)  # phase 0.5: width - 1 taps
    d = np.abs(idx + 0.5 - center) / factor
    with np.errstate(divide="ignore", invalid="ignore"):
        k1 = np.where(d != 0, 2 * np.sin(np.pi * d) * np.sin(np.pi * d / 2) / (np.pi * np.pi * d * d), 1.0)
    kernel = np.outer(k1, k1)
    return torch.from_numpy(kernel / kernel.sum())


def pil_lanczos_downsample(x01: torch.Tensor, factor: int) -> torch.Tensor:
    """DGP's SR target: each image to uint8 (``np.clip(x * 255, 0, 255).astype(uint8)``, truncating), PIL
    Lanczos (``Image.ANTIALIAS``) to ``(W // factor, H // factor)``, back to float / 255.

    Shape:
        - x01: ``(B, 3, H, W)`` in [0, 1] -> ``(B, 3, H // factor, W // factor)``.
    """
    out = []
    for img in x01.detach().cpu().float().numpy():
        arr = np.clip(img * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        pil = Image.fromarray(arr)
        small = pil.resize((pil.size[0] // factor, pil.size[1] // factor), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(small).astype(np.float32).transpose(2, 0, 1) / 255.0))
    return torch.stack(out).to(device=x01.device, dtype=x01.dtype)


class DGPOperator(Operator):
    """Common part: ``measure`` (target path), ``A`` (estimate path), ``lift`` (onto the [-1, 1] grid)."""

    mode: str = ""

    def __init__(self, resolution: int):
        super().__init__(0.0)
        if int(resolution) < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution!r}")
        self.resolution = int(resolution)

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        """DGP's ``pre_process(x, target=True)`` in [0, 1] measurement space (no gradient for SR)."""
        return self.A(x)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.measure(x)

    def lift(self, m: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Measurements in [0, 1] -> the [-1, 1] image DGP compares (its ``pre_process`` output)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"mode={self.mode}, resolution={self.resolution}"


class DGPSuperResolution(DGPOperator, LinearOperator):
    """DGP's x4 SR (its ``factor`` is 4 for ``SR``): see the module docstring."""

    mode = "SR"

    def __init__(self, resolution: int, factor: int = 4):
        super().__init__(resolution)
        if self.resolution % factor:
            raise ValueError(f"resolution {resolution} is not a multiple of the SR factor {factor}")
        self.factor = int(factor)
        k = dip_lanczos2_kernel(self.factor).to(torch.float32)
        self.register_buffer("kernel", k[None, None].expand(3, 1, *k.shape).contiguous())
        # DIP preserve_size with an even kernel: ReplicationPad2d((kernel - factor) / 2)
        self.pad = (k.shape[0] - self.factor) // 2

    def measure(self, x: torch.Tensor) -> torch.Tensor:
        return pil_lanczos_downsample(x, self.factor)

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        xp = F.pad(x, (self.pad,) * 4, mode="replicate")
        return F.conv2d(xp, self.kernel.to(x.dtype), stride=self.factor, groups=3)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        size = self.resolution + 2 * self.pad
        k = self.kernel.to(y.dtype)
        xp = F.conv_transpose2d(y, k, stride=self.factor, groups=3)
        extra = size - xp.shape[-1]
        xp = F.pad(xp, (0, extra, 0, extra))
        # adjoint of replicate padding: fold the padded border back onto the edge pixels
        p = self.pad
        inner = xp[..., p:-p, p:-p].clone()
        inner[..., :, 0] += xp[..., p:-p, :p].sum(-1)
        inner[..., :, -1] += xp[..., p:-p, -p:].sum(-1)
        top, bottom = xp[..., :p, :], xp[..., -p:, :]
        inner[..., 0, :] += top[..., p:-p].sum(-2)
        inner[..., -1, :] += bottom[..., p:-p].sum(-2)
        inner[..., 0, 0] += top[..., :p].sum((-2, -1))
        inner[..., 0, -1] += top[..., -p:].sum((-2, -1))
        inner[..., -1, 0] += bottom[..., :p].sum((-2, -1))
        inner[..., -1, -1] += bottom[..., -p:].sum((-2, -1))
        return inner

    def lift(self, m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(from_unit(m), scale_factor=self.factor, mode="bilinear", align_corners=False)


class DGPInpainting(DGPOperator):
    """DGP's centred square hole of side ``min(h, w) // 3``, filled with 0 in [-1, 1] (0.5 in [0, 1])."""

    mode = "inpainting"

    def __init__(self, resolution: int):
        super().__init__(resolution)
        h = w = self.resolution
        hole = min(h, w) // 3
        begin = (h - hole) // 2
        end = h - begin
        mask = torch.ones(1, 1, h, w)
        mask[0, 0, begin:end, begin:end] = 0
        self.register_buffer("mask", mask)
        self.begin, self.end = begin, end

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        return to_unit(from_unit(x) * self.mask.to(x.dtype))

    def lift(self, m: torch.Tensor) -> torch.Tensor:
        return from_unit(m)


class DGPColorization(DGPOperator):
    """DGP's gray ``0.2989 R + 0.5870 G + 0.1140 B`` computed on the [-1, 1] image; one channel in [0, 1]."""

    mode = "colorization"
    in_channels = 3

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        p = from_unit(x)
        gray = GRAY[0] * p[:, 0] + GRAY[1] * p[:, 1] + GRAY[2] * p[:, 2]
        return to_unit(gray[:, None])

    def lift(self, m: torch.Tensor) -> torch.Tensor:
        return from_unit(m).expand(-1, 3, -1, -1)


def dgp_operator(mode: str, resolution: int) -> DGPOperator:
    """DGP's degradation ``mode`` (``SR``, ``inpainting``, ``colorization``; its ``--dgp_mode``) for
    ``resolution``-px images, as an operator on [0, 1] images (see the module docstring)."""
    if mode == "SR":
        return DGPSuperResolution(resolution)
    if mode == "inpainting":
        return DGPInpainting(resolution)
    if mode == "colorization":
        return DGPColorization(resolution)
    raise ValueError(f"DGP mode must be one of {MODES}, got {mode!r}")


def lift_to_grid(operator, m: torch.Tensor, image_shape) -> torch.Tensor:
    """Measurements -> the [-1, 1] image grid: the operator's own ``lift`` (DGP's operators) or
    :func:`inversion.dgp.losses.to_image_grid` (bilinear resize / gray replication) of any other."""
    if callable(getattr(operator, "lift", None)):
        return operator.lift(m)
    from inversion.dgp.losses import to_image_grid

    return from_unit(to_image_grid(m, image_shape, operator, "resize"))


def measure(operator, x: torch.Tensor) -> torch.Tensor:
    """DGP's target path for DGP operators (``measure``), the noiseless ``A`` for any other."""
    fn = getattr(operator, "measure", None)
    return fn(x) if callable(fn) else operator.A(x)
