"""Image files: load as [0, 1] tensors, write PNG / GIFs atomically (tmp + os.replace).

Image grids: ``datamodules.grid`` (the one grid helper).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "load_image",
    "save_gif",
    "save_png",
    "to_pil",
]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fileobj)`` into a temporary file beside it, then ``os.replace``.

    Readers never see a partial file; on error the temporary file is removed and ``path`` is untouched.
    (The same contract as ``datamodules._common.atomic_write``, kept here so that ``inversion`` does not
    import Lightning through ``datamodules``.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(C, H, W)`` tensor in [0, 1] (C = 1 or 3) -> PIL image."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C in (1, 3), got {tuple(image.shape)}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), mode="RGB")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def save_png(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Save one ``(C, H, W)`` image in [0, 1] as PNG, atomically."""
    atomic_write_bytes(path, _encode(to_pil(image), "PNG"))


def save_gif(frames: Sequence[torch.Tensor], path: str | os.PathLike, duration_ms: int = 100) -> None:
    """Save ``(C, H, W)`` frames in [0, 1] as an animated GIF, atomically."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    pil = [to_pil(f) for f in frames]
    data = _encode(pil[0], "GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0)
    atomic_write_bytes(path, data)


def load_image(path: str | os.PathLike, channels: int | None = None, size: int | None = None) -> torch.Tensor:
    """Read an image file as a ``(C, H, W)`` float tensor in [0, 1] with the project's one loader.

    ``datamodules.images.load_image`` (imported lazily: ``inversion.io`` stays free of Lightning): 8/16-bit,
    palette, alpha composited on white, EXIF orientation applied; the same pixels as training sees.

    Args:
        channels: 1 (grayscale) or 3 (RGB); None keeps the file's (gray stays 1, otherwise RGB).
        size: resize the shorter side to ``size`` (bicubic) and centre-crop ``size x size``.

    Raises:
        ValueError: the file cannot be decoded as an image (named in the message).
    """
    from datamodules.images import load_image as _load

    return _load(path, resolution=size, channels=channels)
