"""``python -m lcm {fit,validate,...} -c configs/lcm/<name>.yaml``: train a prior with LightningCLI.

The model (any :class:`lcm.modules.PriorModule`) and the datamodule are chosen by ``class_path`` in the
config. ``channels`` and ``resolution`` of the model are linked from the datamodule. A
``ModelCheckpoint`` is always attached (``--checkpoint.*``; ``save_last=True`` and periodic by
default), so ``--ckpt_path last`` resumes when ``checkpoint.dirpath`` is fixed (the configs fix it);
``--checkpoint.monitor val/fd --checkpoint.mode min`` (or ``val/psnr``, ``max``) keeps the best prior.
``validate`` / ``test`` report held-out reconstruction and the offline Fréchet distance
(:mod:`lcm.evaluation`); ``predict`` writes one sample per predict-split item (``--data.init_args.limit_test
N`` sets N) as PNGs plus ``grid.png`` under ``--samples.output_dir``.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.plugins.io import TorchCheckpointIO

from callbacks.report import PriorReport
from callbacks.resume import RNGStateCheckpoint
from callbacks.samples import SampleGrids
from datamodules.io.grid import save_image_grid
from lcm.collectives import gather_rows
from lcm.modules import PriorModule

# Lightning's console messages a user of ``python -m lcm`` cannot act on (issue 25): the ModelCheckpoint
# example for manual optimisation (WGAN-GP's checkpoints hold the state after its optimiser steps, as
# intended) and a deprecation inside Lightning's own pytree helper; the litlogger advert is a log record.
_NOISE_WARNINGS = (
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
_NOISE_LOGS = ("litlogger",)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in _NOISE_LOGS)


def quiet_lightning() -> None:
    """Silence the messages of ``_NOISE_WARNINGS`` / ``_NOISE_LOGS`` (others, warnings included, stay)."""
    for message in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())


class PriorCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also refreshes ``last.ckpt`` when training stops between two periodic saves
    (``max_time``, ``max_steps``): Lightning's own ``on_train_end`` only writes it if none was written."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # "exists and is not empty" is worth reading only when the folder holds checkpoints (a run's
        # config.yaml or report beside them, as on a fresh demo run, is no reason)
        if self.dirpath and Path(self.dirpath).is_dir() and not any(Path(self.dirpath).glob("*.ckpt")):
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=rf"Checkpoint directory {re.escape(str(self.dirpath))}"
                )
                return super().setup(trainer, pl_module, stage)
        return super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # private Lightning 2.6 API (_last_global_step_saved, _save_last_checkpoint), as used by the parent
        if self.save_last and not trainer.fast_dev_run and trainer.global_step > self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)


class SampleWriter(BasePredictionWriter):
    """Writes ``predict``'s samples: ``<output_dir>/<index>.png`` each and ``grid.png`` (the first
    ``grid_size`` by index, gathered over ranks). ``output_dir`` None: ``<default_root_dir>/samples``."""

    def __init__(self, output_dir: str | None = None, grid_size: int = 64):
        super().__init__(write_interval="batch")
        self.output_dir, self.grid_size = output_dir, int(grid_size)
        self._first: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir or Path(trainer.default_root_dir) / "samples")

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dl_idx):
        out = self._dir(trainer)
        for i, image in zip(prediction["index"].tolist(), prediction["samples"], strict=True):
            save_image_grid(image[None], out / f"{i:06d}.png", nrow=1, padding=0)
        if sum(len(ix) for ix, _ in self._first) < self.grid_size:
            self._first.append((prediction["index"], prediction["samples"]))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._first:
            index, images = torch.cat([i for i, _ in self._first]), torch.cat([s for _, s in self._first])
        else:
            index = torch.zeros(0, dtype=torch.long, device=pl_module.device)
            images = torch.zeros(0, *pl_module.image_shape, device=pl_module.device)
        index, images = gather_rows(index.to(pl_module.device)), gather_rows(images.to(pl_module.device))
        if trainer.is_global_zero and index.numel():
            order = index.argsort()[: self.grid_size]
            n = order.numel()
            save_image_grid(images[order], self._dir(trainer) / "grid.png", nrow=max(1, int(math.sqrt(n))))
        self._first = []


class CheckedCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO whose loading (``--ckpt_path``, ``last`` included) goes through
    :func:`lcm.checkpoints.read_torch_file`: CRCs, views within the stored bytes, ``weights_only``, finite
    weights; Lightning's own loader checks none of them (a bit-rotted ``last.ckpt`` used to resume)."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        from lcm.checkpoints import read_torch_file

        return read_torch_file(path, "checkpoint (--ckpt_path)", "cpu")


def check_resumed_checkpoints(trainer: pl.Trainer) -> pl.Trainer:
    """Make ``trainer`` load checkpoints through :class:`CheckedCheckpointIO` (its default IO only)."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = CheckedCheckpointIO()
    return trainer


class PriorCLI(LightningCLI):
    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        return check_resumed_checkpoints(super().instantiate_trainer(**kwargs))

    def _run_subcommand(self, subcommand: str) -> None:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:  # a SystemExit without a code: it would exit 0
            self._stopped_by_sigterm(subcommand)

    def _stopped_by_sigterm(self, subcommand: str) -> None:
        """SIGTERM during ``fit``: write what the end of training writes (``training.json``, not done; the
        report), then exit 143 (:class:`datamodules.io.errors.Interrupted`)."""
        from datamodules.io.errors import Interrupted

        trainer = self.trainer
        for cb in trainer.callbacks if subcommand == "fit" else []:
            if isinstance(cb, PriorReport):
                cb.on_train_end(trainer, self.model)
        raise Interrupted(
            f"interrupted by SIGTERM at step {trainer.global_step}"
            + (f" of max_steps {trainer.max_steps}" if trainer.max_steps > 0 else "")
            + "; the checkpoints written so far are kept: resume with --ckpt_path last"
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PriorCheckpoint, "checkpoint")
        parser.add_lightning_class_args(SampleWriter, "samples")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.every_n_train_steps": 500})
        parser.add_lightning_class_args(SampleGrids, "sample_grids")  # every model.sample_every_n_steps
        parser.add_lightning_class_args(PriorReport, "report")  # samples per checkpoint, report.html
        # RNG states in every checkpoint: --ckpt_path resumes exactly (the data order: ResumableLoader)
        parser.add_lightning_class_args(RNGStateCheckpoint, "rng_state")
        parser.link_arguments("data.channels", "model.init_args.channels", apply_on="instantiate")
        parser.link_arguments("data.resolution", "model.init_args.resolution", apply_on="instantiate")


def cli_main(args: list[str] | None = None, run: bool = True) -> PriorCLI:
    from lcm.configs import restrict_config_files

    quiet_lightning()
    restrict_config_files()  # YAML size / aliases bounded; class_path imports only genprior's and Lightning's
    return PriorCLI(
        PriorModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
