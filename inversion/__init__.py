"""Restoration by inverting learned priors: operators, metrics, the stage engine and the methods.

Light on import: ``import inversion.operators`` does not pull Lightning; the engine and the methods
load on first use (``inversion.restore``, ``inversion.Stage``, ...).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "restore": "inversion.methods",
    "RestoreResult": "inversion.methods",
    "MethodConfig": "inversion.methods",
    "available_methods": "inversion.methods",
    "get_method": "inversion.methods",
    "register_method": "inversion.methods",
    "Stage": "inversion.stages",
    "run_stages": "inversion.engine",
    "InversionModule": "inversion.engine",
    "FitResult": "inversion.engine",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inversion' has no attribute {name!r}")
