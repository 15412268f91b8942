"""PNG outputs of the exploration: its preset of the one image grid (:mod:`datamodules.io.grid`) and the
e-GLASS Fig. 1 correlation bar plot (drawn with PIL). Files are written atomically
(:func:`datamodules.io.images.save_png`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from datamodules.io.grid import default_font, grid_pil
from datamodules.io.images import save_png

Color = tuple[int, int, int]
BLUE: Color = (40, 90, 220)
RED: Color = (210, 40, 40)


def save_tile_grid(
    images: torch.Tensor,
    path: str | Path,
    nrow: int | None = None,
    frame_colors: Sequence[Color] | None = None,
    scale: int | None = None,
    captions: Sequence[str] | None = None,
) -> Path:
    """The exploration's preset of the one image grid (:func:`datamodules.io.grid.grid_pil`): an RGB grid
    of ``(N, C, H, W)`` images in ``[0, 1]``, ``nrow`` (default ``min(N, 8)``) tiles per row, small images
    upscaled to about 96 px, optional coloured frames and one caption line per tile; written atomically."""
    if scale is None:
        scale = max(1, 96 // max(images.shape[-2:]))
    nrow = nrow or min(images.shape[0], 8)
    img = grid_pil(
        images, nrow, captions=captions, padding=2, scale=scale, frame_colors=frame_colors, frame=2
    )
    return save_png(img.convert("RGB"), path)


def correlation_plot(
    panels: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    title: str = "",
    labels: tuple[str, str] = ("before", "after"),
    colors: tuple[Color, Color] = (BLUE, RED),
    panel_size: tuple[int, int] = (640, 220),
) -> Image.Image:
    """Paired bar plot: one panel per ``(name, values_a, values_b)``, bars of ``a`` and ``b`` side by side per
    eigenvector index (values expected in ``[0, 1]``, e.g. absolute correlations)."""
    if not panels:
        raise ValueError("panels must hold at least one (name, values_a, values_b)")
    pw, ph = panel_size
    left, right, top, bottom, head = 48, 16, 28, 30, 34
    font, small = default_font(14), default_font(11)
    img = Image.new("RGB", (left + pw + right, head + len(panels) * (top + ph + bottom)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((left, 8), title, fill=(0, 0, 0), font=font)
    lx = left + pw - 150
    for j, (lab, col) in enumerate(zip(labels, colors, strict=True)):
        draw.rectangle((lx + 75 * j, 12, lx + 75 * j + 10, 22), fill=col)
        draw.text((lx + 75 * j + 14, 10), lab, fill=(0, 0, 0), font=small)
    for p, (name, va, vb) in enumerate(panels):
        if len(va) != len(vb):
            raise ValueError(f"panel {name!r}: value lists differ in length ({len(va)} vs {len(vb)})")
        oy = head + p * (top + ph + bottom) + top
        draw.text((left, oy - 20), name, fill=(0, 0, 0), font=font)
        draw.line((left, oy, left, oy + ph), fill=(0, 0, 0))
        draw.line((left, oy + ph, left + pw, oy + ph), fill=(0, 0, 0))
        for t in (0.0, 0.5, 1.0):
            yy = oy + ph - t * ph
            draw.line((left - 4, yy, left, yy), fill=(0, 0, 0))
            draw.text((4, yy - 7), f"{t:.1f}", fill=(0, 0, 0), font=small)
        n = max(1, len(va))
        slot = pw / n
        bw = max(1.0, slot * 0.4)
        for i, (a, b) in enumerate(zip(va, vb, strict=True)):
            x = left + i * slot + slot * 0.1
            for j, (val, col) in enumerate(((a, colors[0]), (b, colors[1]))):
                v = min(max(float(val), 0.0), 1.0)
                draw.rectangle((x + j * bw, oy + ph - v * ph, x + (j + 1) * bw - 1, oy + ph), fill=col)
            if n <= 20 or i % max(1, n // 10) == 0:
                draw.text((x, oy + ph + 4), str(i + 1), fill=(0, 0, 0), font=small)
        draw.text((left + pw - 120, oy + ph + 16), "eigenvector index j", fill=(80, 80, 80), font=small)
    return img


def save_correlation_plot(
    panels: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str = "",
    labels: tuple[str, str] = ("before", "after"),
) -> Path:
    """:func:`correlation_plot` written atomically to ``path``."""
    return save_png(correlation_plot(panels, title=title, labels=labels), path)
