"""Solution-space exploration: e-GLASS (latent geometry) and the PULSE-style random-restarts baseline.

Standalone (no Lightning import): works on any ``prior(z, labels) -> [0, 1] images`` and any operator with
``A(x)``. Run the comparison with ``python -m inversion.exploration.benchmark``.
"""

from inversion.exploration.eglass import (
    DirectionSearch,
    EGlass,
    ExplorationResult,
    eligible_top_y,
    explore,
    measurement_distance,
    search_direction,
)
from inversion.exploration.geometry import (
    FeatureDistance,
    LatentGeometry,
    block_lanczos_topk,
    gauss_newton_matvec,
    hessian_matvec,
    jacobian_rows,
    latent_geometry,
    sorted_eigh,
)
from inversion.exploration.plots import image_grid, save_correlation_plot, save_image_grid
from inversion.exploration.restarts import RestartResult, fit_latents, restart_solutions

__all__ = [
    "DirectionSearch",
    "EGlass",
    "ExplorationResult",
    "FeatureDistance",
    "LatentGeometry",
    "RestartResult",
    "block_lanczos_topk",
    "eligible_top_y",
    "explore",
    "fit_latents",
    "gauss_newton_matvec",
    "hessian_matvec",
    "image_grid",
    "jacobian_rows",
    "latent_geometry",
    "measurement_distance",
    "restart_solutions",
    "save_correlation_plot",
    "save_image_grid",
    "search_direction",
    "sorted_eigh",
]
