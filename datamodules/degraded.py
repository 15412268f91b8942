"""Reading a user's own degraded photos and masks, framing them to a prior's square domain, and pasting a
restoration back into the photo's frame (the file side of ``python -m inversion --degraded true``).

Framing rule (one, repeatable, the same for photos, masks and truth): a photo whose size is not the
wanted ``size x size`` is cropped to its **centre square** (side = its shorter side, offset rounded
down) and that square is resized to ``size`` (bicubic for images, nearest for masks) -- DGP's centre
crop and resize. EXIF orientation is applied first, 16-bit and palette files are read as the loader of
:mod:`datamodules.io.images` reads them. Masks follow the inpainting convention of LaMa and most tools:
**white = pixels to fill** (the hole), black = pixels kept; the transparent pixels (alpha < 128) of an
RGBA photo are its hole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from datamodules.io.images import to_array

__all__ = ["Frame", "Photo", "frame_box", "frame_image", "paste_back", "read_mask", "read_photo"]

MAX_PIXELS = 8192 * 8192  # bound on a user file's size (a larger one is refused, not decoded)


@dataclass
class Photo:
    """A photo as given: ``image`` ``(C, H, W)`` in [0, 1] (C = 1 or 3), ``alpha`` ``(H, W)`` in [0, 1]
    when the file has transparency, its mode and size."""

    image: torch.Tensor
    alpha: torch.Tensor | None
    mode: str


@dataclass
class Frame:
    """Where the prior's square lies in the photo: the centre-square box ``(left, top, side)`` of a
    ``width x height`` photo, resized to ``size``; ``note`` says what was done (empty: nothing)."""

    width: int
    height: int
    left: int
    top: int
    side: int
    size: int

    @property
    def framed(self) -> bool:
        return (self.width, self.height) != (self.size, self.size)

    @property
    def note(self) -> str:
        if not self.framed:
            return ""
        return (
            f"framed: {self.width}x{self.height} photo, centre square {self.side}x{self.side} at "
            f"({self.left}, {self.top}) resized to {self.size}x{self.size}"
        )


def _tensor(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(a, dtype=np.uint8))
    t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
    return t.float().div_(255.0).contiguous()


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        im = Image.open(path)
        if im.size[0] * im.size[1] > MAX_PIXELS:
            raise ValueError(f"{im.size[0]}x{im.size[1]} pixels is more than {MAX_PIXELS}")
        im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e
    return ImageOps.exif_transpose(im)


def read_photo(path: str | os.PathLike, channels: int | None = None) -> Photo:
    """Read a photo upright (EXIF applied), keeping its alpha channel apart (``channels``: 1, 3 or None:
    gray files gray, others RGB). Transparent pixels are composited on white in ``image``."""
    im = _open(path)
    alpha = None
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        alpha = _tensor(np.asarray(im.convert("RGBA"))[..., 3])[0]
    return Photo(_tensor(to_array(im, channels)), alpha, im.mode)


def frame_box(width: int, height: int, size: int) -> Frame:
    """The centre-square box of a ``width x height`` photo framed to ``size`` (see the module's rule)."""
    side = min(width, height)
    return Frame(width, height, (width - side) // 2, (height - side) // 2, side, int(size))


def frame_image(image: torch.Tensor, size: int, nearest: bool = False) -> tuple[torch.Tensor, Frame]:
    """Crop ``image`` ``(C, H, W)`` to its centre square and resize it to ``size`` (bicubic, or nearest
    for masks); returns the framed image and its :class:`Frame`."""
    c, h, w = image.shape
    f = frame_box(w, h, size)
    if not f.framed:
        return image, f
    crop = image[:, f.top : f.top + f.side, f.left : f.left + f.side]
    if f.side == size:
        return crop.contiguous(), f
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    a = (crop.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(a[..., 0] if c == 1 else a)
    return _tensor(np.asarray(pil.resize((size, size), resample))), f


def read_mask(path: str | os.PathLike, width: int, height: int) -> torch.Tensor:
    """A mask file for a ``width x height`` photo as ``(H, W)`` with 1 = observed, 0 = hole (white in the
    file). Raises ValueError naming the problem: wrong size, not binary, no hole, or nothing kept."""
    im = _open(path)
    if im.size != (width, height):
        raise ValueError(
            f"mask {str(path)!r} is {im.size[0]}x{im.size[1]}, its photo is {width}x{height}: give a mask "
            "of the photo's size (white = pixels to fill)"
        )
    a = to_array(im, 1).astype(np.int16)
    grey = ((a > 16) & (a < 239)).mean()
    if grey > 0.005:
        raise ValueError(
            f"mask {str(path)!r} is not binary ({100 * grey:.1f}% of its pixels are neither black nor "
            "white): "
            "save it as a black/white PNG (white = pixels to fill), not as JPEG or anti-aliased"
        )
    hole = a >= 128
    if not hole.any():
        raise ValueError(f"mask {str(path)!r} has no hole (no white pixel): white marks the pixels to fill")
    if hole.all():
        raise ValueError(f"mask {str(path)!r} is white everywhere: nothing of the photo is kept to fit")
    return torch.from_numpy((~hole).astype(np.float32))


def paste_back(restored: torch.Tensor, photo: torch.Tensor, f: Frame, keep: torch.Tensor | None = None):
    """The restoration ``restored`` ``(C, S, S)`` put back into its photo's frame.

    ``photo`` ``(C, H, W)`` is the photo at the frame's resolution (for super-resolution: the
    low-resolution photo up-sampled by the factor, so ``f`` is the box in that up-sampled photo); the
    centre square is replaced by the restoration resized to the box's side. With ``keep`` ``(H, W)``
    (inpainting: 1 = observed) only the hole's pixels are replaced.
    """
    if restored.shape[0] != photo.shape[0]:
        restored = restored.expand(photo.shape[0], -1, -1) if restored.shape[0] == 1 else restored
    patch = restored
    if f.side != restored.shape[-1]:
        a = (restored.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        pil = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
        patch = _tensor(np.asarray(pil.resize((f.side, f.side), Image.Resampling.BICUBIC)))
    out = photo.clone()
    box = (slice(None), slice(f.top, f.top + f.side), slice(f.left, f.left + f.side))
    if keep is None:
        out[box] = patch
    else:
        k = keep[box[1:]][None]
        out[box] = k * photo[box] + (1 - k) * patch
    return out
