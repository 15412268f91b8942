"""IAGAN (Abu Hussein et al. 2020, eq. 3) on the stage engine: from the CSGM latent, jointly fine-tune z and a
private copy of the generator. By default (``variant="code"``) as IAGAN's ``IAGAN.py`` ``IA`` runs it: every
iteration, z lr 1e-4 and generator lr 1e-3 (its ``main.py``), the MSE of [-1, 1] images, the last iterate;
``variant="paper"`` keeps the iterate of minimal objective and halves the steps for noisy measurements.
``iagan_bp`` adds the back-projection (eq. 10).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.common import init_latents
from inversion.methods.csgm import CSGMConfig, csgm_start
from inversion.methods.registry import check_number, check_positive_int, register_method
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = ["IAGANConfig", "iagan"]

BATCHING = ("sequential", "vmap")


@dataclass
class IAGANConfig(CSGMConfig):
    """Options of ``restore(..., method="iagan")``: IAGAN runs CSGM as its first phase (IAGAN Sec. 3, eq. 3
    starts from the CSGM latent), so its config is CSGM's plus the joint phase's.

    Defaults are IAGAN's ``main.py``: ``IA_iterations`` 300, i.e. ``iagan_steps=299`` joint updates (its
    ``IA`` returns the ``G(z)`` of its last forward, before its last update), z lr 1e-4 and generator lr
    1e-3 (the paper's PGGAN values; BEGAN: 1e-4, ``configs/inversion/methods/iagan_paper.yaml``).
    ``csgm_steps=0`` skips CSGM: the joint phase starts from ``init_latent`` ``(B, *latent_shape)`` (or a
    seeded draw). ``noisy_step_fraction``: the fraction of the joint steps run for noisy measurements
    (None: the variant's, 1 for the code, 0.5 for the paper's "half the iterations").
    ``iagan_blocks``: the generator blocks tuned; ``patience``: early stopping; ``batching``: the
    per-image generator copies run ``sequential`` or stacked (``vmap``).
    """

    iagan_steps: int = 299
    iagan_latent_lr: float = 1e-4
    iagan_generator_lr: float = 1e-3
    iagan_blocks: str | list[int] = "all"
    noisy_step_fraction: float | None = None
    patience: int | None = None
    batching: str = "sequential"

    def check(self) -> None:
        super().check()
        check_positive_int(self, "iagan_steps")
        check_number(self, "iagan_latent_lr")
        check_number(self, "iagan_generator_lr")
        check_number(self, "noisy_step_fraction", positive=True, optional=True)
        if self.patience is not None:
            check_positive_int(self, "patience")
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {self.batching!r}")

    def check_steps(self) -> None:  # 0: IAGAN's joint phase alone, from init_latent
        if self.csgm_steps != 0:
            check_positive_int(self, "csgm_steps")

    def joint_steps(self, noisy: bool) -> int:
        steps = self.steps(self.iagan_steps)
        fraction = self.noisy_step_fraction
        if fraction is None:  # IAGAN Sec. 4: half the iterations when noisy (the code does not)
            fraction = 0.5 if self.variant == "paper" else 1.0
        return max(1, int(round(steps * fraction))) if noisy else steps


def _joint_start(prior: Prior, seeds: Sequence[int], cfg: IAGANConfig) -> torch.Tensor:
    z = cfg.init_latent
    if z is None:
        return init_latents(prior, seeds)
    want = (len(seeds), *prior.latent_shape)
    if tuple(z.shape) != want:
        raise ValueError(
            f"init_latent has shape {tuple(z.shape)}; with csgm_steps=0 IAGAN starts from {want}"
        )
    return z.detach().to(next(prior.generator.parameters()).device, torch.float32)


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

    Returns:
        the fit and its history (CSGM's rows, then the joint phase's: the objective before every update
        and, last, at the returned iterate).

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or IAGANConfig()
    if cfg.csgm_steps == 0:
        z0, hist0 = _joint_start(prior, seeds, cfg), y.new_zeros(0, y.shape[0])
    else:
        start = csgm_start(prior, operator, y, seeds, labels, cfg, callbacks, loss_terms)
        z0, hist0 = start.latent, start.history
    stage = Stage(
        iterations=cfg.joint_steps(noisy),
        latent=cfg.iagan_latent_lr > 0,
        generator=cfg.iagan_blocks,
        latent_lr=cfg.iagan_latent_lr,
        generator_lr=cfg.iagan_generator_lr,
        weights={"mse": cfg.mse_weight, "latent_prior": cfg.latent_prior},
        patience=cfg.patience,
        name="iagan",
    )
    fit = run_stages(
        prior,
        operator,
        y,
        z0,
        [stage],
        labels=labels,
        loss_terms=loss_terms,
        batching=cfg.batching,
        callbacks=callbacks,
        keep=cfg.kept,
    )
    return fit, torch.cat([hist0, fit.history])
