"""Latent-only restoration (LCM eqs. 4-5) on the stage engine: optimise the prior's own latent (Gaussian
z, GLO sphere, or the LCM latent ConvNet parameters phi in their box) with the generator frozen.
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

__all__ = ["LatentConfig", "latent_only"]


@dataclass
class LatentConfig(PriorConfig):
    """Options of ``restore(..., method="latent")``.

    ``latent_steps=500``; ``latent_lr`` None picks 0.1 for Gaussian z, 0.05 on the sphere, ``box / 10``
    for LCM's phi (the paper's box is +-0.01). ``restarts``: seeded starts per image, the best kept;
    ``stages``: engine stages (z only) replacing the single one; ``latent_prior``: weight of the prior's
    latent penalty; ``label_candidates``: candidates of DGP's class pick for unknown classes.
    """

    latent_steps: int = 500
    latent_lr: float | None = None
    restarts: int = 5
    latent_prior: float = 0.0
    stages: list[dict] | None = None
    batching: str = "sequential"
    label_candidates: int = 500

    def check(self) -> None:
        check_positive_int(self, "latent_steps", "restarts", "label_candidates")
        check_number(self, "latent_lr", positive=True, optional=True)
        check_number(self, "latent_prior")
        if self.batching not in ("sequential", "vmap"):
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {self.batching!r}")


@register_method("latent", LatentConfig, start="dgp_class_pick")
def latent_only(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: LatentConfig | None = None,
    noisy: bool = False,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """Latent-only restoration (LCM eq. 4 for a latent ConvNet's phi, eq. 5 for a vector z).

    Uses ``cfg.stages`` (z-only stages) when given, else one stage of ``latent_steps``; ``noisy`` is
    not used.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or LatentConfig()
    lr = cfg.latent_lr
    if lr is None:
        lr = {"gaussian": 0.1, "sphere": 0.05}.get(prior.latent_kind, (prior.box or 1.0) / 10)
    stages = cfg.stages or [
        Stage(
            cfg.latent_steps,
            latent_lr=lr,
            weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
            name="latent",
        )
    ]
    n, r = y.shape[0], max(int(cfg.restarts), 1)
    op, yr, lab = repeat_for_restarts(operator, y, labels, r)
    fit = run_stages(
        prior, op, yr, init_latents(prior, seeds, r), stages,
        labels=lab, loss_terms=loss_terms, batching=cfg.batching, callbacks=callbacks,
    )  # fmt: skip
    sel = best_restart(fit, n, r)
    return sel, sel.history
