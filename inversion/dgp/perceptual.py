"""The perceptual-loss variant of DGP's ablation (DGP Table 4, "Perceptual" column).

DGP compares the degraded estimate with the degraded target through a fixed ImageNet network instead
of its discriminator. We use LPIPS on a VGG trunk when its weights are on disk (DGP used VGG
features), else the offline EfficientNet-Lite0 distance
(:class:`inversion.metrics.OfflinePerceptualDistance`);
both sides are first lifted to the image grid like the critic loss (:func:`to_image_grid`).
Use it as a loss term: ``restore(..., loss_terms={"perceptual": PerceptualLoss(shape)}, stages=[...
weights: {perceptual: 1, ...}])``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inversion.dgp.losses import Lift, to_image_grid

__all__ = ["PerceptualLoss", "default_perceptual_distance"]


def default_perceptual_distance(prefer: str = "auto") -> tuple[str, torch.nn.Module]:
    """``("lpips-vgg", LPIPS('vgg'))`` when the VGG16 weights are on disk, else the offline
    ``("efficientnet", OfflinePerceptualDistance)`` (``prefer="efficientnet"`` forces it)."""
    from inversion.metrics import LPIPS, EfficientNetLite0Features, OfflinePerceptualDistance

    if prefer not in ("auto", "efficientnet"):
        raise ValueError(f"prefer must be 'auto' or 'efficientnet', got {prefer!r}")
    lp = LPIPS("vgg")
    if prefer == "auto" and lp.weight_file().is_file():
        return "lpips-vgg", lp
    return "efficientnet", OfflinePerceptualDistance(EfficientNetLite0Features(resize=64)).eval()


class PerceptualLoss:
    """Per-image perceptual distance between ``lift(A(x))`` and ``lift(y)`` (DGP Table 4 ablation).

    Args:
        image_shape: the prior's ``(C, H, W)``.
        distance: a module ``(pred, target) -> (B,)`` on [0, 1] images (default:
            :func:`default_perceptual_distance`).
        lift: see :func:`inversion.dgp.losses.to_image_grid`.
    """

    def __init__(
        self, image_shape: Sequence[int], distance: torch.nn.Module | None = None, lift: Lift = "resize"
    ):
        self.image_shape = tuple(int(s) for s in image_shape)
        self.name, self.distance = (
            ("custom", distance) if distance is not None else default_perceptual_distance()
        )
        for p in self.distance.parameters():
            p.requires_grad_(False)
        self.lift = lift

    def __call__(self, ctx) -> torch.Tensor:
        a = to_image_grid(ctx.ax, self.image_shape, ctx.operator, self.lift).clamp(0, 1)
        b = to_image_grid(ctx.y, self.image_shape, ctx.operator, self.lift).clamp(0, 1)
        return self.distance(a, b.detach())
