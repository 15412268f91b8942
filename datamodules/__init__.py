"""Image datasets and LightningDataModules: Fashion-MNIST, colour emoji, and any folder of images.

Items are dicts {"image": (C, H, W) float32 in [0, 1], "index": int64 position in its split,
"label": int64 class or -1}.
Preview samples with ``python -m datamodules preview --out outputs/datasets.png``.
"""

from datamodules.emoji import EmojiDataModule, EmojiDataset, load_emoji, rasterize_emoji
from datamodules.fashion_mnist import FashionMNISTDataModule, FashionMNISTDataset
from datamodules.image_folder import ImageFolderDataModule, ImageFolderDataset

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
