"""Log intermediate restorations of an inversion as a PNG grid (and optionally a GIF), on rank 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules.io.grid import image_grid
from datamodules.io.images import save_gif, save_png

__all__ = ["ImageGridLogger"]


class ImageGridLogger(pl.Callback):
    """Every ``every_n_steps`` steps, snapshot the module's current restorations; at the end of the
    fit write ``<dirpath>/<name>.png`` (a row per snapshot, a column per image) and, with ``gif``,
    ``<dirpath>/<name>.gif`` (a frame per snapshot). Works with any module that has
    ``synthesize()`` returning ``(B, C, H, W)`` images in [0, 1] (the inversion engine does).

    Args:
        dirpath: output folder.
        every_n_steps: snapshot period in steps (the first and the last step are always kept).
        name: file stem.
        gif: also write an animated GIF.
        max_images: columns (the first images of the batch).
    """

    def __init__(
        self,
        dirpath: str | os.PathLike,
        every_n_steps: int = 25,
        name: str = "fit",
        gif: bool = False,
        max_images: int = 8,
    ):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath = Path(dirpath)
        self.every = int(every_n_steps)
        self.name = name
        self.gif = gif
        self.max_images = int(max_images)
        self.snapshots: list[torch.Tensor] = []
        self.steps: list[int] = []

    def _snap(self, pl_module: pl.LightningModule, step: int) -> None:
        with torch.no_grad():
            x = pl_module.synthesize()[: self.max_images].detach().float().clamp(0, 1).cpu()
        self.snapshots.append(x)
        self.steps.append(step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.snapshots, self.steps = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero:
            return
        step = getattr(pl_module, "t", trainer.current_epoch + 1)  # steps done (engine: one per epoch)
        if (step - 1) % self.every == 0:
            self._snap(pl_module, step)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        last = getattr(pl_module, "t", trainer.current_epoch + 1)
        if not self.steps or self.steps[-1] != last:
            self._snap(pl_module, last)
        b = self.snapshots[0].shape[0]
        save_png(image_grid(torch.cat(self.snapshots), b, padding=1), self.dirpath / f"{self.name}.png")
        if self.gif:
            save_gif([image_grid(s, b, padding=1) for s in self.snapshots], self.dirpath / f"{self.name}.gif")
