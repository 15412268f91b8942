"""Sample grids of prior training: ``<log_dir>/samples/samples_step<step:07d>.png`` (and the logger's
``add_image`` when it has one), written by a callback rather than by the LightningModule."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch

from datamodules.io.grid import image_grid, save_image_grid

__all__ = ["SampleGrids"]


class SampleGrids(pl.Callback):
    """Every ``every_n_steps`` optimizer steps and at the end of training, a grid of ``n`` images from
    ``pl_module.sample_images(n)`` (in [0, 1], ``(n, C, H, W)``) at
    ``<trainer.log_dir or default_root_dir>/samples/samples_step<global_step:07d>.png``, written by rank 0.

    Args:
        every_n_steps: grid interval in optimizer steps; None takes the module's ``sample_every_n_steps``
            (``lcm.PriorModule``'s hyper-parameter); 0 writes periodic and end-of-training grids never
            (other callbacks may still call :meth:`write`, e.g. :class:`callbacks.PriorReport` at
            checkpoints).
        n: images per grid (``sqrt(n)`` per row).

    Each step's grid is written once, whichever trigger (periodic, checkpoint, end) asks first.
    """

    def __init__(self, every_n_steps: int | None = None, n: int = 64):
        if every_n_steps is not None and int(every_n_steps) < 0:
            raise ValueError(f"every_n_steps must be >= 0 or None (the module's), got {every_n_steps}")
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.every_n_steps = None if every_n_steps is None else int(every_n_steps)
        self.n = int(n)
        self._mark = 0
        self._due = False  # a periodic grid is due for the step just finished
        self._written_step = -1  # the step whose grid is written (each step once)

    def interval(self, pl_module: pl.LightningModule) -> int:
        """The grid interval in steps (0: none)."""
        if self.every_n_steps is not None:
            return self.every_n_steps
        return int(getattr(pl_module, "sample_every_n_steps", 0) or 0)

    @staticmethod
    def directory(trainer: pl.Trainer) -> Path:
        """``<log_dir or default_root_dir>/samples`` (``trainer.log_dir`` is a collective under DDP)."""
        return Path(trainer.log_dir or trainer.default_root_dir) / "samples"

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write this step's grid unless it is written already. Call on every rank (rank 0 writes)."""
        if trainer.sanity_checking or self._written_step == trainer.global_step:
            return  # the same step's grid is asked for by the periodic, checkpoint and end hooks
        self._written_step = trainer.global_step  # every rank: global_step agrees, so all skip or none
        directory = self.directory(trainer)  # a collective: every rank asks
        if not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            images = pl_module.sample_images(self.n)
        pl_module.train(was_training)
        step, nrow = trainer.global_step, int(math.sqrt(self.n))
        save_image_grid(images, directory / f"samples_step{step:07d}.png", nrow=nrow)
        experiment = getattr(pl_module.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("samples", image_grid(images, nrow, pad_value=0.0), step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.interval(pl_module)
        if every and trainer.global_step // every > self._mark:
            self._mark = trainer.global_step // every
            # Written when the module's own batch-end hook has run too (Lightning calls callbacks first;
            # GLO / LCM update their latent table there): at the next batch start, same global_step.
            self._due = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._due:
            self._due = False
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._due or self.interval(pl_module):
            self._due = False
            self.write(trainer, pl_module)
