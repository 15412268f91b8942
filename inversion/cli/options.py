"""The user's options of ``python -m inversion`` (one flag each) and the checks that run before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # resolved by the parser (jsonargparse reads this block); --help needs no torch
    from inversion.operators import Operator

__all__ = ["RestoreOptions"]


@dataclass
class RestoreOptions:
    """Restore the images of ``input`` and write restorations, degraded inputs, grid and metrics.

    Args:
        prior: checkpoint path, a named prior (``lcm.list_priors()``, e.g. ``dcgan-faces-64``), or the
            name of a registered prior factory (``inversion.cli.prior``; a config cannot name other code
            to run).
        operator: the forward model (``class_path`` + ``init_args`` in YAML, see configs/inversion/).
        input: a folder of images, ``fashion_mnist`` / ``emoji`` (their test split), ``faces`` (real face
            photos, :mod:`datamodules.faces`) or ``prior_samples`` (held-out samples of the prior,
            :mod:`inversion.cli.samples`; the in-range set).
        output: output folder (created; an existing one is resumed).
        method: ``csgm``, ``csgm_bp``, ``iagan``, ``iagan_bp``, ``latent``, ``latent_bp``, ``dgp``,
            ``dgp_bp`` (and other registered plug-ins; see ``inversion.methods.available_methods``).
        task: task name for metrics.csv (default: the operator's class name).
        limit: restore only ``limit`` (>= 1) images: a folder's first (by relative path), or a seeded
            subsample of a built-in split. A resumed run may raise it.
        recursive: also restore the images in the input folder's sub-folders (outputs keep the
            sub-folder path); without it they are skipped with a note saying how many.
        seed: base seed of the latent starts (image i: seed + i).
        noise_seed: base seed of the measurement noise (image i: noise_seed + i).
        options: overrides of the method's config, e.g. ``{csgm_steps: 300, restarts: 3}``
            (``MethodConfig``; DGP: ``inversion.dgp.DGPConfig``, e.g. ``{preset: sr_mse}``).
        critic: the discriminator file of a published generator (BigGAN: ``--prior G_ema.pth --critic
            D.pth``; DGP's loss reads its features).
        labels: CSV of ``file,class`` rows for a class-conditional prior (strict, see
            ``inversion.cli.labels``); images without a class are given one as DGP picks it (best of
            ``label_candidates`` random latent/class candidates). The classes used are written to
            ``labels.csv`` in the output folder.
        devices: number of processes to split the images over (started through
            ``torch.distributed.run``; ignored inside a torchrun / SLURM world).
        shard: restore only images with ``index % num_shards == shard`` (set by the launcher; normally
            left alone).
        num_shards: the number of shards (see ``shard``).
        device: ``auto`` (CUDA when available, one GPU per process), ``cpu``, or ``cuda:k``.
        num_threads: torch intra-op threads per process (None: torch's default).
        batch_size: images restored together (one batched fit; results do not depend on it, up to
            floating-point rounding), or ``auto``: picked from the model size and the free memory
            (:mod:`inversion.cli.batch`; the pick is printed). Operators with per-image masks go one image
            at a time.
        progress: show a progress bar.
        degraded: the input folder holds measurements as a user has them (one file per image; the
            operator says what they are, :mod:`inversion.cli.degraded`), not clean images to degrade.
        masks: with ``degraded``, inpainting: a folder of mask files matched by relative name, or one
            mask file for every image (white = pixels to fill).
        truth: with ``degraded``, a folder of ground-truth images (same relative names) for PSNR / SSIM.
        wait_timeout: seconds a rank waits for the others in a collective (torchrun / SLURM /
            ``--devices``), or shard 0 for the other shards' records (``--shard``).
    """

    prior: str
    operator: Operator
    input: str = "fashion_mnist"
    output: str = "outputs/inversion"
    method: str = "csgm"
    task: str | None = None
    limit: int | None = None
    recursive: bool = False
    seed: int = 0
    noise_seed: int = 0
    options: dict | None = None
    critic: str | None = None
    labels: str | None = None
    devices: int = 1
    shard: int | None = None
    num_shards: int = 1
    device: str = "auto"
    num_threads: int | None = None
    batch_size: int | Literal["auto"] = 16
    progress: bool = True
    wait_timeout: float = 3600.0
    degraded: bool = False
    masks: str | None = None
    truth: str | None = None

    def check(self) -> None:
        """What is wrong with the options alone fails here, before the prior or any image is read."""
        from inversion.methods import available_methods, method_config

        if self.method not in available_methods():
            raise ValueError(f"method must be one of {available_methods()}, got {self.method!r}")
        method_config(self.method, self.options)  # a typo or a bad value fails here, not once per image
        if self.devices < 1 or self.num_shards < 1:
            raise ValueError("devices and num_shards must be >= 1")
        size = self.batch_size
        if size != "auto" and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"--batch_size must be a positive number of images or 'auto', got {size!r}")
        threads = self.num_threads
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"--num_threads must be >= 1 (or left out for torch's default), got {threads}")
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
            raise ValueError(
                f"--limit must be a positive number of images (or left out for all), got {limit}"
            )
        self._check_degraded()

    def _check_degraded(self) -> None:
        from inversion.cli.items import BUILTIN

        if not self.degraded:
            if self.masks is not None or self.truth is not None:
                raise ValueError("--masks and --truth need --degraded true (a folder of measurements)")
            return
        if self.input in BUILTIN or not Path(self.input).is_dir():
            raise ValueError(
                f"--degraded true reads a folder of measurement files; --input {self.input!r} is not one "
                "(a built-in split holds clean images: leave --degraded out to degrade them)"
            )
        for flag, path in (("--masks", self.masks), ("--truth", self.truth)):
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(f"{flag} {path!r} does not exist")
        if self.truth is not None and not Path(self.truth).is_dir():
            raise ValueError(f"--truth {self.truth!r} must be a folder of images named as the inputs")

    def excluded(self) -> tuple[Path, ...]:
        """Folders never read as inputs: the output folder when it lies inside the input folder."""
        from inversion.cli.items import BUILTIN

        out = Path(self.output)
        if self.input in BUILTIN or not Path(self.input).is_dir():
            return ()
        src, dst = Path(self.input).resolve(), out.resolve()
        if dst == src:
            raise ValueError(
                f"--output {self.output!r} is the input folder itself: its grid and restorations would be "
                "read back as inputs; choose another folder (a sub-folder of the input is fine)"
            )
        return (out,) if dst.is_relative_to(src) else ()
