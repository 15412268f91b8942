"""``load_prior``: a checkpoint of a registered architecture (:mod:`lcm.architectures`) -> :class:`Prior`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lcm.prior import Prior


def load_prior(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    image_shape: tuple[int, ...] | None = None,
    critic: str | os.PathLike | None = None,
    **options,
) -> Prior:
    """Load a checkpoint as a :class:`Prior` (eval mode): the registered architecture that recognises the
    file loads it (:mod:`lcm.architectures.registry`; an unrecognised file fails listing them).

    Args:
        path: a ``.ckpt`` written by :class:`lcm.WGANGP`, :class:`lcm.GLO`, :class:`lcm.LCM` or
            :class:`lcm.AutoEncoder` (``python -m lcm fit``), a BigGAN ``G_ema.pth``, a StyleGAN2-ADA
            snapshot ``.pkl``, a PyTorch DCGAN-tutorial state dict, ...
            (``lcm.architectures.available_architectures()``), or a registered name
            (``lcm.list_priors()``, e.g. ``"dcgan-faces-64"``; :func:`lcm.register_prior` adds one).
        map_location: device for the weights.
        image_shape: if given, ``(C, H, W)`` or ``(B, C, H, W)`` of the images the prior will be used
            on; a mismatch with the generator raises ValueError.
        critic: for a published generator (a BigGAN ``G_ema.pth`` state dict, see
            :mod:`lcm.architectures.biggan`), its discriminator's file (``D.pth``); lcm checkpoints carry
            their critic and take none.
        **options: the architecture's own options, e.g. StyleGAN2-ADA's ``truncation_psi`` and
            ``config`` (a ``G_ema`` state-dict file's generator kwargs); one the recognised
            architecture does not take fails naming its options.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: truncated/corrupt file, a file no architecture recognises, an option the
            architecture does not take, or an image-shape mismatch.
    """
    from lcm.architectures.registry import load_checkpoint

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"prior must be a checkpoint path or a registered name (lcm.list_priors()), got a "
            f"{type(path).__name__}"
        )
    from lcm.pretrained import check_not_shadowed, is_registered, list_priors, resolve_prior

    # a string that can be a name (no suffix, no folder) and is registered: that prior (a file of the same
    # name in the current folder is refused as ambiguous, not loaded in its place)
    if isinstance(path, str) and not Path(path).suffix and os.sep not in path:
        if is_registered(path):
            check_not_shadowed(path)
            path, named_critic = resolve_prior(path)
            critic = critic if critic is not None else named_critic
        elif not Path(path).exists():
            raise FileNotFoundError(
                f"prior {path!r} is neither a file nor a registered name; names: {sorted(list_priors())} "
                "(lcm.register_prior adds one)"
            )
    options = dict(options)
    if critic is not None:
        options["critic"] = critic
    prior = load_checkpoint(path, map_location, **options)
    if image_shape is not None:
        prior.check_image_shape(image_shape)
    return prior
