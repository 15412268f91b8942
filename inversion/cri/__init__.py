"""CRI: Clustering & Regularised Inversion (Wang et al., AAAI 2023) on the inversion stage engine.

``restore(..., method="cri")`` (and ``"cri_bp"``) runs :func:`cri` with :class:`CRIConfig` as its options
(registered by :mod:`inversion.cri.method`). Pieces: :mod:`~inversion.cri.clustering` (KMeans centroids of
the prior's codes, cached), :mod:`~inversion.cri.fit` (distances compared in measurement space, start point,
regularised offset, pivotal tuning; the distances themselves: :mod:`inversion.metrics.perceptual`),
:mod:`~inversion.cri.classifier` (class inference for conditional priors; ``python -m
inversion.cri.classifier fit -c configs/inversion/cri/classifier.yaml``). CRI Fig. 5 / Table 4 are
measured by ``python -m benchmarks.cri`` (in a checkout).
"""

from inversion.cri.clustering import clear_memory_cache, cluster_centroids, prior_fingerprint, sample_codes
from inversion.cri.fit import (
    CRIConfig,
    OffsetPrior,
    cri,
    locality_term,
    make_distance,
    measurement_view,
    perceptual_term,
    resolve_labels,
    select_centroids,
)
from inversion.metrics.perceptual import FeatureDistance

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
