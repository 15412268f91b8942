"""Learned image priors: networks, prior-training LightningModules (WGAN-GP, GLO, LCM), losses, loading
(``load_prior``), published architectures (:mod:`lcm.architectures`), DDP collectives of the training
modules (:mod:`lcm.collectives`) and a toy prior for tests and smoke runs (:mod:`lcm.toy`).

Every name is imported lazily (``lcm.GLO``, ``lcm.load_prior`` etc.), so ``import lcm`` imports no torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "load_prior": "lcm.loading",
    "list_priors": "lcm.pretrained",
    "register_prior": "lcm.pretrained",
    "Prior": "lcm.prior",
    "from_unit": "lcm.prior",
    "to_unit": "lcm.prior",
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

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lcm' has no attribute {name!r}")
