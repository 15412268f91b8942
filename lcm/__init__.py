"""Learned image priors: networks, prior-training LightningModules (WGAN-GP, GLO, LCM), losses, loading
(``load_prior``), published architectures (:mod:`lcm.architectures`), DDP collectives of the training
modules (:mod:`lcm.collectives`) and a toy prior for tests and smoke runs (:mod:`lcm.toy`).

Networks, modules and losses are imported lazily (``lcm.GLO`` etc.), so ``import lcm`` stays light.
"""

from __future__ import annotations

import importlib

from lcm.loading import load_prior
from lcm.pretrained import list_priors, register_prior
from lcm.prior import Prior, from_unit, to_unit

_LAZY = {
    "Generator": "lcm.networks",
    "Critic": "lcm.networks",
    "MappingNetwork": "lcm.networks",
    "LatentConvNet": "lcm.networks",
    "lap_l1": "lcm.losses",
    "laplacian_pyramid": "lcm.losses",
    "LapL1Loss": "lcm.losses",
    "gradient_penalty": "lcm.losses",
    "PriorModule": "lcm.modules",
    "WGANGP": "lcm.modules",
    "GLO": "lcm.modules",
    "LCM": "lcm.modules",
    "LatentTable": "lcm.modules",
    "AutoEncoder": "lcm.autoencoder",
}

__all__ = ["Prior", "from_unit", "to_unit", "load_prior", "list_priors", "register_prior", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lcm' has no attribute {name!r}")
