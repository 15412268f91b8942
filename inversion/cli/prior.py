"""``--prior`` of the CLIs: a checkpoint file, a named prior (``lcm.list_priors()``), or the name of a
registered prior factory.

A config or command line must not be able to name code to run: ``prior: "os:getpid"`` used to import
``os`` and call ``getpid``. A ``package.module:function`` spec is now only a *name* looked up in
:data:`PRIOR_FACTORIES`; nothing is imported unless the name is registered there. Python code adds its
own factories with :func:`register_prior_factory` before calling ``restore_folder`` / ``main``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import torch

from lcm.prior import Prior

__all__ = ["PRIOR_FACTORIES", "load_prior_spec", "register_prior_factory"]

# name -> (module, function), imported only when the name is asked for
_BUILTIN = {"lcm.toy:tiny_prior": ("lcm.toy", "tiny_prior")}
PRIOR_FACTORIES: dict[str, Callable[[], Prior]] = {}


def register_prior_factory(name: str, factory: Callable[[], Prior]) -> None:
    """Make ``--prior name`` call ``factory()`` (which returns an :class:`lcm.Prior`)."""
    if not callable(factory):
        raise TypeError(f"prior factory {name!r} must be callable")
    PRIOR_FACTORIES[name] = factory


def _factory(spec: str) -> Callable[[], Prior] | None:
    if spec in PRIOR_FACTORIES:
        return PRIOR_FACTORIES[spec]
    if spec in _BUILTIN:
        mod, fn = _BUILTIN[spec]
        return getattr(importlib.import_module(mod), fn)
    return None


def load_prior_spec(spec: str, device: str | torch.device = "cpu", critic: str | None = None) -> Prior:
    """A prior from a checkpoint path (``lcm.load_prior``; ``critic``: a published generator's
    discriminator file, e.g. BigGAN's D.pth) or a registered factory's name (``lcm.toy:tiny_prior``,
    or one added by :func:`register_prior_factory`).

    Raises:
        FileNotFoundError: neither a file nor a registered factory (nothing is imported or called).
    """
    from lcm.pretrained import is_registered

    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"--prior must be a checkpoint path or a prior's name, got a {type(spec).__name__}")
    spec = str(spec)
    named = not Path(spec).suffix and os.sep not in spec and is_registered(spec)
    # a named prior (lcm.list_priors(); load_prior refuses a same-named file beside it), or a file
    if named or Path(spec).is_file():
        from lcm import load_prior

        return load_prior(spec, map_location=device, critic=critic).eval()
    factory = _factory(spec)
    if factory is None:
        known = sorted({*_BUILTIN, *PRIOR_FACTORIES})
        raise FileNotFoundError(
            f"prior {spec!r}: file not found (no such checkpoint file, and not a registered prior factory: "
            f"{known}); pass a checkpoint from `python -m lcm fit`, a BigGAN G_ema.pth (with --critic "
            "D.pth) or a StyleGAN2 snapshot .pkl. A config cannot name code to run: register a factory in "
            "Python with inversion.cli.prior.register_prior_factory"
        )
    if critic is not None:
        raise ValueError(f"--critic {critic!r} needs --prior to be a generator file, got {spec!r}")
    prior = factory()
    if not isinstance(prior, Prior):
        raise ValueError(f"prior factory {spec!r} returned {type(prior).__name__}, not an lcm.Prior")
    return prior.to(device).eval()
