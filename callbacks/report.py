""":class:`PriorReport`, the prior-training callback that has a sample grid written per checkpoint
(through :class:`callbacks.samples.SampleGrids`) and writes ``report.html`` at the end (sample grid,
loss curves, validation metrics when logged). The page kit is :mod:`datamodules.io.html`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from callbacks.samples import SampleGrids
from datamodules.io.atomic import atomic_write_bytes
from datamodules.io.html import figure_png, figure_report

__all__ = ["PriorReport"]


def _curves_png(curves: dict[str, list[tuple[int, float]]], title: str) -> bytes | None:
    curves = {k: v for k, v in curves.items() if len(v) > 1}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, pts) in zip(axes.flat, sorted(curves.items()), strict=False):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.9)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)


class PriorReport(pl.Callback):
    """Prior training: a sample grid at every checkpoint save, the logged metrics every ``every_n_steps``
    steps, and at the end of training ``<root>/report.html`` (latest samples, loss curves, validation
    metrics when the module logs ``val*`` metrics) and ``<root>/training.json`` (``global_step``,
    ``max_steps``, ``done``: whether ``max_steps`` was reached). ``<root>`` is the trainer's log dir.

    The recorded curves are kept in checkpoints, so a resumed run reports its whole history.
    Sample grids are written by the trainer's :class:`~callbacks.samples.SampleGrids` (one without
    periodic grids when the trainer has none); works with any module that has ``sample_images(n)``
    (``lcm.PriorModule``).
    """

    def __init__(self, every_n_steps: int = 10, enabled: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every = int(every_n_steps)
        self.enabled = bool(enabled)
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self._own_samples: SampleGrids | None = None  # used when the trainer has no SampleGrids

    # metrics -------------------------------------------------------------------------------
    def _record(self, trainer: pl.Trainer, prefix_ok) -> None:
        step = int(trainer.global_step)
        for k, v in trainer.callback_metrics.items():
            if not prefix_ok(k):
                continue
            try:
                val = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(val):
                pts = self.curves.setdefault(k, [])
                if not pts or pts[-1][0] != step:
                    pts.append((step, val))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.enabled and trainer.is_global_zero and trainer.global_step % self.every == 0:
            self._record(trainer, lambda k: not k.startswith("val"))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.enabled and trainer.is_global_zero and not trainer.sanity_checking:
            self._record(trainer, lambda k: k.startswith("val"))

    def state_dict(self) -> dict[str, Any]:
        return {"curves": {k: [list(p) for p in v] for k, v in self.curves.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curves = {
            k: [(int(s), float(v)) for s, v in pts] for k, pts in state_dict.get("curves", {}).items()
        }

    # samples per checkpoint ----------------------------------------------------------------------
    def _samples(self, trainer: pl.Trainer) -> SampleGrids:
        for cb in trainer.callbacks:
            if isinstance(cb, SampleGrids):
                return cb
        if self._own_samples is None:
            self._own_samples = SampleGrids(every_n_steps=0)
        return self._own_samples

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.enabled and hasattr(pl_module, "sample_images"):
            self._samples(trainer).write(trainer, pl_module)  # every rank: trainer.log_dir is a collective

    # the end -------------------------------------------------------------------------------------
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        root = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if hasattr(pl_module, "sample_images"):  # the final samples; every rank calls, rank 0 writes
            self._samples(trainer).write(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        step, max_steps = int(trainer.global_step), int(trainer.max_steps)
        done = max_steps > 0 and step >= max_steps
        status = {"global_step": step, "max_steps": max_steps, "done": done}
        atomic_write_bytes(root / "training.json", json.dumps(status).encode())
        reach = f"step {step} of max_steps {max_steps}" if max_steps > 0 else f"step {step}"
        print(f"[lcm] training stopped at {reach}" + ("" if done else " (not finished)"), file=sys.stderr)
        samples = sorted((root / "samples").glob("samples_step*.png"))
        figures: list[tuple[str, str | Path | bytes]] = []
        if samples:
            figures.append(
                (f"samples at step {samples[-1].stem.split('step')[-1].lstrip('0') or 0}", samples[-1])
            )
        train = {k: v for k, v in self.curves.items() if not k.startswith("val")}
        val = {k: v for k, v in self.curves.items() if k.startswith("val")}
        for name, group in (("training losses", train), ("validation metrics", val)):
            png = _curves_png(group, name)
            if png is not None:
                figures.append((name, png))
        last = [[k, f"{v[-1][1]:.4g}", v[-1][0]] for k, v in sorted(self.curves.items()) if v]
        hp = dict(getattr(pl_module, "hparams", {}) or {})
        title = f"{type(pl_module).__name__} prior training"
        tables = [("Last logged values", ["metric", "value", "at step"], last)] if last else []
        path = figure_report(root, title, figures, info=hp, tables=tables, intro=f"stopped at {reach}")
        print(f"[lcm] training report: {path}", file=sys.stderr)
