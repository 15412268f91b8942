"""Prior-training LightningModules: WGAN-GP, GLO and LCM.

Every module keeps its hyper-parameters to plain types (numbers, strings, tuples) so that its
Lightning checkpoints load with ``torch.load(weights_only=True)``; :func:`lcm.load_prior` rebuilds
the module from them and returns its :class:`lcm.Prior`.

Per-image latent tables (GLO's z_i, LCM's phi_i) live in a :class:`LatentTable`: one ``(N, d)``
tensor (a buffer, saved in the checkpoint) or, for datasets too large for memory, a numpy memmap
file (``latent_memmap``). Only the rows of the current batch are gathered, get a gradient and are
written back after a plain SGD step plus projection (sphere / box) -- a sparse row update, so no
``(N, d)`` gradient or optimiser state ever exists. The generator has an ordinary optimiser.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.grid import save_image_grid
from lcm.distributed import gather_rows, is_distributed
from lcm.evaluation import FrechetTracker, fit_latents, reconstruction_scores
from lcm.losses import gradient_penalty, lap_l1
from lcm.networks import Critic, Generator, LatentConvNet, MappingNetwork
from lcm.prior import Prior, from_unit, to_unit

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
    """Common base: image shape, checkpoint marker, sample-grid logging and :meth:`to_prior`."""

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
        self.sample_every_n_steps = int(sample_every_n_steps)
        self._sample_mark = 0
        self._sampled_step = -1  # the step whose sample grid is written (each step once)
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

    def _sample_dir(self) -> Path:
        root = self.trainer.log_dir or self.trainer.default_root_dir
        return Path(root) / "samples"

    def log_samples(self, n: int = 64) -> None:
        if self.trainer is None or self.trainer.sanity_checking or self._sampled_step == self.global_step:
            return  # the same step's grid is asked for by the periodic, checkpoint and end hooks
        self._sampled_step = self.global_step  # every rank: global_step agrees, so all skip or none
        directory = self._sample_dir()  # trainer.log_dir is a collective (broadcast): every rank asks
        if not self.trainer.is_global_zero:
            return
        was_training = self.training
        self.eval()
        with torch.no_grad():
            images = self.sample_images(n)
        self.train(was_training)
        step = self.global_step
        save_image_grid(images, directory / f"samples_step{step:07d}.png", nrow=int(math.sqrt(n)))
        experiment = getattr(self.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            from torchvision.utils import make_grid

            experiment.add_image("samples", make_grid(images.clamp(0, 1).cpu(), nrow=int(math.sqrt(n))), step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.sample_every_n_steps and self.global_step // self.sample_every_n_steps > self._sample_mark:
            self._sample_mark = self.global_step // self.sample_every_n_steps
            self.log_samples()

    def on_train_end(self) -> None:
        if self.sample_every_n_steps:
            self.log_samples()

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


# ----------------------------------------------------------------------------------------------
class WGANGP(PriorModule):
    """WGAN-GP (Gulrajani et al. 2017, Algorithm 1): the LCM paper's GAN baseline.

    One training step = one critic update on the batch; every ``n_critic``-th step also updates the
    generator. Defaults from Algorithm 1: ``n_critic=5``, ``gp_weight=10``, Adam(1e-4, (0.0, 0.9)).

    Args:
        channels, resolution: image shape (linked from the datamodule by ``python -m lcm``).
        num_classes: > 0 for a class-conditional generator and (projection) critic.
        latent_dim: dimension of z ~ N(0, I) (the LCM paper used 256 at 128x128; smaller here).
        width, critic_width: image-side channel counts of generator / critic.
        mapping_layers: > 0 adds a z -> w MLP mapping network of that depth.
        n_critic, gp_weight, lr, betas: Algorithm 1 hyper-parameters.
        sample_every_n_steps: sample-grid interval (optimizer steps; 0 = only at the end).
        seed: seed of the fixed latents used for sample grids.
        val_fit_steps, val_fd_images: validation / test quality measures (:mod:`lcm.evaluation`):
            Adam steps of the held-out latent fit, and held-out images (and as many samples) per
            process for the offline Fréchet distance (0: off).
    """

    kind = "wgangp"

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        num_classes: int = 0,
        latent_dim: int = 128,
        width: int = 64,
        critic_width: int = 64,
        mapping_layers: int = 0,
        n_critic: int = 5,
        gp_weight: float = 10.0,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        sample_every_n_steps: int = 500,
        seed: int = 0,
        val_fit_steps: int = 30,
        val_fd_images: int = 256,
    ):
        super().__init__(channels, resolution, sample_every_n_steps, val_fit_steps, val_fd_images)
        self.save_hyperparameters()
        self.automatic_optimization = False
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.mapping = (
            MappingNetwork(latent_dim, latent_dim, mapping_layers, num_classes) if mapping_layers else None
        )
        self.generator = Generator((latent_dim,), channels, resolution, width, num_classes)
        self.critic = Critic(channels, resolution, critic_width, num_classes)
        self.register_buffer("critic_steps", torch.zeros((), dtype=torch.long))
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("fixed_z", torch.randn(64, latent_dim, generator=g), persistent=False)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] from z (through the mapping network if any)."""
        w = self.mapping(z, labels) if self.mapping is not None else z
        return self.generator(w, labels)

    def configure_optimizers(self):
        hp = self.hparams
        gen_params = list(self.generator.parameters())
        if self.mapping is not None:
            gen_params += list(self.mapping.parameters())
        opt_g = torch.optim.Adam(gen_params, lr=hp.lr, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.critic.parameters(), lr=hp.lr, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        labels = batch["label"]
        if (labels < 0).any() or (labels >= self.num_classes).any():
            raise ValueError(
                f"class-conditional WGAN-GP needs labels in [0, {self.num_classes}); got {labels}"
            )
        return labels

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        real = from_unit(self._check_batch(batch))
        labels = self._labels(batch)
        n = real.shape[0]
        # critic step (Algorithm 1, lines 2-9)
        self.toggle_optimizer(opt_d)
        with torch.no_grad():
            fake = self.generate(torch.randn(n, self.latent_dim, device=real.device), labels)
        wdist = self.critic(real, labels).mean() - self.critic(fake, labels).mean()
        gp = gradient_penalty(self.critic, real, fake, labels, self.hparams.gp_weight)
        loss_d = -wdist + gp
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)
        self.critic_steps += 1
        self.log_dict(
            {"train/loss_critic": loss_d, "train/wasserstein": wdist, "train/gp": gp}, prog_bar=True
        )
        # generator step every n_critic critic steps (lines 10-11)
        if int(self.critic_steps) % self.hparams.n_critic == 0:
            self.toggle_optimizer(opt_g)
            fake = self.generate(torch.randn(n, self.latent_dim, device=real.device), labels)
            loss_g = -self.critic(fake, labels).mean()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()
            self.untoggle_optimizer(opt_g)
            self.log("train/loss_generator", loss_g, prog_bar=True)

    def sample_images(self, n: int) -> torch.Tensor:
        z = self.fixed_z[:n]
        labels = torch.arange(z.shape[0], device=z.device) % self.num_classes if self.num_classes else None
        return to_unit(self.generate(z, labels))

    def to_prior(self) -> Prior:
        return Prior(
            self.generator,
            "gaussian",
            (self.latent_dim,),
            self.image_shape,
            critic=self.critic,
            mapping=self.mapping,
            num_classes=self.num_classes,
            kind=self.kind,
        )


# ----------------------------------------------------------------------------------------------
class LatentTable(nn.Module):
    """One latent row per training image: a ``(N, d)`` buffer, or a numpy memmap file for large N.

    With ``memmap_path`` the rows live in a ``.npy`` file (``numpy.lib.format.open_memmap``) that is
    created (or reopened when its shape matches) and updated in place; it is then NOT part of the
    state dict, the file is the state (keep it next to the checkpoints).
    """

    def __init__(self, num_rows: int, dim: int, memmap_path: str | None = None):
        super().__init__()
        if num_rows < 1 or dim < 1:
            raise ValueError(f"latent table needs num_rows >= 1 and dim >= 1, got {num_rows}, {dim}")
        self.num_rows, self.dim, self.memmap_path = int(num_rows), int(dim), memmap_path
        self.memmap = None
        self.created = True  # False when an existing memmap file (trained rows) was reopened
        if memmap_path is None:
            self.register_buffer("weight", torch.zeros(self.num_rows, self.dim))
        else:
            from numpy.lib.format import open_memmap

            path = Path(memmap_path)
            if path.exists():
                self.memmap = open_memmap(path, mode="r+")
                self.created = False
                if self.memmap.shape != (self.num_rows, self.dim) or self.memmap.dtype != np.float32:
                    raise ValueError(
                        f"latent memmap {path} holds {self.memmap.shape} {self.memmap.dtype}, expected "
                        f"({self.num_rows}, {self.dim}) float32: delete it or choose another latent_memmap"
                    )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.memmap = open_memmap(path, mode="w+", dtype=np.float32, shape=(self.num_rows, self.dim))

    def _check(self, index: torch.Tensor) -> None:
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_rows):
            raise ValueError(
                f"image index {int(index.max())} outside the latent table (N={self.num_rows}): num_images "
                "must equal the train-split length (batch['index'] counts positions within the split)"
            )

    def gather(self, index: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """Copy of rows ``index`` (a new tensor, not a view). Shape: ``(B,) -> (B, dim)``."""
        self._check(index)
        if self.memmap is None:
            return self.weight[index.to(self.weight.device)].clone()
        rows = torch.from_numpy(np.ascontiguousarray(self.memmap[index.cpu().numpy()]))
        return rows.to(device if device is not None else "cpu")

    def scatter(self, index: torch.Tensor, rows: torch.Tensor) -> None:
        """Write rows back (later duplicates win). Shape: ``(B,), (B, dim)``."""
        self._check(index)
        if self.memmap is None:
            self.weight[index.to(self.weight.device)] = rows.detach().to(self.weight.dtype)
        else:
            self.memmap[index.cpu().numpy()] = rows.detach().float().cpu().numpy()

    def fill(self, values: torch.Tensor) -> None:
        """Overwrite the whole table. Shape: ``(N, dim)``."""
        if tuple(values.shape) != (self.num_rows, self.dim):
            raise ValueError(f"fill expects ({self.num_rows}, {self.dim}), got {tuple(values.shape)}")
        if self.memmap is None:
            self.weight.copy_(values)
        else:
            self.memmap[:] = values.detach().float().cpu().numpy()
            self.memmap.flush()

    def all(self) -> torch.Tensor:
        return self.weight if self.memmap is None else torch.from_numpy(np.asarray(self.memmap))

    def extra_repr(self) -> str:
        where = f"memmap={self.memmap_path}" if self.memmap is not None else "buffer"
        return f"num_rows={self.num_rows}, dim={self.dim}, {where}"


class _TableModule(PriorModule):
    """Shared machinery of GLO and LCM: the latent table, its sparse SGD row update, the generator
    optimiser, and ``num_images`` filled from ``trainer.datamodule.num_train`` in ``setup``."""

    def __init__(self, channels: int, resolution: int, sample_every_n_steps: int, *quality: int):
        super().__init__(channels, resolution, sample_every_n_steps, *quality)
        self.table: LatentTable | None = None
        # DDP must not broadcast rank 0's table each step: every rank applies every rank's row updates
        self._ddp_params_and_buffers_to_ignore = ["table.weight"]
        self.register_buffer("table_initialised", torch.zeros((), dtype=torch.bool))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    # to be provided by subclasses
    latent_dim: int

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # a memmapped table is not in the checkpoint: put its rows on disk with it. It always holds
        # the newest rows, so resuming from an OLDER checkpoint pairs older weights with newer latents.
        if self.table is not None and self.table.memmap is not None:
            self.table.memmap.flush()

    def init_table(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def project(self, rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        """Generator output in [-1, 1] for latent rows."""
        raise NotImplementedError

    def _build_table(self, n: int) -> None:
        # DDP with a memmap: rank 0 creates (or reopens) the shared file first, the others then reopen it
        first = not (self.hparams.latent_memmap and is_distributed()) or torch.distributed.get_rank() == 0
        if first:
            self.table = LatentTable(n, self.latent_dim, self.hparams.latent_memmap)
            if self.table.created:  # a reopened memmap keeps its (trained) rows
                self.table.fill(self.init_table(n))
        if self.hparams.latent_memmap and is_distributed():
            torch.distributed.barrier()
            if not first:
                self.table = LatentTable(n, self.latent_dim, self.hparams.latent_memmap)

    def setup(self, stage: str) -> None:
        if self.table is not None:
            return
        n = self.hparams.num_images
        if n is None and stage != "fit":
            return  # validate/test/predict: a checkpoint's table is built by load_state_dict
        if n is None:
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            n = getattr(dm, "num_train", None)
            if n is None:
                raise ValueError(
                    f"{type(self).__name__}: num_images is None and the trainer has no datamodule with "
                    "`num_train`: pass num_images (the train-split length)"
                )
            self.hparams.num_images = int(n)
        self._build_table(int(n))
        self.table.to(self.device)

    def configure_optimizers(self):
        hp = self.hparams
        params = list(self.generator.parameters())
        if hp.optimizer == "sgd":
            return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum)
        if hp.optimizer == "adam":
            return torch.optim.Adam(params, lr=hp.lr, betas=tuple(hp.betas))
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {hp.optimizer!r}")

    def reconstruction_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Lap-L1 + mse_weight * MSE of the batch's reconstructions (LCM eq. 2 / GLO).

        Returns the loss and the gathered latent rows (a leaf that receives the gradient).
        """
        x = from_unit(self._check_batch(batch))
        index = batch["index"]
        rows = self.table.gather(index, x.device).requires_grad_(True)
        out = self.decode(rows)
        loss = lap_l1(out, x, self.hparams.levels) + self.hparams.mse_weight * F.mse_loss(out, x)
        return loss, rows

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, rows = self.reconstruction_loss(batch)
        self._pending = (batch["index"], rows)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def update_rows(self, index: torch.Tensor, rows: torch.Tensor) -> None:
        """Plain SGD step on the batch's latent rows, then projection, written back to the table.

        The loss is a batch mean, so the gradient is scaled by the batch size: each row steps on its
        own image's loss with rate ``latent_lr`` whatever the batch size.
        """
        if rows.grad is None:
            index, new = index[:0], rows[:0].detach()
        else:
            new = self.project(rows - self.hparams.latent_lr * rows.shape[0] * rows.grad)
        if is_distributed():  # DDP: every rank writes every rank's rows, so the tables stay identical
            index, new = gather_rows(index.to(new.device)), gather_rows(new)
        if index.numel():
            self.table.scatter(index, new)

    def on_after_backward(self) -> None:
        # the latent step + projection of the batch, as soon as its rows have their gradient: done before
        # the batch's callbacks run, so a checkpoint saved at this step (ModelCheckpoint's
        # on_train_batch_end) holds the updated rows (it lost them when the step ran in on_train_batch_end)
        if self._pending is not None:
            self.update_rows(*self._pending)
            self._pending = None
        super().on_after_backward()

    def sampling_prior(self) -> Prior:
        prior = self.to_prior()
        if self.table is not None and self.table.num_rows >= 2:  # like load_prior: a Gaussian fit (GLO)
            prior.fit_latent_distribution(self.table.all().to(self.device).view(-1, *prior.latent_shape))
        return prior

    def sample_images(self, n: int) -> torch.Tensor:
        k = min(n // 2, self.table.num_rows) if self.table is not None else 0
        rows = self.table.gather(torch.arange(k), self.device).to(self.device) if k else None
        g = torch.Generator().manual_seed(self.hparams.seed)
        prior = self.sampling_prior() if n - k else self.to_prior()
        random = prior.sample_latent(n - k, generator=g) if n - k else rows[:0]
        if rows is None:
            rows = random[:0]
        return to_unit(self.decode(torch.cat([rows, random.to(rows)])))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # a checkpoint made after setup holds the table: build it first so that shapes match
        if self.table is None and "table.weight" in state_dict:
            self._build_table(int(state_dict["table.weight"].shape[0]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class GLO(_TableModule):
    """Generative Latent Optimization (Bojanowski et al. 2018): a latent z_i per training image on the
    unit sphere, optimised jointly with the generator under Lap-L1 (+ MSE, as the LCM paper adds).

    Args:
        channels, resolution: image shape (linked from the datamodule by ``python -m lcm``).
        num_images: train-split length N (``None``: taken from ``trainer.datamodule.num_train``).
        latent_dim: d (GLO paper: 100 on small images; 64 by default here).
        width, norm: generator size and normalisation.
        pca_init: initialise z_i from the PCA of the training images (GLO paper), else random.
        latent_lr: SGD rate of the latent rows (per-image loss, see :meth:`update_rows`).
        optimizer, lr, momentum, betas: generator optimiser (``"sgd"`` or ``"adam"``).
        mse_weight, levels: loss = Lap-L1(levels) + mse_weight * MSE.
        latent_memmap: keep the table in this ``.npy`` memmap file instead of memory.
        sample_every_n_steps, seed: sample grids; seed of the initial/random latents.
        val_fit_steps, val_fd_images: validation / test quality measures (see :class:`WGANGP`).
    """

    kind = "glo"

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        num_images: int | None = None,
        latent_dim: int = 64,
        width: int = 64,
        norm: Literal["batch", "instance", "none"] = "batch",
        pca_init: bool = True,
        latent_lr: float = 1.0,
        optimizer: Literal["sgd", "adam"] = "adam",
        lr: float = 1e-3,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.5, 0.999),
        mse_weight: float = 1.0,
        levels: int | None = None,
        latent_memmap: str | None = None,
        sample_every_n_steps: int = 500,
        seed: int = 0,
        val_fit_steps: int = 30,
        val_fd_images: int = 256,
    ):
        super().__init__(channels, resolution, sample_every_n_steps, val_fit_steps, val_fd_images)
        self.save_hyperparameters()
        self.latent_dim = latent_dim
        self.generator = Generator((latent_dim,), channels, resolution, width, 0, norm)
        if num_images is not None:
            self._build_table(num_images)

    def init_table(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.hparams.seed)
        return self.project(torch.randn(n, self.latent_dim, generator=g))

    def project(self, rows: torch.Tensor) -> torch.Tensor:
        return rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        return self.generator(rows)

    def on_train_start(self) -> None:
        # PCA initialisation (GLO paper sec. 3.3) once, never on resume (the flag is in the checkpoint)
        if self.hparams.pca_init and not bool(self.table_initialised):
            self.pca_initialise(self.trainer.train_dataloader)
        self.table_initialised.fill_(True)

    @torch.no_grad()
    def pca_initialise(self, loader) -> None:
        """Set z_i to the normalised projection of image i on the first ``latent_dim`` principal axes."""
        from sklearn.decomposition import PCA

        n = self.table.num_rows
        flat = np.zeros((n, math.prod(self.image_shape)), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        for batch in loader:  # under DDP each rank reads its shard and gathers the others'
            index, images = batch["index"].to(self.device), batch["image"].flatten(1).to(self.device)
            idx = gather_rows(index).cpu().numpy()
            if idx.max() >= n:
                raise ValueError(f"image index {idx.max()} >= num_images {n}")
            flat[idx] = gather_rows(images).cpu().numpy()
            seen[idx] = True
        if seen.sum() < 2:
            return
        k = min(self.latent_dim, int(seen.sum()), flat.shape[1])
        proj = PCA(n_components=k, random_state=self.hparams.seed).fit(flat[seen]).transform(flat[seen])
        table = self.table.all().clone().cpu()
        z = table[torch.from_numpy(seen)] * 1e-3  # dimensions beyond the PCA rank: small random
        z[:, :k] = torch.from_numpy(proj).float()
        table[torch.from_numpy(seen)] = self.project(z)
        self.table.fill(table.to(self.table.all().device))

    def to_prior(self) -> Prior:
        return Prior(self.generator, "sphere", (self.latent_dim,), self.image_shape, kind=self.kind)


class LCM(_TableModule):
    """Latent Convolutional Model (LCM paper eqs. 1-2): x_i ~ g_theta(f_phi_i(s)).

    Per image a small latent ConvNet f with parameters phi_i in the box [-B, B] (eq. 1) maps the
    fixed uniform noise s to the generator's input map; phi_i and theta minimise Lap-L1 + MSE
    (eq. 2) with vanilla SGD (sec. 2; the paper gives no learning rates, ours are tuned for CPU).
    The box constraint is applied in the same step that updates phi (after every step).

    Args:
        channels, resolution: image shape (linked from the datamodule by ``python -m lcm``).
        num_images: train-split length N (``None``: taken from ``trainer.datamodule.num_train``).
        latent_shape: generator input map (Cz, Hz, Wz).
        noise_shape: the fixed noise s (Cs, Hs, Ws); Hz / Hs must be a power of two.
        hidden: hidden channel counts of f.
        box: B (0.01 in the paper).
        width, norm: generator size and normalisation.
        latent_lr: SGD rate of phi (per-image loss). optimizer, lr, momentum, betas: generator.
        mse_weight, levels: loss = Lap-L1(levels) + mse_weight * MSE.
        latent_memmap: keep the (N, n_phi) table in this ``.npy`` memmap file instead of memory.
        noise_seed: seed of s. seed: seed of the initial phi (uniform in the box).
        val_fit_steps, val_fd_images: validation / test quality measures (see :class:`WGANGP`).
    """

    kind = "lcm"

    def __init__(
        self,
        channels: int = 1,
        resolution: int = 32,
        num_images: int | None = None,
        latent_shape: tuple[int, int, int] = (16, 8, 8),
        noise_shape: tuple[int, int, int] = (8, 4, 4),
        hidden: tuple[int, ...] = (16, 16),
        box: float = 0.01,
        width: int = 64,
        norm: Literal["batch", "instance", "none"] = "batch",
        latent_lr: float = 1e-3,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.5, 0.999),
        mse_weight: float = 1.0,
        levels: int | None = None,
        latent_memmap: str | None = None,
        noise_seed: int = 0,
        sample_every_n_steps: int = 500,
        seed: int = 0,
        val_fit_steps: int = 30,
        val_fd_images: int = 256,
    ):
        super().__init__(channels, resolution, sample_every_n_steps, val_fit_steps, val_fd_images)
        self.save_hyperparameters()
        self.latent_net = LatentConvNet(tuple(noise_shape), tuple(latent_shape), tuple(hidden), box)
        self.latent_dim = self.latent_net.num_params
        self.box = float(box)
        self.generator = Generator(tuple(latent_shape), channels, resolution, width, 0, norm)
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise", torch.rand(tuple(noise_shape), generator=g))
        if num_images is not None:
            self._build_table(num_images)

    def init_table(self, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.hparams.seed)
        return (torch.rand(n, self.latent_dim, generator=g) * 2 - 1) * self.box

    def project(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.clamp(-self.box, self.box)

    def decode(self, rows: torch.Tensor) -> torch.Tensor:
        return self.generator(self.latent_net(rows, self.noise))

    def to_prior(self) -> Prior:
        return Prior(
            self.generator,
            "convnet",
            (self.latent_dim,),
            self.image_shape,
            latent_net=self.latent_net,
            noise=self.noise,
            box=self.box,
            kind=self.kind,
        )


MODULES: dict[str, type[PriorModule]] = {"wgangp": WGANGP, "glo": GLO, "lcm": LCM}
