"""``--prior``: a checkpoint file (``lcm.load_prior``) or a ``package.module:factory`` returning a prior."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from lcm.prior import Prior

__all__ = ["load_prior_spec"]


def load_prior_spec(spec: str, device: str | torch.device = "cpu", critic: str | None = None) -> Prior:
    """A prior from a checkpoint path (``lcm.load_prior``; ``critic``: a published generator's
    discriminator file, e.g. BigGAN's D.pth) or a ``module:factory`` returning one."""
    if Path(spec).is_file():
        from lcm import load_prior

        return load_prior(spec, map_location=device, critic=critic).eval()
    if critic is not None:
        raise ValueError(f"--critic {critic!r} needs --prior to be a generator file, got {spec!r}")
    if ":" in spec and not spec.endswith((".ckpt", ".pt", ".pth")):
        mod, _, fn = spec.partition(":")
        prior = getattr(importlib.import_module(mod), fn)()
        if not isinstance(prior, Prior):
            raise ValueError(f"prior factory {spec!r} returned {type(prior).__name__}, not an lcm.Prior")
        return prior.to(device).eval()
    raise FileNotFoundError(
        f"prior {spec!r}: no such checkpoint file; pass a checkpoint from `python -m lcm fit`, a BigGAN "
        "G_ema.pth (with --critic D.pth) or a factory 'package.module:function' that returns an lcm.Prior"
    )
