"""``load_prior``: any checkpoint written by lcm's LightningModules -> :class:`lcm.Prior`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lcm.prior import Prior


def _read_checkpoint(path: Path, map_location) -> dict:
    from lcm.checkpoints import read_torch_file

    ckpt = read_torch_file(path, "prior checkpoint", map_location)
    if not isinstance(ckpt, dict):
        raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a Lightning checkpoint of lcm")
    return ckpt


def _trained_latents(state: dict, memmap: str | None, path: Path) -> torch.Tensor | None:
    """The per-image latent table of a GLO/LCM checkpoint (in the state dict or its memmap file)."""
    if "table.weight" in state:
        return state["table.weight"].float()
    if memmap and Path(memmap).is_file():
        import numpy as np

        return torch.from_numpy(np.load(memmap, mmap_mode="r").astype(np.float32))
    if memmap:
        import warnings

        warnings.warn(
            f"{str(path)!r}: latent memmap {memmap!r} not found; sampling falls back to the uniform "
            "latent set (pass the .npy next to the checkpoint to sample like the training data)",
            stacklevel=3,
        )
    return None


def load_prior(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    image_shape: tuple[int, ...] | None = None,
    critic: str | os.PathLike | None = None,
    **stylegan2_options,
) -> Prior:
    """Load a WGAN-GP, GLO or LCM checkpoint (from ``python -m lcm fit``) as a :class:`Prior` (eval mode).

    Args:
        path: a ``.ckpt`` written by :class:`lcm.WGANGP`, :class:`lcm.GLO` or :class:`lcm.LCM`.
        map_location: device for the weights.
        image_shape: if given, ``(C, H, W)`` or ``(B, C, H, W)`` of the images the prior will be used
            on; a mismatch with the generator raises ValueError.
        critic: for a published generator (a BigGAN ``G_ema.pth`` state dict, see
            :mod:`lcm.architectures.biggan`), its discriminator's file (``D.pth``); lcm checkpoints carry
            their critic and take none.
        **stylegan2_options: a StyleGAN2-ADA snapshot ``.pkl`` (or, with ``config=``, a ``G_ema``
            state-dict file) is read by :func:`lcm.architectures.snapshot.load_stylegan2_prior`
            without executing it; options ``truncation_psi``, ``config``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: truncated/corrupt file, a checkpoint of another kind, or an image-shape mismatch.
    """
    import lcm.autoencoder  # noqa: F401 - registers the "ae" kind in MODULES
    from lcm.checkpoints import sniff
    from lcm.modules import FORMAT_VERSION, MODULES

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prior checkpoint {str(path)!r} does not exist (or is not a file)")
    # by content, not by name: a Lightning .ckpt renamed .pkl is a zip archive, a snapshot is a pickle
    if critic is not None and not Path(critic).is_file():
        raise FileNotFoundError(f"critic {str(critic)!r} does not exist (or is not a file)")
    if (path.suffix == ".pkl" and sniff(path) != "zip") or stylegan2_options:
        from lcm.architectures.snapshot import load_stylegan2_prior

        if critic is not None:
            raise ValueError(
                f"critic={str(critic)!r} cannot be used with the StyleGAN2 prior {str(path)!r}: a snapshot "
                "carries its own discriminator D (used as the critic); drop critic=, or pass a snapshot "
                "whose D you want"
            )

        prior = load_stylegan2_prior(path, map_location, **stylegan2_options)
        if image_shape is not None:
            prior.check_image_shape(image_shape)
        return prior
    ckpt = _read_checkpoint(path, map_location)
    from lcm.architectures import biggan

    if biggan.is_biggan_generator_state(ckpt):
        prior = biggan.load_biggan_prior(path, critic, map_location, state=ckpt)
        if image_shape is not None:
            prior.check_image_shape(image_shape)
        return prior
    if critic is not None:
        raise ValueError(
            f"critic={str(critic)!r} is for published generators (BigGAN G_ema.pth); {str(path)!r} is "
            "not one (lcm checkpoints carry their own critic: drop critic=)"
        )
    kind = ckpt.get("genprior_kind")
    if kind is None:
        what = (
            "a Lightning checkpoint of another model"
            if "state_dict" in ckpt
            else "not a Lightning checkpoint"
        )
        if biggan.is_biggan_discriminator_state(ckpt):
            what = "a BigGAN discriminator (pass it as critic=, the G_ema.pth as the prior)"
        raise ValueError(
            f"{str(path)!r} is {what}: it has no 'genprior_kind' entry; load_prior reads checkpoints "
            f"written by {', '.join(c.__name__ for c in MODULES.values())} (python -m lcm fit) and BigGAN "
            "generator state dicts (DGP's G_ema.pth)"
        )
    if kind not in MODULES:
        raise ValueError(
            f"{str(path)!r} is a genprior checkpoint of unknown kind {kind!r}; known: {list(MODULES)}"
        )
    if ckpt.get("genprior_format", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} was written by a newer genprior (format {ckpt['genprior_format']})")
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    # the prior needs no per-image latent table: build the module without it
    hparams.pop("num_images", None)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("table.")}
    memmap = hparams.pop("latent_memmap", None)
    try:  # a checkpoint relabelled with another kind fits neither that kind's hparams nor its weights
        module = MODULES[kind](**hparams)
        module.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(
            f"{str(path)!r} says it is a {kind!r} checkpoint, but its hyper-parameters or weights are not "
            f"those of {MODULES[kind].__name__} (was 'genprior_kind' edited?): {err}"
        ) from err
    prior = module.to_prior().to(map_location).eval()
    table = _trained_latents(ckpt["state_dict"], memmap, path)
    if table is not None and prior.latent_kind in ("sphere", "convnet"):
        prior.fit_latent_distribution(table.view(-1, *prior.latent_shape))
    if image_shape is not None:
        prior.check_image_shape(image_shape)
    return prior
