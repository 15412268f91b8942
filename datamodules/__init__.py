"""Image datasets and LightningDataModules: Fashion-MNIST, colour emoji, and any folder of images; below
them :mod:`datamodules.io`, the bottom layer for files (image load / save, grid, atomic write, HTML pages).

Items are dicts {"image": (C, H, W) float32 in [0, 1], "index": int64 position in its split,
"label": int64 class or -1}.
Preview samples with ``python -m datamodules preview --out outputs/datasets.png``.

The datamodules are imported on first use (PEP 562 ``__getattr__``), so that
``from datamodules.io.images import load_image`` reads a PNG without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datamodules.emoji import EmojiDataModule, EmojiDataset, load_emoji, rasterize_emoji
    from datamodules.fashion_mnist import FashionMNISTDataModule, FashionMNISTDataset
    from datamodules.image_folder import ImageFolderDataModule, ImageFolderDataset

_EXPORTS = {
    "EmojiDataModule": "datamodules.emoji",
    "EmojiDataset": "datamodules.emoji",
    "FashionMNISTDataModule": "datamodules.fashion_mnist",
    "FashionMNISTDataset": "datamodules.fashion_mnist",
    "ImageFolderDataModule": "datamodules.image_folder",
    "ImageFolderDataset": "datamodules.image_folder",
    "load_emoji": "datamodules.emoji",
    "rasterize_emoji": "datamodules.emoji",
}

__all__ = [
    "EmojiDataModule",
    "EmojiDataset",
    "FashionMNISTDataModule",
    "FashionMNISTDataset",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "load_emoji",
    "rasterize_emoji",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
