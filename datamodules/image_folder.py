"""A user's own folder of images (recursive; any of ``IMAGE_EXTENSIONS``), resized and centre-cropped."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from datamodules._common import (
    ImageDataModule,
    check_index,
    check_limit,
    fraction_counts,
    item,
    limit_rows,
    split_rows,
)
from datamodules.io.images import IMAGE_EXTENSIONS, list_image_files, load_image


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"image folder {path} does not exist; pass root=... naming a folder of images"
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"image folder {path} is not a folder; pass root=... naming a folder of images"
        )
    return path


def candidate_files(root: str | Path) -> list[Path]:
    """Files under ``root`` (recursive, hidden entries skipped) with an image extension, sorted by path.

    Symlinks are followed but each folder and file counts once (loops neither repeat nor hang).
    """
    return list_image_files(_check_root(root))


def class_names_of(root: str | Path) -> list[str]:
    """Sorted names of the direct subfolders of ``root`` that hold at least one image file."""
    root = _check_root(root)
    return sorted(
        {f.relative_to(root).parts[0] for f in candidate_files(root) if len(f.relative_to(root).parts) > 1}
    )


def _readable(path: Path) -> bool:
    if not path.is_file():  # a FIFO named like an image would block Image.open
        return False
    try:
        with Image.open(path) as im:
            im.load()  # decodes all pixel data: catches truncated and corrupt files, not only bad headers
            return im.width > 0 and im.height > 0
    except Exception:
        return False


def scan_image_folder(root: str | Path) -> tuple[list[Path], list[Path]]:
    """Readable and unreadable image files under ``root`` (sorted); each file is decoded once with PIL."""
    files = candidate_files(root)
    good, bad = [], []
    for f in files:
        (good if _readable(f) else bad).append(f)
    return good, bad


class FolderIndex(NamedTuple):
    """The readable files of a folder (sorted), their labels, the skipped files and the class names."""

    files: list[Path]
    labels: list[int]
    skipped: list[Path]
    class_names: list[str]


def index_folder(root: str | Path, labels_from_subdirs: bool = False) -> FolderIndex:
    """Scans ``root`` once: warns once listing unreadable files; errors when no image is readable.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no readable image, or (with ``labels_from_subdirs``) images directly inside ``root``.
    """
    root = _check_root(root)
    good, bad = scan_image_folder(root)
    if bad:
        listed = "\n  ".join(str(b) for b in bad)
        warnings.warn(f"skipping {len(bad)} unreadable image file(s) in {root}:\n  {listed}", stacklevel=2)
    if not good:
        raise ValueError(
            f"image folder {root} holds no readable images (looked recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)}); pass root=... naming a folder with images"
        )
    class_names: list[str] = []
    labels = [-1] * len(good)
    if labels_from_subdirs:
        class_names = class_names_of(root)
        top_level = [f for f in good if len(f.relative_to(root).parts) == 1]
        if top_level:
            raise ValueError(
                f"labels_from_subdirs=True but {len(top_level)} image(s) lie directly in {root} "
                f"(e.g. {top_level[0].name}); move them into a class subfolder "
                "or set labels_from_subdirs=False"
            )
        ids = {name: i for i, name in enumerate(class_names)}
        labels = [ids[f.relative_to(root).parts[0]] for f in good]
    return FolderIndex(good, labels, bad, class_names)


class ImageFolderDataset(Dataset):
    """Images of a folder tree as dict items {"image", "index", "label"}.

    Every file is decoded once when the dataset is built; unreadable ones are skipped with one warning
    that lists them. A file that becomes unreadable later is replaced by the next readable image of the
    split (one warning per file), so an epoch never stops.

    Args:
        root: the folder (searched recursively; ``IMAGE_EXTENSIONS`` in any letter case).
        split: "train", "val", "test", or "all" (every image, no split).
        resolution: output side length (shorter side resized, then centre crop).
        channels: 1 (gray) or 3 (RGB); images are converted as needed.
        labels_from_subdirs: label each image by its top-level subfolder (sorted names -> 0..K-1);
            otherwise the label is -1.
        val_fraction: fraction of the images held out for validation.
        test_fraction: fraction of the images held out for testing.
        seed: seed of the split and of ``limit``.
        limit: keep a deterministic subsample of this many images of the split (None: all).
        index: a ``FolderIndex`` from ``index_folder`` to reuse (skips scanning the folder again).

    Shape:
        item["image"]: (channels, resolution, resolution) float32 in [0, 1].
    """

    def __init__(
        self,
        root: str,
        split: Literal["train", "val", "test", "all"] = "all",
        resolution: int = 32,
        channels: int = 3,
        labels_from_subdirs: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        seed: int = 0,
        limit: int | None = None,
        index: FolderIndex | None = None,
    ):
        _check_args(resolution, channels)
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
        check_limit("limit", limit)
        self.root = _check_root(root)
        if index is None:
            index = index_folder(self.root, labels_from_subdirs)
        good, labels = index.files, index.labels
        self.class_names = index.class_names
        if split == "all":
            rows = torch.arange(len(good))
        else:
            n_val, n_test = fraction_counts(len(good), val_fraction, test_fraction)
            rows = split_rows(len(good), n_val, n_test, seed)[split]
        rows = limit_rows(rows, limit, seed, "test" if split == "all" else split)
        self.files = [good[int(r)] for r in rows]
        self.labels = torch.tensor([labels[int(r)] for r in rows], dtype=torch.int64)
        self.skipped = index.skipped
        self.split = split
        self.resolution = int(resolution)
        self.channels = int(channels)
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = check_index(i, len(self))
        for step in range(len(self)):
            j = (i + step) % len(self)
            try:
                image = load_image(self.files[j], self.resolution, self.channels)
            except Exception as err:
                if self.files[j] not in self._warned:
                    self._warned.add(self.files[j])
                    warnings.warn(
                        f"{self.files[j]} became unreadable after the scan ({err}); using the next image",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                continue
            return item(image, i, self.labels[j])
        raise RuntimeError(f"no image of {self.root} is readable any more")


def _check_args(resolution: int, channels: int) -> None:
    if int(resolution) < 4:
        raise ValueError(f"resolution must be >= 4, got {resolution}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray) or 3 (RGB), got {channels}")


class ImageFolderDataModule(ImageDataModule):
    """Your own images: a folder tree of image files (``IMAGE_EXTENSIONS``), for LightningCLI.

    The folder is scanned once, at the first setup: every file is decoded once and unreadable ones are
    skipped with one warning listing them. The folder must exist when the datamodule is built.

    Args:
        root: the folder (searched recursively).
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: seed of the split, of the ``limit_*`` subsamples and of train shuffling.
        resolution: output side length (shorter side resized, then centre crop).
        channels: 1 (gray) or 3 (RGB); images are converted as needed.
        labels_from_subdirs: label each image by its top-level subfolder (sorted names -> 0..K-1).
        split: "random" splits the folder by ``val_fraction``/``test_fraction``; "all" uses the whole folder
            as every split (e.g. all images as restoration inputs through ``test_dataloader()``).
        val_fraction: fraction of the images held out for validation (split="random").
        test_fraction: fraction of the images held out for testing (split="random").
        limit_train: keep a deterministic subsample of this many training images (None: all).
        limit_val: same for the validation split.
        limit_test: same for the test split.
    """

    def __init__(
        self,
        root: str,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        resolution: int = 32,
        channels: int = 3,
        labels_from_subdirs: bool = False,
        split: Literal["random", "all"] = "random",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
    ):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        _check_args(resolution, channels)
        if split not in ("random", "all"):
            raise ValueError(f"split must be 'random' or 'all', got {split!r}")
        for name, value in (
            ("limit_train", limit_train),
            ("limit_val", limit_val),
            ("limit_test", limit_test),
        ):
            check_limit(name, value)
        fraction_counts(1000, val_fraction, test_fraction)  # validates the fractions early
        self.root = str(_check_root(root))
        self.channels = int(channels)
        self.resolution = int(resolution)
        self.labels_from_subdirs = bool(labels_from_subdirs)
        self.class_names = class_names_of(self.root) if labels_from_subdirs else []
        self.num_classes = len(self.class_names)
        self.split = split
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self._index: FolderIndex | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._index is None:  # one scan (and one warning) shared by all splits
            self._index = index_folder(self.root, self.labels_from_subdirs)
        super().setup(stage)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is not None and len(self.test_set) == 0:
            raise ValueError(
                f"the test split of {self.root} is empty (test_fraction=0); set test_fraction > 0, "
                "or split='all' to use the whole folder"
            )
        return super().test_dataloader()

    def make_dataset(self, split: str) -> ImageFolderDataset:
        return ImageFolderDataset(
            root=self.root,
            split="all" if self.split == "all" else split,
            resolution=self.resolution,
            channels=self.channels,
            labels_from_subdirs=self.labels_from_subdirs,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            limit=self.limits[split],
            index=self._index,
        )
