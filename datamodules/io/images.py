"""Image files: the one loader of genprior (training folders and ``python -m inversion`` alike), the one
PNG / GIF writer (atomic, :mod:`datamodules.io.atomic`) and tensor <-> PIL conversion.

Loading policy, the same everywhere:

* any PIL mode: 8- and 16-bit gray (16-bit scaled by 1/257, not clipped), float gray (in [0, 1], or
  [0, 255] when a value passes 1; not clipped to white), palette, gray+alpha, RGBA,
  CMYK, 1-bit; transparency is composited on a **white** background (``BACKGROUND``);
* EXIF orientation is applied (the image as a viewer shows it);
* with a ``resolution``: the shorter side is resized to it (bicubic) and the centre square is cropped
  (never squashed); without one the file's size is kept.

Listing (:func:`list_image_files`) follows symlinks but visits each folder and counts each file once,
so symlink loops neither repeat images nor hang. Only regular files are images: a FIFO, device or
socket named ``*.png`` is skipped with a note (opening a FIFO blocks until someone writes to it), and
:func:`load_image` refuses one.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from datamodules.io.atomic import atomic_write_bytes

__all__ = [
    "BACKGROUND",
    "IMAGE_EXTENSIONS",
    "list_image_files",
    "load_image",
    "png_bytes",
    "save_gif",
    "save_png",
    "to_array",
    "to_pil",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
BACKGROUND = (255, 255, 255)  # transparency is composited on white
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # a dangling link: listed, then reported unreadable
        return None
    return st.st_dev, st.st_ino


def _special(path: str | os.PathLike) -> bool:
    """A file that exists but is not a regular file (FIFO, device, socket, a folder named like an image)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # missing or a dangling link: not special, reported unreadable when read
        return False


def list_image_files(
    root: str | os.PathLike,
    recursive: bool = True,
    exclude: Iterable[str | os.PathLike] = (),
    quiet: bool = False,
) -> list[Path]:
    """Image files under ``root`` (hidden entries skipped, any letter case of ``IMAGE_EXTENSIONS``), sorted.

    Symlinked folders are followed, but each folder (and each file) is visited once: a loop or a second
    link to the same folder adds nothing. Real folders are visited before symlinked ones, so a file is
    listed under its real path where both are reachable. Folders in ``exclude`` (e.g. an output folder
    inside the input) are skipped. Names of image files that are not regular files (a FIFO named
    ``x.png``) are skipped with one note on stderr (``quiet``: without it).
    """
    root = Path(root)
    special: list[Path] = []
    skip = {i for i in map(_identity, exclude) if i is not None}
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    found: list[Path] = []
    for folder, subdirs, files in os.walk(root, followlinks=True):
        ident = _identity(folder)
        if ident in seen_dirs or ident in skip:
            subdirs[:] = []
            continue
        if ident is not None:
            seen_dirs.add(ident)
        visible = sorted(d for d in subdirs if not d.startswith("."))
        subdirs[:] = (
            [d for d in visible if not os.path.islink(os.path.join(folder, d))]
            + [d for d in visible if os.path.islink(os.path.join(folder, d))]
            if recursive
            else []
        )
        for f in sorted(files):
            if f.startswith(".") or not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(folder) / f
            if _special(path):
                special.append(path)
                continue
            fid = _identity(path)
            if fid is not None:
                if fid in seen_files:
                    continue
                seen_files.add(fid)
            found.append(path)
    if special and not quiet:
        shown = ", ".join(str(p) for p in sorted(special)[:3]) + (", ..." if len(special) > 3 else "")
        print(
            f"[genprior] note: skipped {len(special)} name(s) of images that are not regular files (a FIFO, "
            f"device, socket or folder), never opened: {shown}",
            file=sys.stderr,
        )
    return sorted(found)


def to_array(im: Image.Image, channels: int | None = None) -> np.ndarray:
    """PIL image in any mode -> uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB (EXIF applied, alpha on white).

    ``channels``: 1 or 3; None keeps gray files gray and makes everything else RGB.
    """
    if channels is None:
        channels = 1 if im.mode in _GRAY_MODES or (im.mode == "P" and _palette_is_gray(im)) else 3
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I"):  # 16/32-bit gray: scale, PIL's convert("L") would clip to 255
        a = np.asarray(im, dtype=np.float64)
        scale = 257.0 if im.mode.startswith("I;16") or a.max() > 255 else 1.0
        im = Image.fromarray(np.clip(a / scale + 0.5, 0, 255).astype(np.uint8), "L")
    elif im.mode == "F":  # float images in [0, 1], or in [0, 255] when any value passes 1
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 1.0 if a.max() > 1.0 else 255.0
        im = Image.fromarray(np.clip(a * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        im = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        im.alpha_composite(rgba)
    return np.asarray(im.convert("L" if channels == 1 else "RGB"))


def _palette_is_gray(im: Image.Image) -> bool:
    pal = im.getpalette() or []
    rgb = np.asarray(pal[: len(pal) // 3 * 3]).reshape(-1, 3)
    return bool(rgb.size) and bool((rgb == rgb[:, :1]).all())


def load_image(
    path: str | os.PathLike, resolution: int | None = None, channels: int | None = None
) -> torch.Tensor:
    """Read one image file as a ``(C, H, W)`` float32 tensor in [0, 1] (see the module's policy).

    Args:
        resolution: resize the shorter side to this and centre-crop a square; None keeps the size.
        channels: 1 (gray) or 3 (RGB); None keeps gray files gray, everything else RGB.

    Raises:
        ValueError: the file cannot be decoded as an image, or is not a regular file (named in the message).
    """
    if _special(path):
        raise ValueError(f"cannot read image {str(path)!r}: not a regular file (a FIFO, device or socket)")
    try:
        with Image.open(path) as im:
            if im.format == "JPEG" and resolution is not None:
                im.draft(im.mode, (resolution, resolution))  # decode at a reduced scale, still >= target
            im.load()
            array = to_array(im, channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
    if resolution is not None and array.shape[:2] != (resolution, resolution):
        array = np.asarray(
            ImageOps.fit(Image.fromarray(array), (resolution, resolution), Image.Resampling.BICUBIC)
        )
    t = torch.from_numpy(np.array(array, dtype=np.uint8))
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return t.to(torch.float32).div_(255.0).contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(C, H, W)`` tensor in [0, 1] (C = 1 or 3) -> PIL image (``L`` or ``RGB``), values rounded."""
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C in (1, 3), got {tuple(image.shape)}")
    arr = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    return Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)), mode="RGB")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bytes(image: torch.Tensor | Image.Image) -> bytes:
    """A PIL image or a ``(C, H, W)`` tensor in [0, 1] as PNG bytes."""
    return _encode(image if isinstance(image, Image.Image) else to_pil(image), "PNG")


def save_png(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Save a PIL image or one ``(C, H, W)`` tensor in [0, 1] as PNG, atomically (folders are created)."""
    return atomic_write_bytes(path, png_bytes(image))


def save_gif(frames: Sequence[torch.Tensor], path: str | os.PathLike, duration_ms: int = 100) -> Path:
    """Save ``(C, H, W)`` frames in [0, 1] as an animated GIF, atomically."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    pil = [to_pil(f) for f in frames]
    data = _encode(pil[0], "GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0)
    return atomic_write_bytes(path, data)
