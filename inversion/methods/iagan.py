"""IAGAN (Abu Hussein et al. 2020, eq. 3) on the stage engine: from the CSGM latent, jointly fine-tune z
and a private copy of the generator with small learning rates and a short budget (early stopping),
keeping the iterate of minimal objective; half the steps for noisy measurements. ``iagan_bp`` adds the
paper's back-projection (eq. 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.csgm import CSGMConfig, csgm
from inversion.methods.registry import check_number, check_positive_int, register_method
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = ["IAGANConfig", "iagan"]

BATCHING = ("sequential", "vmap")


@dataclass
class IAGANConfig(CSGMConfig):
    """Options of ``restore(..., method="iagan")``: IAGAN runs CSGM as its first phase (IAGAN Sec. 3,
    eq. 3 starts from the CSGM latent), so its config is CSGM's plus the joint phase's.

    IAGAN joint phase 500-600 steps (BEGAN; PGGAN 300-500) -> ``iagan_steps=300``; lrs 1e-4 for z
    and theta (BEGAN; PGGAN uses 1e-3 for theta) as published; ``noisy_step_fraction`` of the steps
    when noisy. ``iagan_blocks``: the generator blocks tuned; ``patience``: early stopping;
    ``batching``: the per-image generator copies run ``sequential`` or stacked (``vmap``).
    """

    iagan_steps: int = 300
    iagan_latent_lr: float = 1e-4
    iagan_generator_lr: float = 1e-4
    iagan_blocks: str | list[int] = "all"
    noisy_step_fraction: float = 0.5
    patience: int | None = None
    batching: str = "sequential"

    def check(self) -> None:
        super().check()
        check_positive_int(self, "iagan_steps")
        check_number(self, "iagan_latent_lr")
        check_number(self, "iagan_generator_lr")
        check_number(self, "noisy_step_fraction", positive=True)
        if self.patience is not None:
            check_positive_int(self, "patience")
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {self.batching!r}")


@register_method("iagan", IAGANConfig, start="dgp_class_pick")
def iagan(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: IAGANConfig | None = None,
    noisy: bool = False,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """IAGAN (Abu Hussein et al., eq. 3): CSGM start, then joint z + private-generator fine-tuning.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or IAGANConfig()
    start, hist0 = csgm(prior, operator, y, seeds, labels, cfg, loss_terms=loss_terms)
    steps = cfg.iagan_steps
    if noisy:  # IAGAN Sec. Experiments: half the iterations for noisy measurements
        steps = max(1, int(round(steps * cfg.noisy_step_fraction)))
    stage = Stage(
        iterations=steps,
        latent=cfg.iagan_latent_lr > 0,
        generator=cfg.iagan_blocks,
        latent_lr=cfg.iagan_latent_lr,
        generator_lr=cfg.iagan_generator_lr,
        weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
        patience=cfg.patience,
        name="iagan",
    )
    fit = run_stages(
        prior, operator, y, start.latent, [stage],
        labels=labels, loss_terms=loss_terms, batching=cfg.batching, callbacks=callbacks,
    )  # fmt: skip
    return fit, torch.cat([hist0, fit.history])
