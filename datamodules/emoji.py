"""Colour emoji rasterised from the bitmaps of Noto Color Emoji (Debian package ``fonts-noto-color-emoji``).

The font stores each glyph as a PNG inside its CBDT table (located through CBLC). We decode every glyph
of the largest bitmap strike, composite it on a background colour, resize it and cache the uint8 array
on disk, keyed by the font file (path, size, mtime) and the rasterisation settings.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datamodules._common import (
    ArrayImageDataset,
    ImageDataModule,
    check_limit,
    default_cache_dir,
    fraction_counts,
    limit_rows,
    split_rows,
)
from datamodules.io.atomic import atomic_write

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
DEBIAN_PACKAGE = "fonts-noto-color-emoji"
_CACHE_VERSION = 1  # bump when rasterisation changes, to invalidate old cache files


def check_font(font_path: str | Path) -> Path:
    """The font path, or FileNotFoundError naming it, the Debian package and ``font_path=`` as fixes."""
    path = Path(font_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"emoji font {path} not found. Install it with `sudo apt-get install {DEBIAN_PACKAGE}` "
            f"(installs {DEFAULT_FONT}), or pass font_path=... naming a CBDT colour-bitmap font."
        )
    return path


def _check_background(background: tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    bg = tuple(int(v) for v in background)
    if len(bg) != 3 or not all(0 <= v <= 255 for v in bg):
        raise ValueError(f"background must be three ints in [0, 255] (R, G, B), got {background}")
    return bg


def rasterize_emoji(
    font_path: str | Path,
    resolution: int = 32,
    background: tuple[int, int, int] = (255, 255, 255),
    limit: int | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Decodes the colour bitmaps of a CBDT font into RGB images, sorted by glyph name.

    Each PNG glyph is centred on a transparent square canvas, resized with Lanczos filtering (alpha
    premultiplied by PIL) and alpha-composited on ``background``.

    Args:
        font_path: a font with CBDT/CBLC tables, e.g. Noto Color Emoji.
        resolution: output side length.
        background: RGB background colour, ints in [0, 255].
        limit: rasterise only the first ``limit`` glyphs in name order (None: all).

    Returns:
        images, uint8 of shape (N, resolution, resolution, 3), and the N glyph names.
    """
    from fontTools.ttLib import TTFont

    path = check_font(font_path)
    bg = _check_background(background)
    font = TTFont(str(path), lazy=True)
    if "CBDT" not in font or "CBLC" not in font:
        raise ValueError(
            f"font {path} has no CBDT/CBLC colour bitmaps; pass font_path=... naming Noto Color Emoji"
        )
    strikes = font["CBDT"].strikeData
    ppem = [s.bitmapSizeTable.ppemY for s in font["CBLC"].strikes]
    strike = strikes[int(np.argmax(ppem))]
    names = sorted(strike)
    if limit is not None:
        names = names[:limit]
    images, kept, failed = [], [], []
    for name in names:
        glyph = strike[name]
        try:
            with Image.open(io.BytesIO(glyph.imageData)) as png:  # attribute access decodes the glyph
                rgba = png.convert("RGBA")
        except Exception:  # a glyph without a decodable PNG (other bitmap formats): skip it
            failed.append(name)
            continue
        side = max(rgba.size)
        square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        square.paste(rgba, ((side - rgba.width) // 2, (side - rgba.height) // 2))
        small = square.resize((resolution, resolution), Image.Resampling.LANCZOS)
        canvas = Image.new("RGBA", (resolution, resolution), bg + (255,))
        canvas.alpha_composite(small)
        images.append(np.asarray(canvas.convert("RGB")))
        kept.append(name)
    if failed:
        warnings.warn(f"skipped {len(failed)} emoji glyphs without a PNG bitmap: {failed[:10]}", stacklevel=2)
    if not images:
        raise ValueError(f"no PNG colour bitmaps could be decoded from {path}")
    return np.stack(images), kept


def cache_path(
    font_path: str | Path,
    resolution: int,
    background: tuple[int, int, int],
    limit: int | None,
    cache_dir: str | Path | None = None,
) -> Path:
    """The cache file for these settings, keyed by font path, size and mtime (an updated font re-renders)."""
    path = check_font(font_path).resolve()
    stat = path.stat()
    key = json.dumps(
        [_CACHE_VERSION, str(path), stat.st_size, stat.st_mtime_ns, int(resolution), list(background), limit]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return folder / "emoji" / f"emoji-{resolution}px-{digest}.npz"


def load_emoji(
    font_path: str | Path = DEFAULT_FONT,
    resolution: int = 32,
    background: tuple[int, int, int] = (255, 255, 255),
    limit: int | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Rasterised emoji from the on-disk cache, rasterising and caching (atomically) on a miss.

    Returns:
        images, uint8 of shape (N, resolution, resolution, 3), and the N glyph names.
    """
    bg = _check_background(background)
    target = cache_path(font_path, resolution, bg, limit, cache_dir)
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as data:
                return data["images"], [str(n) for n in data["names"]]
        except (OSError, ValueError, KeyError) as err:
            warnings.warn(f"emoji cache {target} is unreadable ({err}); rasterising again", stacklevel=2)
    images, names = rasterize_emoji(font_path, resolution, bg, limit)
    atomic_write(target, lambda f: np.savez(f, images=images, names=np.array(names)))
    return images, names


class EmojiDataset(ArrayImageDataset):
    """One split of the rasterised colour emoji as dict items {"image", "index", "label": -1}.

    Args:
        split: "train", "val", "test", or "all" (every glyph, no split).
        font_path: CBDT colour-bitmap font (Debian package ``fonts-noto-color-emoji``).
        resolution: output side length.
        background: RGB background colour, ints in [0, 255].
        val_fraction: fraction of the glyphs held out for validation.
        test_fraction: fraction of the glyphs held out for testing.
        seed: seed of the split and of ``split_limit``.
        limit: rasterise only the first ``limit`` glyphs in name order (cached separately; None: all).
        split_limit: keep a deterministic subsample of this many images of the split (None: all).
        cache_dir: cache folder (default ``$GENPRIOR_CACHE`` or ``~/.cache/genprior``).

    Shape:
        item["image"]: (3, resolution, resolution) float32 in [0, 1].
    """

    def __init__(
        self,
        split: str = "train",
        font_path: str = DEFAULT_FONT,
        resolution: int = 32,
        background: tuple[int, int, int] = (255, 255, 255),
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        seed: int = 0,
        limit: int | None = None,
        split_limit: int | None = None,
        cache_dir: str | None = None,
    ):
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
        if int(resolution) < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution}")
        check_limit("limit", limit)
        check_limit("split_limit", split_limit)
        array, names = load_emoji(font_path, int(resolution), background, limit, cache_dir)
        images = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()
        labels = torch.full((len(images),), -1, dtype=torch.int64)
        if split == "all":
            rows = torch.arange(len(images))
        else:
            n_val, n_test = fraction_counts(len(images), val_fraction, test_fraction)
            rows = split_rows(len(images), n_val, n_test, seed)[split]
            rows = limit_rows(rows, split_limit, seed, split)
        super().__init__(images, labels, rows)
        self.split = split
        self.names = [names[int(r)] for r in self.rows]


class EmojiDataModule(ImageDataModule):
    """Colour emoji from Noto Color Emoji (3 channels, unlabeled), for LightningCLI.

    The first setup rasterises the font (a few seconds) and caches the array on disk; later ones load it.

    Args:
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the train/val/test split, of the ``limit_*`` subsamples and of train shuffling.
        resolution: output side length.
        background: RGB background colour, ints in [0, 255] (YAML: ``[255, 255, 255]``).
        font_path: CBDT colour-bitmap font; default the Debian package's location.
        val_fraction: fraction of the glyphs held out for validation.
        test_fraction: fraction of the glyphs held out for testing.
        limit: rasterise only the first ``limit`` glyphs in name order (cached separately; None: all).
        limit_train: keep a deterministic subsample of this many training images (None: all).
        limit_val: same for the validation split.
        limit_test: same for the test split.
        cache_dir: cache folder (default ``$GENPRIOR_CACHE`` or ``~/.cache/genprior``).
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        resolution: int = 32,
        background: tuple[int, int, int] = (255, 255, 255),
        font_path: str = DEFAULT_FONT,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        limit: int | None = None,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if int(resolution) < 4:
            raise ValueError(f"resolution must be >= 4, got {resolution}")
        for name, value in (
            ("limit", limit),
            ("limit_train", limit_train),
            ("limit_val", limit_val),
            ("limit_test", limit_test),
        ):
            check_limit(name, value)
        fraction_counts(1000, val_fraction, test_fraction)  # validates the fractions early
        self.channels = 3
        self.resolution = int(resolution)
        self.num_classes = 0
        self.background = _check_background(background)
        self.font_path = font_path
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.limit = limit
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self.cache_dir = cache_dir

    def prepare_data(self) -> None:
        load_emoji(self.font_path, self.resolution, self.background, self.limit, self.cache_dir)

    def make_dataset(self, split: str) -> EmojiDataset:
        return EmojiDataset(
            split=split,
            font_path=self.font_path,
            resolution=self.resolution,
            background=self.background,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            limit=self.limit,
            split_limit=self.limits[split],
            cache_dir=self.cache_dir,
        )
