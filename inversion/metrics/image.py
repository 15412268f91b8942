"""Per-image fidelity metrics: MSE, PSNR, SSIM, their masked variants, residuals, colorization scores.

All functions take batched images (B, C, H, W) in [0, 1] and return one value per image, shape (B,).
"""

from __future__ import annotations

import torch

from inversion.operators.functional import check_image

__all__ = [
    "mse",
    "psnr",
    "ssim",
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "measurement_residual",
    "restore_luminance",
    "colorization_psnr",
    "colorization_ssim",
]


def _pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    check_image(pred, "pred")
    check_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} must have the same shape"
        )


def _mask(mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B or 1, 1 or C, H, W) 0/1 mask to ``pred``'s shape."""
    if mask.ndim != 4 or mask.shape[-2:] != pred.shape[-2:] or mask.shape[0] not in (1, pred.shape[0]):
        raise ValueError(
            f"`mask` of shape {tuple(mask.shape)} does not fit images of shape {tuple(pred.shape)}"
        )
    if mask.shape[1] not in (1, pred.shape[1]):
        raise ValueError(f"`mask` must have 1 or {pred.shape[1]} channels, got {mask.shape[1]}")
    m = mask.to(dtype=pred.dtype, device=pred.device).expand_as(pred)
    if (m.flatten(1).sum(1) == 0).any():
        raise ValueError("`mask` selects no pixel for at least one image")
    return m


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image. Shape: (B, C, H, W) x2 -> (B,)."""
    _pair(pred, target)
    return (pred - target).pow(2).flatten(1).mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image (torchmetrics). Shape: (B, C, H, W) x2 -> (B,)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _pair(pred, target)
    return peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image (torchmetrics, Gaussian 11x11 window, sigma 1.5). Shape: (B, C, H, W) x2 -> (B,)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _pair(pred, target)
    return structural_similarity_index_measure(pred, target, data_range=data_range, reduction="none")


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over the pixels where ``mask`` is 1 only (DGP Table 2 scores the hole: pass ``1 - observed``).

    Shape:
        pred, target: (B, C, H, W); mask: (B or 1, 1 or C, H, W) -> (B,)
    """
    _pair(pred, target)
    m = _mask(mask, pred)
    return ((pred - target).pow(2) * m).flatten(1).sum(1) / m.flatten(1).sum(1)


def masked_psnr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 1.0
) -> torch.Tensor:
    """PSNR of the pixels inside ``mask`` (DGP Table 2). Shape: as :func:`masked_mse` -> (B,)."""
    err = masked_mse(pred, target, mask)
    return 10 * torch.log10(data_range**2 / err)


def masked_ssim(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 1.0
) -> torch.Tensor:
    """SSIM of the region inside ``mask`` (DGP Table 2: SSIM of the inpainted area).

    Each image is cropped to the bounding box of its mask, the SSIM map of the crop is averaged over the
    mask pixels. For a box mask nothing outside the box enters; for other shapes, pixels inside the
    bounding box but outside the mask enter through the SSIM windows. The window is 11x11 (sigma 1.5),
    shrunk to the largest odd size that fits a smaller crop (>= 3 pixels needed).

    Shape:
        pred, target: (B, C, H, W); mask: (B or 1, 1 or C, H, W) -> (B,)
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    _pair(pred, target)
    m = _mask(mask, pred)
    out = []
    for p, t, mk in zip(pred, target, m, strict=True):
        rows = torch.nonzero(mk.sum((0, 2)) > 0).flatten()
        cols = torch.nonzero(mk.sum((0, 1)) > 0).flatten()
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        side = min(r1 - r0, c1 - c0)
        if side < 3:
            raise ValueError(f"`mask` region {r1 - r0}x{c1 - c0} is too small for SSIM (needs >= 3x3)")
        k = min(11, side if side % 2 else side - 1)
        crop = (slice(None), slice(r0, r1), slice(c0, c1))
        _, smap = structural_similarity_index_measure(
            p[crop][None],
            t[crop][None],
            data_range=data_range,
            kernel_size=k,
            sigma=1.5 * k / 11,
            reduction="none",
            return_full_image=True,
        )
        mc = mk[crop][None]
        out.append((smap * mc).sum() / mc.sum())
    return torch.stack(out)


def measurement_residual(x: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
    """Data-term residual ``||A(x) - y||_2`` per image. Shape: x (B, C, H, W), y like A(x) -> (B,)."""
    ax = operator.A(x)
    if ax.shape != y.shape:
        raise ValueError(f"`y` has shape {tuple(y.shape)} but A(x) has shape {tuple(ax.shape)}")
    return (ax - y).flatten(1).norm(dim=1)


def restore_luminance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Keep the chroma (a, b) of ``pred`` and put back the lightness L of ``target`` (DGP colorization).

    Shape:
        pred: (B, 3, H, W); target: (B, 3, H, W) RGB or (B, 1, H, W) gray -> (B, 3, H, W)
    """
    from kornia.color import lab_to_rgb, rgb_to_lab

    check_image(pred, "pred", channels=3)
    check_image(target, "target")
    if target.shape[1] == 1:
        target = target.expand(-1, 3, -1, -1)
    if target.shape[1] != 3 or target.shape[-2:] != pred.shape[-2:]:
        raise ValueError(f"`target` must be (B, 3 or 1, H, W) matching `pred`, got {tuple(target.shape)}")
    lab = rgb_to_lab(pred.clamp(0, 1))
    lum = rgb_to_lab(target.clamp(0, 1))[:, :1]
    return lab_to_rgb(torch.cat([lum, lab[:, 1:]], 1), clip=True)


def colorization_psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR after :func:`restore_luminance` (DGP's colorization scoring). Shape: (B, 3, H, W) x2 -> (B,)."""
    return psnr(restore_luminance(pred, target), target, data_range)


def colorization_ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM after :func:`restore_luminance`. Shape: (B, 3, H, W) x2 -> (B,)."""
    return ssim(restore_luminance(pred, target), target, data_range)
