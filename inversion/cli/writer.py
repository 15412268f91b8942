"""Writes what the runner produces, as Lightning's ``BasePredictionWriter`` does for predictions: the
runner calls :meth:`RunWriter.write_on_batch_end` with each restored batch and :meth:`RunWriter.write_failure`
for an image that could not be restored. Every file is written atomically; an image's record
(``rows/<name>.json``) goes last, so a record means its images are complete."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.io.atomic import atomic_write_bytes
from datamodules.io.images import save_png
from inversion.cli.items import Item
from inversion.cli.manifest import fail_path, row_path
from inversion.cli.measurements import write_measurement

__all__ = ["Restored", "RunWriter"]


@dataclass
class Restored:
    """One restored batch: its items and their images (``(N, C, H, W)`` in [0, 1]) and records."""

    items: list[Item]
    truth: torch.Tensor
    degraded: torch.Tensor  # the measurement shown at the image's size
    restored: torch.Tensor
    adjoint: torch.Tensor | None  # A^dagger y of a linear operator, when it has the image's shape
    records: list[dict]  # metrics.csv fields plus history, stage starts and shard, one per item
    y: torch.Tensor | None = None  # the measurements (one row per item) and each item's operator
    ops: list | None = None
    residual: torch.Tensor | None = None  # |A(x) - y| shown at the image's size (degraded_metrics)


class RunWriter:
    """Writes restored batches and failures under the output folder ``out``."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def write_on_batch_end(self, batch: Restored) -> None:
        for i, it in enumerate(batch.items):
            save_png(batch.degraded[i], self.out / "degraded" / it.name)
            save_png(batch.restored[i], self.out / "restored" / it.name)
            if batch.truth is not None:
                save_png(batch.truth[i], self.out / "truth" / it.name)
            if batch.residual is not None:
                save_png(batch.residual[i], self.out / "residual" / it.name)
            self.write_extra(batch, i)
            if batch.adjoint is not None:
                save_png(batch.adjoint[i].clamp(0, 1), self.out / "adjoint" / it.name)
            atomic_write_bytes(row_path(self.out, it), json.dumps(batch.records[i]).encode())
            fail_path(self.out, it).unlink(missing_ok=True)

    def write_extra(self, batch: Restored, i: int) -> None:
        """The benchmark mode's measurement files (``measurements/``, :mod:`inversion.cli.measurements`)."""
        if batch.y is not None and batch.ops is not None:
            it = batch.items[i]
            write_measurement(
                self.out, it.name, it.key, batch.y[i : i + 1], batch.ops[i], batch.truth[i : i + 1]
            )

    def write_failure(self, item: Item, error: Exception) -> None:
        """A bad image is recorded with the reason and skipped; the run goes on."""
        rec = {"index": item.index, "name": item.name, "error": f"{type(error).__name__}: {error}"}
        atomic_write_bytes(fail_path(self.out, item), json.dumps(rec).encode())
        print(f"[inversion] skipped {item.name}: {rec['error']}", file=sys.stderr)
