"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (idx files, gzip-compressed or not)."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from datamodules._common import (
    ArrayImageDataset,
    ImageDataModule,
    check_limit,
    limit_rows,
    split_rows,
)

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_NATIVE = 28


def _find(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {data_dir / (stem + '.gz')} not found. Install the data with "
        f"`sudo apt-get install {DEBIAN_PACKAGE}` (files go to {DEFAULT_DATA_DIR}), or pass "
        f"data_dir=... naming a folder that holds the idx files "
        f"({', '.join(s + '.gz' for pair in _FILES.values() for s in pair)})."
    )


def check_files(data_dir: str | Path) -> None:
    """Raises FileNotFoundError naming the missing file, the Debian package and ``data_dir=`` as fixes."""
    data_dir = Path(data_dir).expanduser()
    for pair in _FILES.values():
        for stem in pair:
            _find(data_dir, stem)


def read_idx(path: str | Path) -> np.ndarray:
    """Decodes one idx file (optionally gzip-compressed) of unsigned bytes.

    Shape:
        images file: (N, 28, 28) uint8; labels file: (N,) uint8.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(
            f"{path} is not an idx file of unsigned bytes (bad magic number); reinstall {DEBIAN_PACKAGE}"
        )
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated: header says {shape}, found {data.size} bytes; reinstall {DEBIAN_PACKAGE}"
        )
    return data.reshape(shape)


@functools.lru_cache(maxsize=4)
def _raw(data_dir: str, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one file pair, decoded once per process."""
    images_stem, labels_stem = _FILES[part]
    images = read_idx(_find(Path(data_dir), images_stem))
    labels = read_idx(_find(Path(data_dir), labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST files in {data_dir} disagree: images {images.shape}, labels {labels.shape}"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@functools.lru_cache(maxsize=8)
def _prepared(
    data_dir: str, part: str, resolution: int, resize_mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, R, R) uint8 at the requested resolution, and labels; cached per process."""
    images, labels = _raw(data_dir, part)
    images = images.unsqueeze(1)
    if resolution == _NATIVE:
        return images, labels
    if resize_mode == "pad":
        before = (resolution - _NATIVE) // 2
        after = resolution - _NATIVE - before
        return F.pad(images, (before, after, before, after)), labels
    out = torch.empty(len(images), 1, resolution, resolution, dtype=torch.uint8)
    for start in range(0, len(images), 8192):  # chunks bound the float32 memory
        chunk = images[start : start + 8192].to(torch.float32)
        chunk = F.interpolate(
            chunk, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        )
        out[start : start + 8192] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out, labels


def _check_resolution(resolution: int, resize_mode: str) -> None:
    if resize_mode not in ("pad", "resize"):
        raise ValueError(f"resize_mode must be 'pad' or 'resize', got {resize_mode!r}")
    if int(resolution) < 4:
        raise ValueError(f"resolution must be >= 4, got {resolution}")
    if resize_mode == "pad" and resolution < _NATIVE:
        raise ValueError(
            f"resize_mode='pad' needs resolution >= {_NATIVE}, got {resolution}; "
            "use resize_mode='resize' to shrink"
        )


class FashionMNISTDataset(ArrayImageDataset):
    """One split of Fashion-MNIST as dict items {"image", "index", "label"} (10 classes).

    "train" and "val" partition the 60,000-image file deterministically for ``seed``; "test" is the
    10,000-image t10k file. Images are zero-padded (28 -> 32 adds 2 px each side) or resized with
    antialiasing to ``resolution``.

    Args:
        split: "train", "val" or "test".
        data_dir: folder with the idx files (Debian package ``dataset-fashion-mnist``).
        resolution: output side length.
        resize_mode: "pad" (zero padding, needs resolution >= 28) or "resize" (antialiased bilinear).
        val_size: images of the 60k file held out for validation.
        seed: seed of the train/val partition and of ``limit``.
        limit: keep a deterministic subsample of this many images of the split (None: all).

    Shape:
        item["image"]: (1, resolution, resolution) float32 in [0, 1].
    """

    def __init__(
        self,
        split: Literal["train", "val", "test"] = "train",
        data_dir: str = DEFAULT_DATA_DIR,
        resolution: int = 32,
        resize_mode: Literal["pad", "resize"] = "pad",
        val_size: int = 5000,
        seed: int = 0,
        limit: int | None = None,
    ):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        _check_resolution(resolution, resize_mode)
        check_limit("limit", limit)
        data_dir = str(Path(data_dir).expanduser().resolve())
        check_files(data_dir)
        images, labels = _prepared(
            data_dir, "test" if split == "test" else "train", int(resolution), resize_mode
        )
        if split == "test":
            rows = torch.arange(len(images))
        else:
            if not 0 <= val_size < len(images):
                raise ValueError(f"val_size must be in [0, {len(images)}), got {val_size}")
            rows = split_rows(len(images), int(val_size), 0, seed)[split]
        super().__init__(images, labels, limit_rows(rows, limit, seed, split))
        self.split = split
        self.class_names = CLASS_NAMES


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (1 channel, 10 classes) from the Debian files, for LightningCLI.

    Args:
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the train/val partition, of the ``limit_*`` subsamples and of train shuffling.
        resolution: output side length (default 32: 28 px images padded by 2 px each side).
        resize_mode: "pad" (zero padding, needs resolution >= 28) or "resize" (antialiased bilinear).
        data_dir: folder with the idx files; default the Debian package's location.
        val_size: images of the 60k training file held out for validation.
        limit_train: keep a deterministic subsample of this many training images (None: all).
        limit_val: same for the validation split.
        limit_test: same for the test split (the 10k t10k file).
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        resolution: int = 32,
        resize_mode: Literal["pad", "resize"] = "pad",
        data_dir: str = DEFAULT_DATA_DIR,
        val_size: int = 5000,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        _check_resolution(resolution, resize_mode)
        for name, value in (
            ("limit_train", limit_train),
            ("limit_val", limit_val),
            ("limit_test", limit_test),
        ):
            check_limit(name, value)
        if int(val_size) < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.channels = 1
        self.resolution = int(resolution)
        self.num_classes = len(CLASS_NAMES)
        self.class_names = CLASS_NAMES
        self.resize_mode = resize_mode
        self.data_dir = data_dir
        self.val_size = int(val_size)
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}

    def prepare_data(self) -> None:
        check_files(self.data_dir)

    def make_dataset(self, split: str) -> FashionMNISTDataset:
        return FashionMNISTDataset(
            split=split,
            data_dir=self.data_dir,
            resolution=self.resolution,
            resize_mode=self.resize_mode,
            val_size=self.val_size,
            seed=self.seed,
            limit=self.limits[split],
        )
