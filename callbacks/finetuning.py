"""Progressive unfreezing of per-image generator copies (DGP Sec. 3.2 "progressive reconstruction").

Built on Lightning's :class:`~pytorch_lightning.callbacks.BaseFinetuning` for what it offers here:
``freeze`` / ``make_trainable`` (frozen parameters get ``requires_grad=False``, so backward computes
no weight gradients for them -- unlike the published code, which zeroes learning rates; BatchNorm
parameters of frozen blocks are frozen too). The stage boundaries come from the inversion engine,
which calls :meth:`ProgressiveUnfreezing.on_stage_start` before it builds each stage's optimizer
(the engine re-creates Adam per stage, so BaseFinetuning's param-group bookkeeping is not used).

The callback knows the engine only structurally (``pl_module.stages[k].trains_generator``,
``pl_module.copies`` / ``pl_module.stacked``, ``on_stage_start(trainer, module, k, stage)``: the
``inversion.stages.StageCallback`` protocol); it imports nothing from ``inversion``. DGP-style schedules
(``blocks`` per stage) are split into block counts and engine stages by
``inversion.dgp.schedule.schedule_to_stages``.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn

__all__ = ["GroupLearningRates", "ProgressiveUnfreezing", "as_blocks"]


def as_blocks(value, where: str) -> int | str:
    if isinstance(value, str) and value == "all":
        return "all"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{where}: blocks must be an int >= 0 (0 = generator frozen) or 'all', got {value!r}"
        )
    return int(value)


class ProgressiveUnfreezing(BaseFinetuning):
    """Stage ``k`` fine-tunes exactly the first ``blocks[k]`` generator blocks (latent side first) of every
    per-image generator copy; all other blocks are frozen (``requires_grad=False``, no ``.grad``).

    DGP (Sec. 3.2, Tables 6, 8, 9) fine-tunes the shallowest block first and goes deeper stage by stage.
    A block count larger than the generator's depth means all blocks: the papers' counts refer to a
    BigGAN, and our small generators have 4-5 blocks.

    Args:
        blocks: per stage, the number of leading generator blocks that train (``'all'`` for every block,
            0 for none). Must have one entry per engine stage.
        embedding: also train the generator's class embedding (``generator.embedding``) whenever block 0
            trains (DGP Table 7 fine-tunes BigGAN's class embedding with its first group; its
            ``get_params(0, update_embed=True)``). Otherwise the embedding stays frozen.

    Example::

        schedule = [{"blocks": 1, "iterations": 40}, {"blocks": 2, "iterations": 9}]
        blocks, stages = inversion.dgp.schedule_to_stages(schedule)
        run_stages(prior, op, y, z0, stages, callbacks=[ProgressiveUnfreezing(blocks)])
    """

    def __init__(self, blocks: list[int | str], embedding: bool = False):
        super().__init__()
        if isinstance(blocks, (str, int)) or not len(blocks):
            raise ValueError("blocks must be a non-empty list with one block count per stage")
        self.blocks = [as_blocks(b, f"stage {i}") for i, b in enumerate(blocks)]
        self.embedding = bool(embedding)

    def count(self, k: int, depth: int) -> int:
        """Number of blocks stage ``k`` trains on a generator with ``depth`` blocks."""
        b = self.blocks[k]
        return depth if b == "all" else min(int(b), depth)

    # BaseFinetuning hooks -------------------------------------------------------------------
    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        """Check the schedule against the engine (the shared prior is already frozen by the engine)."""
        stages = getattr(pl_module, "stages", None)
        if stages is None:
            raise ValueError("ProgressiveUnfreezing works with the inversion engine (InversionModule)")
        if len(stages) != len(self.blocks):
            raise ValueError(
                f"ProgressiveUnfreezing has {len(self.blocks)} block counts for {len(stages)} stages: "
                "give one per stage"
            )
        for k, (s, b) in enumerate(zip(stages, self.blocks, strict=True)):
            if b and not s.trains_generator:
                raise ValueError(
                    f"stage {k} fine-tunes {b} block(s) but its Stage has generator=None: "
                    "build the stages with inversion.dgp.schedule_to_stages"
                )

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer) -> None:
        """Unused: stage boundaries arrive through :meth:`on_stage_start` (one epoch is one step)."""

    # engine hook ------------------------------------------------------------------------------
    def on_stage_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, k: int, stage) -> None:
        gen = pl_module.prior.generator
        depth = len(gen.blocks)
        n = self.count(k, depth)
        embed = self.embedding and n > 0
        if embed and not isinstance(getattr(gen, "embedding", None), nn.Module):
            raise ValueError(
                "embedding fine-tuning needs a class-conditional generator (generator.embedding)"
            )
        if pl_module.copies is not None:
            for copy in pl_module.copies:
                # everything frozen (BN parameters too; parameters outside `blocks`, such as a class
                # embedding, stay frozen), then the first n blocks made trainable
                self.freeze(copy, train_bn=False)
                self.make_trainable(list(copy.blocks[:n]) + ([copy.embedding] if embed else []))
                for p in copy.parameters():
                    p.grad = None
        if pl_module.stacked is not None:
            prefixes = tuple(f"blocks.{i}." for i in range(n)) + (("embedding.",) if embed else ())
            for name, p in pl_module.stacked.items():
                p.requires_grad_(name.startswith(prefixes))
                p.grad = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``BaseFinetuning.freeze`` turned ``track_running_stats`` off in frozen BatchNorms (no effect in
        eval mode, where running statistics are used); turn it back on in the returned copies."""
        for copy in getattr(pl_module, "copies", None) or ():
            for m in copy.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.track_running_stats = True

    @staticmethod
    def trainable_blocks(generator: nn.Module) -> list[int]:
        """Indices of ``generator.blocks`` whose parameters all require gradients (for checks and logs)."""
        out = []
        for i, b in enumerate(generator.blocks):
            ps = list(b.parameters())
            if ps and all(p.requires_grad for p in ps):
                out.append(i)
        return out


class GroupLearningRates(BaseFinetuning):
    """Per-stage learning rates of the generator's parameter groups, as DGP's ``LRScheduler.update``
    (``models/dgp.py``) sets them: group ``j`` trains at ``generator_lr * lr_ratio**j`` while ``j < ft_num``,
    at learning rate 0 from ``ft_num`` on -- its parameters keep their gradients, so Adam's moments go on
    accumulating and move them once a later stage raises ``ft_num`` (unlike :class:`ProgressiveUnfreezing`,
    which takes the frozen groups out of the graph).

    Needs the engine's persistent optimizers (``optimizers="persistent"``, param groups tagged
    ``group=j``); in the manner of :class:`~pytorch_lightning.callbacks.BaseFinetuning`, the stage boundary
    comes as ``on_stage_start`` and :meth:`finetune_function` edits the optimizer's param groups.

    Args:
        blocks: per stage DGP's ``ft_num`` (groups that train), or ``'all'``.
        lr_ratio: per stage DGP's ``lr_ratio``.
    """

    def __init__(self, blocks: list[int | str], lr_ratio: list[float]):
        super().__init__()
        if isinstance(blocks, (str, int)) or not len(blocks) or len(lr_ratio) != len(blocks):
            raise ValueError("blocks and lr_ratio must be lists with one entry per stage")
        self.blocks = [as_blocks(b, f"stage {i}") for i, b in enumerate(blocks)]
        self.lr_ratio = [float(r) for r in lr_ratio]
        self._stage = None

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        stages = getattr(pl_module, "stages", None)
        if stages is None or not getattr(pl_module, "persistent", False):
            raise ValueError("GroupLearningRates needs the inversion engine with optimizers='persistent'")
        if len(stages) != len(self.blocks):
            raise ValueError(
                f"GroupLearningRates has {len(self.blocks)} entries for {len(stages)} stages: "
                "give one per stage"
            )

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer) -> None:
        """Set the rates of the current stage on ``optimizer``'s tagged groups."""
        k, stage = self._stage
        ft_num = self.blocks[k]
        for pg in optimizer.param_groups:
            j = pg.get("group")
            if j is None:
                continue
            on = ft_num == "all" or j < ft_num
            pg["lr"] = stage.generator_lr * self.lr_ratio[k] ** j if on else 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Nothing per epoch: the rates change at stage boundaries (:meth:`on_stage_start`)."""

    def on_stage_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, k: int, stage) -> None:
        self._stage = (k, stage)
        for opt in pl_module.stage_optimizers:
            self.finetune_function(pl_module, k, opt)
