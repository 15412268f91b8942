"""CSGM (Bora et al. 2017) on the stage engine: optimise z only, Adam lr 0.1, R restarts run as one batch of
``B * R`` latents. By default (``variant="code"``) as IAGAN's ``IAGAN.py`` ``CSGM`` runs it: the MSE of the
generator's [-1, 1] images, every start's final z, the start picked by the residual of its last forward.
``variant="paper"``: the least objective along the iterations (IAGAN Sec. 3) on [0, 1] images.
``csgm_bp`` adds IAGAN's back-projection (eq. 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.common import PriorConfig, best_restart, init_latents, repeat_for_restarts
from inversion.methods.registry import check_number, check_positive_int, register_method
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = ["CSGMConfig", "VARIANTS", "csgm", "csgm_start"]

VARIANTS = ("code", "paper")
KEEPS = ("last", "best")
# IAGAN's code minimises MSELoss of [-1, 1] images (IAGAN.py CSGM / IA): 4x the MSE of our [0, 1] images
GENERATOR_RANGE_MSE = 4.0


@dataclass
class CSGMConfig(PriorConfig):
    """Options of ``restore(..., method="csgm")``.

    Defaults are IAGAN's ``main.py`` (CSGM as its ``IAGAN.py`` runs it): ``csgm_steps`` 1800, ``csgm_lr``
    0.1, 5 ``restarts``. ``variant``: ``"code"`` (default) minimises the MSE of the generator's [-1, 1]
    images (IAGAN's ``MSELoss``; Adam is not scale-invariant, so this is not the same run as on [0, 1]
    images) and keeps each start's final z, picking the start whose last forward (before its last update)
    had the least residual; ``"paper"`` minimises the MSE of [0, 1] images and keeps each start's iterate
    of least objective ("minimal objective value along the iterations", IAGAN Sec. 3). ``keep``
    (``"last"`` / ``"best"``) overrides the variant's iterate rule. ``init_latent``: the starts
    ``(B, R, *latent_shape)`` instead of seeded random ones. ``scale``: multiplies ``csgm_steps`` (and
    IAGAN's ``iagan_steps``; rounded, at least 1), e.g. 0.25 for a CPU. ``latent_prior``: weight of the
    prior's latent penalty. ``label_candidates``: candidates of DGP's class pick for a class-conditional
    prior with unknown classes.
    """

    csgm_steps: int = 1800
    csgm_lr: float = 0.1
    restarts: int = 5
    latent_prior: float = 0.0
    label_candidates: int = 500
    variant: str = "code"
    keep: str | None = None
    init_latent: torch.Tensor | None = field(default=None, repr=False)
    scale: float | None = None

    def check(self) -> None:
        check_positive_int(self, "restarts", "label_candidates")
        self.check_steps()
        check_number(self, "csgm_lr", positive=True)
        check_number(self, "latent_prior")
        check_number(self, "scale", positive=True, optional=True)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.keep is not None and self.keep not in KEEPS:
            raise ValueError(f"keep must be one of {KEEPS} (or None: the variant's rule), got {self.keep!r}")
        if self.init_latent is not None and not (
            isinstance(self.init_latent, torch.Tensor) and self.init_latent.is_floating_point()
        ):
            raise ValueError(
                f"init_latent must be a floating-point tensor, got {type(self.init_latent).__name__}"
            )

    def check_steps(self) -> None:
        check_positive_int(self, "csgm_steps")

    @property
    def kept(self) -> str:
        """The iterate rule in force: ``keep`` or the variant's (code: last, paper: best)."""
        return self.keep or ("last" if self.variant == "code" else "best")

    @property
    def mse_weight(self) -> float:
        """Weight of the engine's [0, 1] MSE: the code's [-1, 1] MSE (x4) or the plain one (paper)."""
        return GENERATOR_RANGE_MSE if self.variant == "code" else 1.0

    def steps(self, n: int) -> int:
        """``n`` steps under ``scale`` (rounded, at least 1; 0 stays 0)."""
        if self.scale is None or n == 0:
            return int(n)
        return max(1, round(int(n) * float(self.scale)))


def _starts(prior: Prior, seeds: Sequence[int], cfg: CSGMConfig, r: int) -> torch.Tensor:
    """``(B * R, *latent_shape)`` starts: ``cfg.init_latent`` ``(B, R, ...)`` (or ``(B, ...)`` for R = 1)."""
    z = cfg.init_latent
    if z is None:
        return init_latents(prior, seeds, r)
    shape, n = tuple(prior.latent_shape), len(seeds)
    if tuple(z.shape) == (n, *shape) and r == 1:
        z = z.unsqueeze(1)
    if tuple(z.shape) != (n, r, *shape):
        raise ValueError(
            f"init_latent has shape {tuple(z.shape)}; {n} image(s) x {r} restart(s) of this prior need "
            f"{(n, r, *shape)} (restarts={r})"
        )
    device = next(prior.generator.parameters()).device
    return z.detach().to(device=device, dtype=torch.float32).reshape(n * r, *shape)


def _last_forward(fit: FitResult) -> torch.Tensor:
    """IAGAN's restart score (``IAGAN.py`` CSGM): the residual of each start's last forward, one update before
    the z it returns (``sum((y - A(G(z)))**2)``; the objective at that step orders the starts alike)."""
    return fit.history[-2] if fit.history.shape[0] > 1 else fit.history[-1]


def csgm_start(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    cfg: CSGMConfig,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> FitResult:
    """CSGM (Bora et al.): z only, all images x restarts as one batch; one restart kept per image.

    Returns:
        the fit restricted to each image's kept restart (its history ``(T + 1, B)``: every step's objective
        before its update, then the returned iterate's).

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    n, r = y.shape[0], max(int(cfg.restarts), 1)
    stage = Stage(
        iterations=cfg.steps(cfg.csgm_steps),
        latent_lr=cfg.csgm_lr,
        weights={"mse": cfg.mse_weight, "latent_prior": cfg.latent_prior},
        name="csgm",
    )
    op, yr, lab = repeat_for_restarts(operator, y, labels, r)
    fit = run_stages(
        prior,
        op,
        yr,
        _starts(prior, seeds, cfg, r),
        [stage],
        labels=lab,
        loss_terms=loss_terms,
        callbacks=callbacks,
        keep=cfg.kept,
    )
    return best_restart(fit, n, r, _last_forward(fit) if cfg.kept == "last" else None)


def csgm(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: CSGMConfig | None = None,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """CSGM as :func:`csgm_start`, returning ``(fit, history)`` as every registered method does."""
    sel = csgm_start(prior, operator, y, seeds, labels, cfg or CSGMConfig(), callbacks, loss_terms)
    return sel, sel.history


@register_method("csgm", CSGMConfig, start="dgp_class_pick")
def _run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms):
    return csgm(prior, operator, y, seeds, labels, cfg, callbacks, loss_terms)
