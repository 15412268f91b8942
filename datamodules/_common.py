"""Pieces shared by the datamodules: in-memory datasets, seeded splits, the base DataModule.

(Atomic writes: :mod:`datamodules.io.atomic`.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

# Independent random streams derived from one user seed, so that e.g. changing limit_train never
# changes which images land in the validation split.
_STREAM_SPLIT = 0
_STREAM_LIMIT = {"train": 1, "val": 2, "test": 3}


def seeded_generator(seed: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one named random stream of ``seed``."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stream)


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)``.

    Lightning calls ``set_epoch`` at the start of every epoch, so a run resumed from a checkpoint
    sees the same order in each epoch as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.skip = 0  # positions to leave out of the next pass only (a run resumed mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        order = torch.randperm(self.n, generator=seeded_generator(self.seed + self.epoch, 100)).tolist()
        return iter(order[skip:])

    def __len__(self) -> int:
        return self.n


class ShardedEpochShuffle(DistributedSampler):
    """:class:`EpochShuffle`'s permutation split over DDP ranks: rank r takes positions r, r + W, ...
    (padded by wrapping around, as ``DistributedSampler``). Being a ``DistributedSampler``, Lightning
    keeps it (instead of re-shuffling through its wrapper), so the W ranks' batches of size B together
    hold the images of the one-process batch of size W * B.
    """

    def __init__(self, n: int, seed: int, num_replicas: int, rank: int) -> None:
        super().__init__(range(n), num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        self.base = EpochShuffle(n, seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    skip = 0  # this rank's positions to leave out of the next pass only (a run resumed mid-epoch)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        order = list(self.base)
        order += (order * (1 + self.total_size // max(len(order), 1)))[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas][skip:])


class ResumableLoader(DataLoader):
    """A ``DataLoader`` whose position survives a checkpoint (Lightning's stateful-loader protocol).

    ``state_dict()``: the epoch of the order being served and the batches of it already yielded; after
    ``load_state_dict`` the next pass serves the rest of that order, and later passes the orders that
    follow it, so a fit resumed mid-epoch sees the batches an uninterrupted one would. The epoch is the
    loader's own: Lightning counts a pass stopped by ``max_steps`` as finished and resumes with the next
    epoch number (an offset keeps the order). The sampler draws its order from ``(seed, epoch)`` only and
    supports ``skip`` (:class:`EpochShuffle`, :class:`ShardedEpochShuffle`); iterators draw no global
    random numbers (a loader-owned ``generator`` is required).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.generator is None:
            raise ValueError("ResumableLoader needs its own generator= (iterators must not draw global RNG)")
        self._yielded, self._epoch, self._offset, self._resume = 0, 0, 0, None

    def __iter__(self):
        told = int(getattr(self.sampler, "epoch", 0))  # what Lightning's set_epoch said
        resume, self._resume = self._resume, None
        skip = 0
        if resume is not None:
            self._offset = resume["epoch"] - told
            if resume["batches"] < len(self):
                skip = resume["batches"]
            else:  # that pass was finished: the next order
                self._offset += 1
        self._epoch = told + self._offset
        self.sampler.set_epoch(self._epoch)
        self.sampler.skip = skip * int(self.batch_size)
        self._yielded = skip
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self._epoch), "batches": int(self._yielded)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {"epoch": int(state_dict["epoch"]), "batches": int(state_dict["batches"])}


def item(image: torch.Tensor, index: int, label: int | torch.Tensor) -> dict[str, torch.Tensor]:
    """One dataset item as the project's dict convention.

    Shape:
        image: (C, H, W) float32 in [0, 1]; index and label: 0-d int64 (label -1 when unlabeled).
    """
    return {
        "image": image,
        "index": torch.tensor(index, dtype=torch.int64),
        "label": torch.as_tensor(label, dtype=torch.int64).clone(),
    }


def check_index(i: int, n: int) -> int:
    """Turns a possibly negative index into ``0..n-1``; IndexError outside (ends iteration)."""
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"index {i} out of range for a split of {n} items")
    return i


class ArrayImageDataset(Dataset):
    """Images held in memory as uint8, returned as float32 in [0, 1].

    Rows of a shared array are selected by ``rows``, so several splits share one array without copies.

    Args:
        images: uint8 tensor (N, C, H, W) with all images of the source.
        labels: int64 tensor (N,), -1 where unlabeled.
        rows: int64 tensor (M,): the rows of ``images`` in this split, in split order.

    Shape:
        item["image"]: (C, H, W) float32 in [0, 1].
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}"
            )
        self.images = images
        self.labels = labels
        self.rows = rows.to(torch.int64)

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = check_index(i, len(self))
        row = int(self.rows[i])
        return item(self.images[row].to(torch.float32).div_(255.0), i, self.labels[row])


def split_rows(n: int, n_val: int, n_test: int, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic disjoint train/val/test row sets of ``range(n)`` for ``seed`` (each sorted)."""
    perm = torch.randperm(n, generator=seeded_generator(seed, _STREAM_SPLIT))
    return {
        "val": perm[:n_val].sort().values,
        "test": perm[n_val : n_val + n_test].sort().values,
        "train": perm[n_val + n_test :].sort().values,
    }


def fraction_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Val and test sizes for fractions of ``n`` items (at least 1 each when its fraction is > 0)."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(
            f"{n} images leave no training images with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}; lower the fractions or add images"
        )
    return n_val, n_test


def limit_rows(rows: torch.Tensor, limit: int | None, seed: int, split: str) -> torch.Tensor:
    """A deterministic subsample of ``limit`` rows (kept sorted); all rows when ``limit`` is None."""
    if limit is None or limit >= rows.numel():
        return rows
    pick = torch.randperm(rows.numel(), generator=seeded_generator(seed, _STREAM_LIMIT[split]))[:limit]
    return rows[pick.sort().values]


def check_limit(name: str, value: int | None) -> None:
    if value is not None and int(value) < 1:
        raise ValueError(f"{name} must be a positive int or None (all images), got {value}")


def default_cache_dir() -> Path:
    """``$GENPRIOR_CACHE`` if set, else ``~/.cache/genprior``."""
    env = os.environ.get("GENPRIOR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genprior"


def _train_sampler(n: int, seed: int) -> Sampler[int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            return ShardedEpochShuffle(n, seed, world, torch.distributed.get_rank())
    return EpochShuffle(n, seed)


class ImageDataModule(pl.LightningDataModule):
    """Base for the datamodules: loaders, seeded shuffling, split bookkeeping.

    Subclasses set ``channels``, ``resolution``, ``num_classes`` in ``__init__`` and implement
    ``make_dataset(split)`` for split in {"train", "val", "test"}.
    """

    channels: int
    resolution: int
    num_classes: int

    def __init__(self, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if int(num_workers) < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def make_dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.make_dataset("train")
        if stage in (None, "fit", "validate") and self.val_set is None:
            self.val_set = self.make_dataset("val")
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = self.make_dataset("test")

    @property
    def num_train(self) -> int:
        """Number of images in the train split (after ``setup("fit")``)."""
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.num_train is known after setup('fit'); call it first")
        return len(self.train_set)

    def _loader(self, dataset: Dataset | None, split: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            stage = {"train": "fit", "val": "validate", "test": "test"}[split]
            raise RuntimeError(f"the {split} split is not set up; call setup({stage!r}) first")
        # a loader-owned generator: creating an iterator draws no global random numbers (a resumed fit
        # draws what an uninterrupted one does); the training loader's position is checkpointed
        return (ResumableLoader if shuffle else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=_train_sampler(len(dataset), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            generator=seeded_generator(self.seed, 200 + _STREAM_LIMIT.get(split, 0)),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, "val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test", shuffle=False)
