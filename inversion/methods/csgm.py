"""CSGM (Bora et al. 2017) on the stage engine: optimise z only, Adam lr 0.1, R random restarts run as one
batch of ``B * R`` latents, the best kept per image (restarts as in Bora et al.; the IAGAN paper gives
no number, 5 is our default). ``csgm_bp`` adds IAGAN's back-projection (eq. 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.common import PriorConfig, best_restart, init_latents, repeat_for_restarts
from inversion.methods.registry import check_number, check_positive_int, register_method
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = ["CSGMConfig", "csgm"]


@dataclass
class CSGMConfig(PriorConfig):
    """Options of ``restore(..., method="csgm")``.

    Paper values and our scaled defaults (small priors, 16-64 px, CPU): CSGM 1600-1800 steps (IAGAN
    paper) -> ``csgm_steps=500``; ``csgm_lr`` 0.1 and 5 ``restarts`` as published. ``latent_prior``:
    weight of the prior's latent penalty. ``label_candidates``: candidates of DGP's class pick for a
    class-conditional prior with unknown classes.
    """

    csgm_steps: int = 500
    csgm_lr: float = 0.1
    restarts: int = 5
    latent_prior: float = 0.0
    label_candidates: int = 500

    def check(self) -> None:
        check_positive_int(self, "csgm_steps", "restarts", "label_candidates")
        check_number(self, "csgm_lr", positive=True)
        check_number(self, "latent_prior")


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
    """CSGM (Bora et al.): z only, all images x restarts as one batch; best restart per image.

    Returns:
        the fit restricted to each image's best restart, and its history ``(T, B)``.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or CSGMConfig()
    n, r = y.shape[0], max(int(cfg.restarts), 1)
    stage = Stage(
        iterations=cfg.csgm_steps,
        latent_lr=cfg.csgm_lr,
        weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
        name="csgm",
    )
    op, yr, lab = repeat_for_restarts(operator, y, labels, r)
    fit = run_stages(
        prior,
        op,
        yr,
        init_latents(prior, seeds, r),
        [stage],
        labels=lab,
        loss_terms=loss_terms,
        callbacks=callbacks,
    )
    sel = best_restart(fit, n, r)
    return sel, sel.history


@register_method("csgm", CSGMConfig, start="dgp_class_pick")
def _run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms):
    return csgm(prior, operator, y, seeds, labels, cfg, callbacks, loss_terms)
