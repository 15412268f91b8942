"""Deep Generative Prior (Pan et al. 2020): critic feature-matching loss (eq. 3), best-of-N start,
progressive generator fine-tuning with optional BN->IN swap, colorization output, manipulation
(jitter, morphing, category transfer) and defence. ``restore(method="dgp")`` is registered by
:mod:`inversion.methods.dgp`.
"""

from inversion.dgp.fit import DEFAULT_STAGES, DGPConfig, DGPFit, fit_dgp, load_preset
from inversion.dgp.init import CandidateInit, candidate_pool, sample_labels, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE, PerceptualLoss, to_image_grid
from inversion.dgp.manipulation import category_transfer, jitter, morph

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
    "fit_dgp",
    "jitter",
    "load_preset",
    "morph",
    "sample_labels",
    "select_latents",
    "to_image_grid",
]
