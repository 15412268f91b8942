"""``python -m lcm {fit,validate,...} -c configs/lcm/<name>.yaml``: train a prior with LightningCLI.

The model (any :class:`lcm.modules.PriorModule`) and the datamodule are chosen by ``class_path`` in the
config. ``channels`` and ``resolution`` of the model are linked from the datamodule. A
``ModelCheckpoint`` is always attached (``--checkpoint.*``; ``save_last=True`` and periodic by
default), so ``--ckpt_path last`` resumes when ``checkpoint.dirpath`` is fixed (the configs fix it).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from callbacks.report import PriorReport
from lcm.modules import PriorModule


class PriorCheckpoint(ModelCheckpoint):
    """ModelCheckpoint that also refreshes ``last.ckpt`` when training stops between two periodic saves
    (``max_time``, ``max_steps``): Lightning's own ``on_train_end`` only writes it if none was written."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # private Lightning 2.6 API (_last_global_step_saved, _save_last_checkpoint), as used by the parent
        if self.save_last and not trainer.fast_dev_run and trainer.global_step > self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        else:
            super().on_train_end(trainer, pl_module)


class PriorCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(PriorCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.every_n_train_steps": 500})
        parser.add_lightning_class_args(PriorReport, "report")  # samples per checkpoint, report.html
        parser.link_arguments("data.channels", "model.init_args.channels", apply_on="instantiate")
        parser.link_arguments("data.resolution", "model.init_args.resolution", apply_on="instantiate")


def cli_main(args: list[str] | None = None, run: bool = True) -> PriorCLI:
    return PriorCLI(
        PriorModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )
