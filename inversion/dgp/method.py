"""``restore(..., method="dgp")``: Deep Generative Prior (Pan et al. 2020), the fit of
:func:`inversion.dgp.fit_dgp` with :class:`inversion.dgp.DGPConfig` as its options.

Its start is its own: the best-of-N candidate search picks the latent and, for unknown classes of a
class-conditional prior, the class (DGP appendix B), so it is registered with ``start="given"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from inversion.dgp.fit import DGPConfig, fit_dgp
from inversion.engine import FitResult, LossTerm
from inversion.methods.registry import register_method
from lcm.prior import Prior

__all__ = ["dgp"]


def _is_gray_observation(y: torch.Tensor, prior: Prior) -> bool:
    c, h, w = prior.image_shape
    return y.dim() == 4 and y.shape[1] == 1 and c == 3 and tuple(y.shape[-2:]) == (h, w)


@register_method("dgp", DGPConfig, start="given")
def dgp(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: DGPConfig | None = None,
    noisy: bool = False,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """:func:`~inversion.dgp.fit_dgp`, then for colorization the target's luminance with the predicted
    chroma (DGP Sec. 4.1: Lab "ab" of x* + the given brightness); ``noisy`` is not used.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or DGPConfig()
    fit = fit_dgp(
        prior, operator, y, seeds=seeds, labels=labels, cfg=cfg, callbacks=callbacks, loss_terms=loss_terms
    ).fit
    if cfg.colorize_output and _is_gray_observation(y, prior):
        from inversion.metrics import restore_luminance

        with torch.no_grad():
            fit.images = restore_luminance(fit.images, y)
    return fit, fit.history
