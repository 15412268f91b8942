"""CRI: Clustering & Regularised Inversion (Wang et al., AAAI 2023) on the inversion stage engine.

Importing this package registers ``restore(..., method="cri")`` (and ``"cri_bp"``) with
:class:`CRIConfig` as its options. Pieces: :mod:`~inversion.cri.clustering` (KMeans centroids of
the prior's codes, cached), :mod:`~inversion.cri.distance` (perceptual distances compared in
measurement space), :mod:`~inversion.cri.method` (start point, regularised offset, pivotal tuning),
:mod:`~inversion.cri.classifier` (class inference for conditional priors; ``python -m
inversion.cri.classifier fit -c configs/inversion/cri/classifier.yaml``). CRI Fig. 5 / Table 4 are
measured by ``python -m benchmarks.cri`` (in a checkout).
"""

from inversion.cri.clustering import clear_memory_cache, cluster_centroids, prior_fingerprint, sample_codes
from inversion.cri.distance import FeatureDistance, make_distance, measurement_view
from inversion.cri.method import (
    CRIConfig,
    OffsetPrior,
    cri,
    locality_term,
    perceptual_term,
    resolve_labels,
    select_centroids,
)
from inversion.methods import register_method

__all__ = [
    "CRIConfig",
    "FeatureDistance",
    "OffsetPrior",
    "clear_memory_cache",
    "cluster_centroids",
    "cri",
    "locality_term",
    "make_distance",
    "measurement_view",
    "perceptual_term",
    "prior_fingerprint",
    "resolve_labels",
    "sample_codes",
    "select_centroids",
]

cri.selects_labels = True  # unknown classes: CRI's own classifier (or a clear error), not DGP's pick
register_method("cri", cri, CRIConfig)
