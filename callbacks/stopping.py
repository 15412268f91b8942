"""Stop an inversion once the measurement MSE reaches a threshold (DGP stops its defence at 5e-3)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping

__all__ = ["MSEThresholdStop", "TermThresholdStop"]


class MSEThresholdStop(EarlyStopping):
    """End the fit at the first step whose logged measurement MSE is ``<= threshold``.

    Built on ``EarlyStopping(stopping_threshold=...)``, checked at every train-epoch end (one epoch
    is one step in the inversion engine), with an unbounded ``patience`` so that only the threshold
    stops the fit (EarlyStopping's default patience of 3 checks would otherwise end it after three
    steps without improvement). The engine logs ``measurement_mse_max``: the largest per-image MSE
    of the images still fitting, so the fit ends when every image is at the threshold.

    Args:
        threshold: MSE threshold (DGP, adversarial defence: 5e-3).
        monitor: logged metric to compare.
    """

    def __init__(self, threshold: float = 5e-3, monitor: str = "measurement_mse_max"):
        if not threshold > 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        super().__init__(
            monitor=monitor,
            mode="min",
            stopping_threshold=float(threshold),
            patience=2**62,
            check_on_train_epoch_end=True,
            check_finite=False,
            verbose=False,
            strict=True,
        )
        self.threshold = float(threshold)

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        if current <= self.threshold:  # inclusive, unlike EarlyStopping's strict comparison
            return True, f"{self.monitor} = {float(current):.3g} <= threshold {self.threshold:.3g}"
        return super()._evaluate_stopping_criteria(current)


class TermThresholdStop(pl.Callback):
    """Stop an image for the rest of the current stage once a loss term of the step just taken is below a
    per-stage threshold, *after* that step's update: DGP's ``run()`` breaks out of its stage loop once
    ``mse < stop_mse`` or the feature loss ``< stop_ftr`` (``models/dgp.py``). The image keeps the updated
    iterate and resumes from it in the next stage.

    Args:
        term: the engine's loss term to watch (``pl_module.last_terms[term]``, ``(B,)``).
        thresholds: per stage, the threshold (None: no stop in that stage); one number for every stage.
    """

    reads_metrics = False

    def __init__(self, term: str, thresholds: float | list[float | None]):
        self.term = str(term)
        self.thresholds = thresholds

    def _threshold(self, k: int) -> float | None:
        t = self.thresholds
        return t[k] if isinstance(t, (list, tuple)) else t

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        thr = self._threshold(pl_module.stage_index)
        if thr is None:
            return
        value = pl_module.last_terms.get(self.term)
        if value is None:
            raise ValueError(f"TermThresholdStop watches {self.term!r}, which the engine did not compute")
        pl_module.stop_images(value < float(thr))
