"""Perceptual distances for CRI's centroid choice and losses, compared fairly in measurement space.

CRI measures distances with VGG / LPIPS features (eqs. 6-8; Algorithm 1). Offline we offer
``"offline"`` (ImageNet EfficientNet-Lite0 features, :class:`inversion.metrics.EfficientNetLite0Features`,
channel-normalised as in LPIPS without the learned calibration), ``"critic"`` (the prior's own critic
features) or ``"mse"`` (no network). Both sides of a comparison go through the same map: measurements
``A(x)`` and ``y`` are brought to the prior's image size by :func:`measurement_view` (bilinear
resize, an identical linear map for both), so a degraded target is compared with degraded
candidates, never with clean ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lcm.prior import Prior

__all__ = ["Distance", "FeatureDistance", "LPIPSDistance", "make_distance", "measurement_view"]

Distance = Literal["offline", "critic", "mse", "lpips"]

_OFFLINE: dict[int | None, nn.Module] = {}


def measurement_view(v: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Image-shaped measurements at the prior's size: bilinear resize when the size differs; other
    measurements (compressed sensing's ``(B, m)``) as they are (only ``"mse"`` compares those).

    Shape:
        - v: ``(B, C', H', W')`` -> ``(B, C', *size)``; ``(B, ...)`` otherwise -> unchanged.
    """
    if v.dim() != 4:
        return v
    if tuple(v.shape[-2:]) == tuple(size):
        return v
    return F.interpolate(v, size=tuple(size), mode="bilinear", align_corners=False, antialias=False)


def _require_images(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(
            f"a perceptual distance needs image-shaped measurements (B, C, H, W), got {tuple(x.shape)}: "
            "set distance='mse' for this operator"
        )


class FeatureDistance(nn.Module):
    """LPIPS-style distance on a frozen feature extractor with reusable target features.

    ``d(x, t) = mean_l mean_pos || f_l(x)/|f_l(x)| - f_l(t)/|f_l(t)| ||^2`` (the formula of
    :class:`inversion.metrics.OfflinePerceptualDistance`); ``features`` and ``between`` are split so
    that a fixed target's features are computed once per fit, not once per step.

    Args:
        extractor: images ``(B, C, H, W)`` in [0, 1] -> list of feature maps; ``None`` for pixel MSE.

    Shape:
        - x, target: ``(B, C, H, W)`` -> ``(B,)``.
    """

    def __init__(self, extractor: Callable[[torch.Tensor], list[torch.Tensor]] | None):
        super().__init__()
        self.__dict__["extractor"] = extractor  # not a submodule: never trained, never saved

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.extractor is None:  # pixel MSE; flat measurements (B, m) as one channel
            return [x if x.dim() == 4 else x.flatten(1).unsqueeze(1)]
        _require_images(x)
        eps = 1e-10
        return [f / (f.norm(dim=1, keepdim=True) + eps) for f in self.extractor(x)]

    @staticmethod
    def between(fx: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        terms = [(a - b).pow(2).sum(1).flatten(1).mean(1) for a, b in zip(fx, ft, strict=True)]
        return torch.stack(terms).mean(0)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != target.shape[1:]:
            raise ValueError(f"x {tuple(x.shape)} and target {tuple(target.shape)} differ in shape")
        return self.between(self.features(x), self.features(target))


class LPIPSDistance(FeatureDistance):
    """LPIPS (the paper's distance, :class:`inversion.metrics.LPIPS`) with the FeatureDistance interface.

    LPIPS calibrates its own feature differences, so ``features`` are the (resized) images themselves
    and ``between`` runs LPIPS on them. Images smaller than ``resize`` (default 64 px, the smallest
    size AlexNet's pooling leaves non-empty maps for) are upsampled bilinearly first.

    Args:
        net: LPIPS trunk, ``alex``, ``vgg`` or ``squeeze``.
        resize: shorter side LPIPS sees (None: 64 when the image is smaller, else unchanged).
        weights_dir: folder of the trunk checkpoint (None: the torch hub cache).
    """

    def __init__(self, net: str = "alex", resize: int | None = None, weights_dir: str | None = None):
        super().__init__(None)
        from inversion.metrics import LPIPS

        self.__dict__["lpips"] = LPIPS(net, weights_dir)  # built on first use; never saved
        self.resize = resize

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        _require_images(x)
        side = self.resize or max(64, min(x.shape[-2:]))
        if min(x.shape[-2:]) != side:
            h, w = x.shape[-2:]
            size = (side, round(w * side / h)) if h <= w else (round(h * side / w), side)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return [x]

    def between(self, fx: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        a, b = fx[0], ft[0]
        return self.lpips(a, b.expand_as(a) if b.shape[0] == 1 else b)


def make_distance(kind: Distance, prior: Prior, resize: int | None = None) -> FeatureDistance:
    """The distance named ``kind`` for ``prior``.

    Args:
        kind: ``"offline"`` (EfficientNet-Lite0 ImageNet features), ``"lpips"`` (LPIPS-Alex, the
            paper's distance, when its trunk weights are on disk; :class:`LPIPSDistance`),
            ``"critic"`` (``prior.critic`` features) or ``"mse"``.
        prior: the prior (its critic for ``"critic"``).
        resize: shorter side the offline network sees (None: the image's own size, at least 32 px,
            the smallest input EfficientNet-Lite0's 32x downsampling accepts).
    """
    if kind == "offline":
        if resize is None and min(prior.image_shape[-2:]) < 32:
            resize = 32
        if resize not in _OFFLINE:
            from inversion.metrics import EfficientNetLite0Features

            _OFFLINE[resize] = EfficientNetLite0Features(resize=resize)
        return FeatureDistance(_OFFLINE[resize])
    if kind == "critic":
        if prior.critic is None:
            raise ValueError(
                f"distance='critic' needs a prior with a critic; this {prior.kind} prior has none: "
                "use distance='offline' or 'mse'"
            )
        return FeatureDistance(prior.critic.features)
    if kind == "mse":
        return FeatureDistance(None)
    if kind == "lpips":
        return LPIPSDistance(resize=resize)
    raise ValueError(f"distance must be 'offline', 'critic', 'mse' or 'lpips', got {kind!r}")
