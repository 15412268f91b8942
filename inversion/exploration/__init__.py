"""Solution-space exploration: e-GLASS (latent geometry) and the PULSE-style random-restarts baseline,
under one feasibility criterion and one distinctness rule.

Standalone (no Lightning import): works on any ``prior(z, labels) -> [0, 1] images`` and any operator with
``A(x)``; ``explore(restore_result, operator, y)`` starts from a fitted solution with its generator. Run the
comparison with ``python -m benchmarks.eglass`` (in a checkout).
"""

from inversion.exploration.criteria import (
    Distinctness,
    Feasibility,
    check_row_independent,
    diversity,
    pairwise_distance,
)
from inversion.exploration.eglass import EGlass, ExplorationResult, explore, start_from
from inversion.exploration.geometry import (
    LatentGeometry,
    block_lanczos_topk,
    gauss_newton_matvec,
    hessian_matvec,
    jacobian_rows,
    latent_geometry,
    sorted_eigh,
)
from inversion.exploration.plots import save_correlation_plot, save_tile_grid
from inversion.exploration.restarts import (
    GeneratorPrior,
    RestartResult,
    fit_solutions,
    fit_start,
    restart_solutions,
)
from inversion.exploration.search import DirectionSearch, eligible_top_y, search_direction

__all__ = [
    "DirectionSearch",
    "Distinctness",
    "EGlass",
    "ExplorationResult",
    "Feasibility",
    "GeneratorPrior",
    "LatentGeometry",
    "RestartResult",
    "block_lanczos_topk",
    "check_row_independent",
    "diversity",
    "eligible_top_y",
    "explore",
    "fit_solutions",
    "fit_start",
    "gauss_newton_matvec",
    "hessian_matvec",
    "jacobian_rows",
    "latent_geometry",
    "pairwise_distance",
    "restart_solutions",
    "save_correlation_plot",
    "save_tile_grid",
    "search_direction",
    "sorted_eigh",
    "start_from",
]
