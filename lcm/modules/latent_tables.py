"""Per-image latent tables (:class:`LatentTable`) and the priors trained with them: GLO (Bojanowski et al.
2018) and LCM (Athar et al. 2019)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lcm.collectives import gather_rows, is_distributed
from lcm.losses import lap_l1
from lcm.modules.base import PriorModule
from lcm.networks import Generator, LatentConvNet
from lcm.prior import Prior, from_unit, to_unit


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
