"""Deep Generative Prior (Pan et al. 2020) as its released code runs it (``variant='faithful'``, default:
:mod:`~inversion.dgp.faithful`, DGP's degradations in :mod:`~inversion.dgp.operators`) or on the stage
engine (``variant='fast'``): critic feature-matching loss (eq. 3), best-of-N start,
progressive generator fine-tuning with optional BN->IN swap (schedules: :mod:`~inversion.dgp.schedule`),
colorization output, manipulation (jitter, morphing, category transfer: the library
:mod:`~inversion.dgp.manipulation`, its command line ``python -m inversion.dgp.manipulation_cli``) and
defence. ``restore(method="dgp")`` is registered by :mod:`inversion.dgp.method`, its class pick start by
:mod:`inversion.dgp.starts`. Light on import: the names below load on first use.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "CandidateInit": "inversion.dgp.init",
    "CriticFeatureLoss": "inversion.dgp.losses",
    "DEFAULT_STAGES": "inversion.dgp.fit",
    "DGPConfig": "inversion.dgp.fit",
    "DGPFit": "inversion.dgp.fit",
    "MeasurementMSE": "inversion.dgp.losses",
    "PerceptualLoss": "inversion.dgp.losses",
    "candidate_pool": "inversion.dgp.init",
    "category_transfer": "inversion.dgp.manipulation",
    "dgp_operator": "inversion.dgp.operators",
    "fit_dgp": "inversion.dgp.fit",
    "fit_faithful": "inversion.dgp.faithful",
    "jitter": "inversion.dgp.manipulation",
    "load_preset": "inversion.dgp.fit",
    "morph": "inversion.dgp.manipulation",
    "sample_labels": "inversion.dgp.init",
    "scaled_options": "inversion.dgp.fit",
    "schedule_to_stages": "inversion.dgp.schedule",
    "score_candidates": "inversion.dgp.faithful",
    "script_stages": "inversion.dgp.fit",
    "select_latents": "inversion.dgp.init",
    "to_image_grid": "inversion.dgp.losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inversion.dgp' has no attribute {name!r}")
