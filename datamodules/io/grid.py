"""The project's one image-grid helper: torchvision's ``make_grid`` with nearest-neighbour upscaling,
optional coloured frames and a caption line under each tile; PNGs written atomically.

Importable from every package (it needs torch, torchvision and PIL only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from datamodules.io.images import save_png

__all__ = ["auto_scale", "default_font", "grid_pil", "image_grid", "save_image_grid"]

Color = tuple[int, int, int]


def auto_scale(images: torch.Tensor, min_size: int) -> int:
    """The integer upscaling that brings the tiles' longer side to at least about ``min_size`` px."""
    return max(1, math.ceil(min_size / max(images.shape[-2:]))) if min_size else 1


def image_grid(
    images: torch.Tensor,
    nrow: int = 8,
    *,
    padding: int = 2,
    pad_value: float = 1.0,
    scale: int = 1,
    min_size: int = 0,
    frame_colors: Sequence[Color] | None = None,
    frame: int = 2,
    caption_height: int = 0,
) -> torch.Tensor:
    """Tile ``(N, C, H, W)`` images in [0, 1] into one ``(C, H', W')`` image with ``make_grid``.

    Args:
        nrow: tiles per row.
        scale: nearest-neighbour upscaling of each tile (keeps small images' pixels crisp);
            ``min_size`` > 0 picks it instead (see :func:`auto_scale`).
        frame_colors: one RGB colour per image, drawn as a ``frame``-px border (the grid becomes RGB).
        caption_height: blank rows (``pad_value``) under each tile, for :func:`grid_pil`'s captions.

    Shape:
        - images: ``(N, C, H, W)`` with C in {1, 3}; output ``(C or 3, H', W')``.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (N, 1 or 3, H, W) tensor, got {tuple(images.shape)}")
    if frame_colors is not None and len(frame_colors) != images.shape[0]:
        raise ValueError(f"frame_colors has {len(frame_colors)} entries for {images.shape[0]} images")
    x = images.detach().float().clamp(0, 1).cpu()
    scale = auto_scale(x, min_size) if min_size else int(scale)
    if scale > 1:
        x = F.interpolate(x, scale_factor=scale, mode="nearest")
    if frame_colors is not None:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        col = torch.tensor(frame_colors, dtype=x.dtype).div(255.0)[:, :, None, None]
        framed = col.expand(-1, -1, x.shape[2] + 2 * frame, x.shape[3] + 2 * frame).clone()
        framed[:, :, frame : frame + x.shape[2], frame : frame + x.shape[3]] = x
        x = framed
    if caption_height:
        x = F.pad(x, (0, 0, 0, int(caption_height)), value=pad_value)
    return make_grid(x, nrow=max(1, int(nrow)), padding=padding, pad_value=pad_value)


def default_font(size: int) -> ImageFont.ImageFont:
    """PIL's default font at ``size`` px (its fixed bitmap size where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def grid_pil(
    images: torch.Tensor, nrow: int = 8, *, captions: Sequence[str] | None = None, **kwargs
) -> Image.Image:
    """:func:`image_grid` as a PIL image, with one caption line under each tile when given."""
    if captions is not None and len(captions) != images.shape[0]:
        raise ValueError(f"captions has {len(captions)} entries for {images.shape[0]} images")
    cap = 16 if captions is not None else 0
    g = image_grid(images, nrow, caption_height=cap, **kwargs)
    arr = (g.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    if captions is not None:
        img = img.convert("RGB")
        pad = kwargs.get("padding", 2)
        th = (g.shape[1] - pad) // math.ceil(images.shape[0] / nrow)  # tile + caption + padding
        tw = (g.shape[2] - pad) // min(nrow, images.shape[0])
        draw, font = ImageDraw.Draw(img), default_font(12)
        for i, text in enumerate(captions):
            x0, y0 = pad + (i % nrow) * tw, pad + (i // nrow) * th
            draw.text((x0 + 1, y0 + th - pad - cap + 1), text, fill=(0, 0, 0), font=font)
    return img


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    *,
    captions: Sequence[str] | None = None,
    **kwargs,
) -> Path:
    """:func:`grid_pil` written to ``path`` as PNG, atomically (parent folders are created)."""
    return save_png(grid_pil(images, nrow, captions=captions, **kwargs), path)
