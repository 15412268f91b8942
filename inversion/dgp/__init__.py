"""Deep Generative Prior (Pan et al. 2020) as its released code runs it (``variant='faithful'``, default:
:mod:`~inversion.dgp.faithful`, DGP's degradations in :mod:`~inversion.dgp.operators`) or on the stage
engine (``variant='fast'``): critic feature-matching loss (eq. 3), best-of-N start,
progressive generator fine-tuning with optional BN->IN swap (schedules: :mod:`~inversion.dgp.schedule`),
colorization output, manipulation (jitter, morphing, category transfer: the library
:mod:`~inversion.dgp.manipulation`, its command line ``python -m inversion.dgp.manipulation_cli``) and
defence. ``restore(method="dgp")`` is registered by :mod:`inversion.methods.dgp`.
"""

from inversion.dgp.faithful import fit_faithful, score_candidates
from inversion.dgp.fit import (
    DEFAULT_STAGES,
    DGPConfig,
    DGPFit,
    fit_dgp,
    load_preset,
    scaled_options,
    script_stages,
)
from inversion.dgp.init import CandidateInit, candidate_pool, sample_labels, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE, PerceptualLoss, to_image_grid
from inversion.dgp.manipulation import category_transfer, jitter, morph
from inversion.dgp.operators import dgp_operator
from inversion.dgp.schedule import schedule_to_stages

__all__ = [
    "DEFAULT_STAGES",
    "CandidateInit",
    "CriticFeatureLoss",
    "DGPConfig",
    "DGPFit",
    "MeasurementMSE",
    "PerceptualLoss",
    "candidate_pool",
    "category_transfer",
    "dgp_operator",
    "fit_dgp",
    "fit_faithful",
    "jitter",
    "load_preset",
    "morph",
    "scaled_options",
    "score_candidates",
    "script_stages",
    "sample_labels",
    "schedule_to_stages",
    "select_latents",
    "to_image_grid",
]
