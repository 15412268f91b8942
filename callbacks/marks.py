"""Record where each stage of each inversion fit starts, in rows of the method's objective history."""

from __future__ import annotations

import pytorch_lightning as pl

__all__ = ["StageMarks"]


class StageMarks(pl.Callback):
    """Pass to ``restore(..., callbacks=[marks])``; afterwards ``marks.starts(T)`` gives the rows of
    ``RestoreResult.history`` (``T`` rows) at which a stage began, over every fit the method ran (IAGAN:
    the CSGM fit, then its joint stage). Reads no logged metrics, so the engine skips its logging."""

    reads_metrics = False

    def __init__(self) -> None:
        self._fits: list[tuple[object, list[int]]] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # one fit per image (the engine's per_image, DGP): the images' padded histories share the rows of
        # the first image's fit, whose stages start at the schedule's nominal steps
        split = getattr(pl_module, "split", None)
        if split is None or split[0] == 0:
            self._fits.append((pl_module, []))

    def on_stage_start(self, trainer, module, k: int, stage) -> None:
        if self._fits and self._fits[-1][0] is module:
            split = getattr(module, "split", None) is not None
            self._fits[-1][1].append(module.starts[k] if split else len(module.history))

    def starts(self, rows: int) -> list[int]:
        """Stage starts in a history of ``rows`` rows. Rows before the fits this callback saw belong to an
        earlier fit run without callbacks (IAGAN's CSGM start) and count as one stage from row 0; ``[]``
        when the seen fits hold more rows than ``rows`` (a method that post-processes its history)."""
        seen = sum(_rows(module) for module, _ in self._fits)
        if seen > rows or not self._fits:
            self._fits = []
            return []
        out, offset = ([0] if seen < rows else []), rows - seen
        for module, marks in self._fits:
            out += [offset + m for m in marks]
            offset += _rows(module)
        self._fits = []  # drop the module references (generator copies)
        return sorted(set(out))


def _rows(module) -> int:
    """Rows of the method's history that ``module``'s fit fills (padded to the schedule per image)."""
    if getattr(module, "split", None) is not None:
        return int(module.total_steps)
    return len(getattr(module, "history", []))
