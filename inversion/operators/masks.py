"""Seeded inpainting masks (1 = observed pixel, 0 = hole), generated for a given image size."""

from __future__ import annotations

import errno
import math
import os
import stat
import warnings

import torch

__all__ = ["box_extent", "center_box_mask", "random_boxes_mask", "strokes_mask", "load_mask_image"]


def box_extent(size: float | int | list, height: int, width: int, name: str = "box_size") -> tuple[int, int]:
    """Box height and width in pixels.

    ``size`` is a float in (0, 1] (fraction of the image side), an int >= 1 (pixels), or a list of two
    such values (height, width). Note that YAML ``1`` is one pixel and ``1.0`` the whole side.
    """
    values = list(size) if isinstance(size, list | tuple) else [size, size]
    if len(values) != 2:
        raise ValueError(f"`{name}` must be a number or a list of two numbers, got {size!r}")
    out = []
    for v, side in zip(values, (height, width), strict=True):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"`{name}` entries must be numbers, got {v!r}")
        if isinstance(v, float):
            if not 0 < v <= 1:
                raise ValueError(f"`{name}` as a fraction must lie in (0, 1], got {v!r}")
            px = max(1, round(v * side))
        else:
            if not 1 <= v <= side:
                raise ValueError(f"`{name}` in pixels must lie in [1, {side}], got {v!r}")
            px = v
        out.append(px)
    return out[0], out[1]


def center_box_mask(height: int, width: int, box: tuple[int, int]) -> torch.Tensor:
    """Centred rectangular hole (LCM: 50x50 of 128x128). Shape: (H, W), float64."""
    bh, bw = box
    top, left = (height - bh) // 2, (width - bw) // 2
    m = torch.ones(height, width, dtype=torch.float64)
    m[top : top + bh, left : left + bw] = 0
    return m


def random_boxes_mask(
    height: int, width: int, box: tuple[int, int], num_boxes: int, generator: torch.Generator
) -> torch.Tensor:
    """``num_boxes`` rectangular holes at uniformly random positions. Shape: (H, W), float64."""
    bh, bw = box
    m = torch.ones(height, width, dtype=torch.float64)
    tops = torch.randint(0, height - bh + 1, (num_boxes,), generator=generator).tolist()
    lefts = torch.randint(0, width - bw + 1, (num_boxes,), generator=generator).tolist()
    for t, l in zip(tops, lefts, strict=True):
        m[t : t + bh, l : l + bw] = 0
    return m


def strokes_mask(
    height: int,
    width: int,
    num_strokes: int,
    stroke_width: float,
    generator: torch.Generator,
    max_vertices: int = 6,
) -> torch.Tensor:
    """Free-form brush strokes: random polylines of thickness ``stroke_width`` pixels. Shape: (H, W)."""
    side = max(height, width)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5,
        torch.arange(width, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    hole = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(num_strokes):
        n_vertex = int(torch.randint(2, max_vertices + 1, (1,), generator=generator))
        start = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor(
            [height, width], dtype=torch.float64
        )
        angles = torch.rand(n_vertex, generator=generator, dtype=torch.float64) * 2 * math.pi
        lengths = (0.1 + 0.2 * torch.rand(n_vertex, generator=generator, dtype=torch.float64)) * side
        p = start
        for a, ln in zip(angles, lengths, strict=True):
            q = p + ln * torch.stack([torch.sin(a), torch.cos(a)])
            q = torch.stack([q[0].clamp(0, height), q[1].clamp(0, width)])
            d = q - p
            t = ((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / (d @ d).clamp_min(1e-12)
            t = t.clamp(0, 1)
            dist = torch.hypot(yy - (p[0] + t * d[0]), xx - (p[1] + t * d[1]))
            hole |= dist <= stroke_width / 2
            p = q
    return (~hole).double()


def _check_mask_file(path: str) -> None:
    """A mask path that points the wrong way is named as what it is (issue 31: all were "does not
    exist"); a FIFO is never opened (it would block)."""
    fix = "give a grayscale PNG (white = hole)"
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ValueError(f"`mask_path` {path!r} is a symlink loop; {fix}") from None
        raise FileNotFoundError(f"`mask_path` {path!r} does not exist; {fix}") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"`mask_path` {path!r} is a folder, not a mask image; {fix}")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"`mask_path` {path!r} is not a regular file (a FIFO, device or socket); {fix}")


def load_mask_image(path: str, height: int, width: int) -> torch.Tensor:
    """Load a mask image; WHITE (>= 128) marks the HOLE, black the observed pixels (the common inpainting
    dataset convention). Resized with nearest neighbour to (H, W) when needed. Shape: (H, W), float64.
    """
    _check_mask_file(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L")
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.NEAREST)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(height, width)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"`mask_path` {path!r} is not an image PIL can read ({e}); give a grayscale PNG (white = hole)"
        ) from None
    mask = (data < 128).double()
    if not bool(mask.any()):
        warnings.warn(
            f"`mask_path` {path!r} is all hole at {height}x{width} (every pixel white >= 128): nothing is "
            "observed, the restoration is the prior's guess alone; white marks the hole, black what is kept",
            stacklevel=2,
        )
    if bool(mask.all()):  # checked when the operator first measures: the CLI does so before any image
        raise ValueError(
            f"`mask_path` {path!r} has no hole at {height}x{width} (no white pixel >= 128): there is nothing "
            "to inpaint; white marks the hole"
        )
    return mask
