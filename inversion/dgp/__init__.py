"""Deep Generative Prior (Pan et al. 2020) as its released code runs it (``variant='faithful'``, default)
or on the stage engine (``variant='fast'``): critic feature-matching loss (eq. 3), best-of-N start,
progressive generator fine-tuning with optional BN->IN swap, colorization output, manipulation
(jitter, morphing, category transfer) and defence. Importing it registers ``restore(method="dgp")``.
"""

from inversion.dgp.faithful import run_faithful, score_candidates
from inversion.dgp.init import CandidateInit, candidate_pool, sample_labels, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE, to_image_grid
from inversion.dgp.manipulation import category_transfer, jitter, morph
from inversion.dgp.method import (
    DEFAULT_STAGES,
    DGPConfig,
    DGPFit,
    dgp,
    fit_dgp,
    load_preset,
    scaled_options,
    script_stages,
)
from inversion.dgp.operators import dgp_operator
from inversion.methods import register_method

dgp.selects_labels = True  # its best-of-N start picks unknown classes itself (DGP appendix B)
register_method("dgp", dgp, DGPConfig)

__all__ = [
    "DEFAULT_STAGES",
    "CandidateInit",
    "CriticFeatureLoss",
    "DGPConfig",
    "DGPFit",
    "MeasurementMSE",
    "candidate_pool",
    "category_transfer",
    "dgp",
    "dgp_operator",
    "fit_dgp",
    "jitter",
    "load_preset",
    "morph",
    "run_faithful",
    "scaled_options",
    "score_candidates",
    "script_stages",
    "sample_labels",
    "select_latents",
    "to_image_grid",
]
