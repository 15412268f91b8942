"""Exact resumption of a fit: the random number generators' states travel in every checkpoint.

:class:`RNGStateCheckpoint` stores the torch (CPU and every CUDA device), NumPy and Python ``random``
states whenever Lightning writes a checkpoint, and puts them back just before the first training batch
of a run resumed from it (``--ckpt_path``), so the draws that follow (latents, gradient-penalty
interpolates, ...) are the ones an uninterrupted run makes. The data order is restored by the
datamodules' resumable loaders (``datamodules._common.ResumableLoader``). States are plain tensors,
lists and tuples (``torch.load(weights_only=True)`` reads them).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

__all__ = ["RNGStateCheckpoint", "get_rng_states", "set_rng_states"]


def get_rng_states() -> dict[str, Any]:
    """The torch / CUDA / NumPy / Python random states, as plain tensors and tuples."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - the global state itself
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    cuda = list(states.get("cuda") or [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


class RNGStateCheckpoint(pl.Callback):
    """Saves the RNG states in each checkpoint; restores them before the first batch after a resume."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return get_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx
    ) -> None:
        if self._pending is not None:  # anything drawn between the restore and now does not count
            set_rng_states(self._pending)
            self._pending = None
