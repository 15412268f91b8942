"""The prior-training base module :class:`PriorModule` (checkpointed hyper-parameters in plain types,
validation / test / predict shared by every prior) and the checkpoint format version."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch

from lcm.evaluation import FrechetTracker, fit_latents, reconstruction_scores
from lcm.prior import Prior

FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """Convert a hyper-parameter value to types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, bool | int | float | str | type(None)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


class PriorModule(pl.LightningModule):
    """Common base: image shape, checkpoint marker, :meth:`sample_images` (written as grids by
    :class:`callbacks.SampleGrids`) and :meth:`to_prior`."""

    kind: ClassVar[str] = ""

    def __init__(
        self,
        channels: int,
        resolution: int,
        sample_every_n_steps: int,
        val_fit_steps: int = 30,
        val_fd_images: int = 256,
    ):
        super().__init__()
        if channels < 1 or resolution < 4:
            raise ValueError(f"channels must be >= 1 and resolution >= 4, got {channels}, {resolution}")
        if val_fit_steps < 0 or val_fd_images < 0:
            raise ValueError(f"val_fit_steps, val_fd_images must be >= 0: {val_fit_steps}, {val_fd_images}")
        self.image_shape = (int(channels), int(resolution), int(resolution))
        self.sample_every_n_steps = int(sample_every_n_steps)  # read by callbacks.SampleGrids
        self.val_fit_steps, self.val_fd_images = int(val_fit_steps), int(val_fd_images)
        self._fd = FrechetTracker(self.val_fd_images)

    def to_prior(self) -> Prior:
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["genprior_kind"] = self.kind
        checkpoint["genprior_format"] = FORMAT_VERSION
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = _plain(dict(checkpoint[key]))

    def _check_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = batch["image"]
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"batch images are {tuple(x.shape[1:])} but the model was built for {self.image_shape}: "
                "set the model's channels/resolution to match the datamodule"
            )
        return x

    # -- sample grids ------------------------------------------------------------------------
    def sample_images(self, n: int) -> torch.Tensor:
        """Images in [0, 1] for the sample grid (``(n, C, H, W)``)."""
        raise NotImplementedError

    # -- validation / test / predict (quality measures: lcm.evaluation) -----------------------
    def sampling_prior(self) -> Prior:
        """The prior that samples like :func:`lcm.load_prior`'s (GLO/LCM: Gaussian fit to the table)."""
        return self.to_prior()

    def forward(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for latents of :meth:`sampling_prior` (``Prior.__call__``)."""
        return self.sampling_prior()(latent, labels)

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        x = self._check_batch(batch)
        prior = self.sampling_prior()
        labels = batch["label"] if prior.num_classes else None
        first = int(batch["index"][0]) if "index" in batch else 0
        g = torch.Generator().manual_seed(self.hparams.get("seed", 0) * 100_003 + first)
        _, recon = fit_latents(prior, x, self.val_fit_steps, labels=labels, generator=g)
        scores = reconstruction_scores(recon, x)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in scores.items()},
            on_step=False,
            on_epoch=True,
            sync_dist=True,
            batch_size=x.shape[0],
            prog_bar=stage == "val",
        )
        if not self.trainer.sanity_checking:
            self._fd.add_real(x)

    def _log_frechet(self, stage: str) -> None:
        if self.trainer.sanity_checking or not self.val_fd_images:
            self._fd.real = []
            return
        prior = self.sampling_prior()
        g = torch.Generator().manual_seed(self.hparams.get("seed", 0) * 100_003 + 7919 * self.global_rank + 1)

        def sample(k: int) -> torch.Tensor:
            labels = torch.arange(k, device=self.device) % prior.num_classes if prior.num_classes else None
            return prior(prior.sample_latent(k, generator=g), labels)

        value = self._fd.compute(sample, self.device)
        if value is not None:  # identical on every rank (features gathered first)
            self.log(f"{stage}/fd", value.float(), on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_frechet("val")

    def on_test_epoch_end(self) -> None:
        self._log_frechet("test")

    def on_predict_start(self) -> None:
        self._predict_prior = self.sampling_prior()

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """One sample per item of the batch, seeded by the item's index (so any device split gives the
        same images): ``{"index": (B,), "samples": (B, C, H, W) in [0, 1]}``."""
        prior = getattr(self, "_predict_prior", None) or self.sampling_prior()
        index = batch["index"]
        out = []
        for i in index.tolist():
            g = torch.Generator().manual_seed(self.hparams.get("seed", 0) * 100_003 + i)
            labels = torch.tensor([i % prior.num_classes], device=self.device) if prior.num_classes else None
            out.append(prior(prior.sample_latent(1, generator=g), labels))
        return {"index": index, "samples": torch.cat(out)}
