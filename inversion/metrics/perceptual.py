"""Every perceptual distance of the project, on the frozen backbones of :mod:`lcm.features`.

* :class:`LPIPS` (Zhang et al. 2018; when its torchvision trunk weights are on disk) and
  :class:`LPIPSDistance` (the same with the split ``features`` / ``between`` interface).
* :class:`FeatureDistance`: LPIPS-style distance of unit-normalised features, no calibration (CRI's
  distance; on EfficientNet-Lite0: :class:`OfflinePerceptualDistance`, the offline stand-in for LPIPS).
* :class:`FeatureMSE`: mean squared feature difference, optionally inside a mask (the LCM paper's VGG16
  metric, :func:`feature_metric`; e-GLASS's ``H_X`` distance with ``layers="sum"``).
* :class:`FrechetFeatureDistance`: FID's formula on pooled features.
* :func:`perceptual_distance`: LPIPS-VGG when on disk, else the offline distance (DGP's Table 4 loss).

Nothing here downloads anything: a missing weight file fails with one error naming it. The offline
distances use the ImageNet EfficientNet-Lite0 whose weights install with genprior. None of the offline
values is comparable with published LPIPS / FID numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from inversion.operators.functional import check_image
from lcm.features import (
    IMAGENET_WEIGHT_FILES,
    EfficientNetLite0Features,
    VGG16Features,
    frechet_distance,
    to_rgb,
    torchvision_weight_file,
)

__all__ = [
    "LPIPS",
    "LPIPS_BACKBONE_FILES",
    "EfficientNetLite0Features",
    "FeatureDistance",
    "FeatureMSE",
    "FrechetFeatureDistance",
    "LPIPSDistance",
    "OfflinePerceptualDistance",
    "VGG16Features",
    "feature_metric",
    "frechet_distance",
    "perceptual_distance",
]


def _to_rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    check_image(x, name)
    return to_rgb(x, name)


FeatureExtractor = Callable[[torch.Tensor], list[torch.Tensor]]

#: torchvision ImageNet checkpoints LPIPS builds its trunks from (file names as torch.hub caches them)
LPIPS_BACKBONE_FILES = IMAGENET_WEIGHT_FILES


class LPIPS(nn.Module):
    """LPIPS (Zhang et al. 2018) through the ``lpips`` package, built without network access.

    The calibrated linear heads ship inside ``lpips``; the ImageNet trunk is read from
    ``weights_dir/<LPIPS_BACKBONE_FILES[net]>`` (default ``$TORCH_HOME/hub/checkpoints``, where
    torchvision caches it). The network is built on first use; a missing file raises one
    FileNotFoundError that names the file and the folder.

    Args:
        net: trunk, "alex" (the usual LPIPS), "vgg" or "squeeze".
        weights_dir: folder holding the trunk checkpoint (None: the torch hub checkpoint cache).

    Shape:
        pred, target: (B, 1 or 3, H, W) in [0, 1] -> (B,)
    """

    def __init__(
        self, net: Literal["alex", "vgg", "squeeze"] = "alex", weights_dir: str | None = None
    ) -> None:
        super().__init__()
        if net not in LPIPS_BACKBONE_FILES:
            raise ValueError(f"`net` must be one of {sorted(LPIPS_BACKBONE_FILES)}, got {net!r}")
        self.net = net
        self.weights_dir = weights_dir
        self._model: nn.Module | None = None

    def weight_file(self) -> Path:
        """Where the trunk checkpoint is expected."""
        return torchvision_weight_file(self.net, self.weights_dir)

    def _build(self) -> nn.Module:
        path = self.weight_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS ({self.net}) needs the torchvision ImageNet weights {path.name!r}, "
                f"not found at {str(path)!r}. Copy that file there (or pass weights_dir=...), "
                "or use the offline inversion.metrics.OfflinePerceptualDistance instead."
            )
        import lpips
        import torchvision

        trunk = {"alex": torchvision.models.alexnet, "vgg": torchvision.models.vgg16}.get(
            self.net, torchvision.models.squeezenet1_1
        )(weights=None)
        trunk.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=self.net, pretrained=True, pnet_rand=True, verbose=False)
        # lpips slices torchvision's `features`; child names are the feature indices
        for sl in model.net.children():
            for name, module in sl.named_children():
                module.load_state_dict(trunk.features[int(name)].state_dict(), strict=True)
        model.eval().requires_grad_(False)
        return model

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = _to_rgb(pred, "pred"), _to_rgb(target, "target")
        if self._model is None:
            # kept out of _modules: no state_dict entries appear on first use (checkpoints stay stable)
            object.__setattr__(self, "_model", self._build())
        model = self._model.to(device=pred.device, dtype=pred.dtype)
        return model(pred, target, normalize=True).flatten()


class FeatureDistance(nn.Module):
    """LPIPS-style distance of unit-normalised features (no learned calibration), per image.

    ``d(x, t) = mean_l mean_pos || f_l(x)/|f_l(x)| - f_l(t)/|f_l(t)| ||^2`` (channel norm, eps 1e-10);
    ``features`` and ``between`` are split so that a fixed target's features are computed once per fit
    (CRI's losses), ``forward(x, t)`` does both.

    Args:
        extractor: images ``(B, C, H, W)`` in [0, 1] -> list of feature maps; ``None``: pixel MSE
            (measurements that are not images, ``(B, m)``, compare as one channel).
        layers: indices of the feature maps to use (None: all).

    Shape:
        - x, target: ``(B, C, H, W)`` -> ``(B,)``.
    """

    def __init__(self, extractor: FeatureExtractor | None, layers: list[int] | None = None):
        super().__init__()
        self.extractor = extractor
        self.layers = layers

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.extractor is None:  # pixel MSE; flat measurements (B, m) as one channel
            return [x if x.dim() == 4 else x.flatten(1).unsqueeze(1)]
        _require_images(x)
        feats = self.extractor(x)
        if self.layers is not None:
            feats = [feats[i] for i in self.layers]
        eps = 1e-10
        return [f / (f.norm(dim=1, keepdim=True) + eps) for f in feats]

    @staticmethod
    def between(fx: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        terms = [(a - b).pow(2).sum(1).flatten(1).mean(1) for a, b in zip(fx, ft, strict=True)]
        return torch.stack(terms).mean(0)

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != target.shape[1:]:
            raise ValueError(f"`pred` {tuple(x.shape)} and `target` {tuple(target.shape)} differ in shape")
        return self.between(self.features(x), self.features(target))


def _require_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"a perceptual distance needs image-shaped inputs (B, C, H, W), got {shape}: "
            "set distance='mse' for this operator"
        )


class OfflinePerceptualDistance(FeatureDistance):
    """:class:`FeatureDistance` on frozen ImageNet EfficientNet-Lite0 features, computable offline.

    NOT comparable with published LPIPS numbers: different network, no perceptual calibration. Use it
    to rank methods here.

    Args:
        extractor: any callable mapping (B, C, H, W) images in [0, 1] to a list of feature maps
            (default: :class:`EfficientNetLite0Features`).
        layers: indices of the feature maps to use (None: all).

    Shape:
        pred, target: (B, C, H, W) in [0, 1] -> (B,)
    """

    def __init__(self, extractor: FeatureExtractor | None = None, layers: list[int] | None = None) -> None:
        super().__init__(extractor if extractor is not None else EfficientNetLite0Features(), layers)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image(pred, "pred")
        check_image(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} differ in shape")
        return super().forward(pred, target)


class LPIPSDistance(FeatureDistance):
    """:class:`LPIPS` with the :class:`FeatureDistance` interface (CRI's paper distance).

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


class FeatureMSE(nn.Module):
    """Mean squared feature difference, optionally inside a mask (LCM Sec. 3's perceptual metric).

    ``d = red_l [ sum_{c, p in hole} (f_l(x) - f_l(y))^2 / (C_l * |hole_l|) ]`` with ``red`` the mean over
    layers (LCM: equal weights) or their sum (``layers="sum"``, e-GLASS's ``d_X`` for ``H_X``); the mask
    is resized to each map by area averaging (soft weights at the hole's border). A target of batch 1
    is compared with every image.

    Args:
        extractor: images in [0, 1] -> a feature tensor or a list of them (e.g. :class:`VGG16Features`,
            ``prior.critic.features``).
        layers: ``"mean"`` or ``"sum"`` over the feature maps.
        check_inputs: validate the images (4-D, floating point, no NaN); off for use inside
            ``torch.func`` transforms (e-GLASS's Hessian products), where a data-dependent check fails.

    Shape:
        pred: (B, C, H, W) in [0, 1]; target: (B or 1, C, H, W); mask: (B or 1, 1, H, W), 1 = scored
        -> (B,)
    """

    def __init__(self, extractor: FeatureExtractor, layers: str = "mean", check_inputs: bool = True):
        super().__init__()
        if not callable(extractor):
            raise ValueError("extractor must be a callable images -> tensor or list of tensors")
        if layers not in ("mean", "sum"):
            raise ValueError(f"layers must be 'mean' or 'sum', got {layers!r}")
        self.extractor = extractor
        self.layers = layers
        self.check_inputs = check_inputs

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.check_inputs:
            check_image(pred, "pred")
            check_image(target, "target")
        if pred.shape[1:] != target.shape[1:] or target.shape[0] not in (1, pred.shape[0]):
            raise ValueError(f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} differ in shape")
        fp, ft = self.extractor(pred), self.extractor(target)
        if isinstance(fp, torch.Tensor):
            fp, ft = [fp], [ft]
        terms = []
        for a, b in zip(fp, ft, strict=True):
            diff = (a - b).pow(2)
            d = diff.mean(1, keepdim=True) if diff.dim() > 2 else diff.unsqueeze(1)  # channel mean
            if mask is None:
                terms.append(d.flatten(1).mean(1))
                continue
            m = F.adaptive_avg_pool2d(mask[:, :1].to(d), d.shape[-2:]).expand_as(d)
            terms.append((d * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1e-12))
        total = torch.stack(terms)
        return total.sum(0) if self.layers == "sum" else total.mean(0)


class FrechetFeatureDistance(nn.Module):
    """FID-like Frechet distance on globally pooled frozen-network features, computable offline.

    NOT comparable with published FID numbers (different network, layer and usually far fewer
    samples); use it to compare methods within this project.

    Args:
        extractor: callable mapping images in [0, 1] to a list of feature maps
            (default: :class:`EfficientNetLite0Features`, whose last map is the 1280-channel head).
        layer: index of the feature map to average-pool.
        batch_size: images per extractor call.

    Shape:
        images_a: (N, C, H, W), images_b: (M, C, H, W) in [0, 1] -> scalar
    """

    def __init__(
        self, extractor: FeatureExtractor | None = None, layer: int = -1, batch_size: int = 64
    ) -> None:
        super().__init__()
        self.extractor = extractor if extractor is not None else EfficientNetLite0Features()
        self.layer = layer
        self.batch_size = batch_size

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features. Shape: (N, C, H, W) -> (N, D)."""
        check_image(images, "images")
        out = [self.extractor(chunk)[self.layer].mean((-2, -1)) for chunk in images.split(self.batch_size)]
        return torch.cat(out)

    def forward(self, images_a: torch.Tensor, images_b: torch.Tensor) -> torch.Tensor:
        return frechet_distance(self.features(images_a), self.features(images_b))


def feature_metric(kind: str = "auto", weights_dir: str | None = None) -> tuple[str, FeatureMSE]:
    """The LCM perceptual metric: ``("vgg16", ...)`` when its weights are on disk, else the offline
    ``("efficientnet", ...)`` under the same formula (``kind="auto"``). ``kind="vgg16"`` insists
    (FileNotFoundError on first use when missing); ``kind="efficientnet"`` never reads VGG.
    """
    if kind not in ("auto", "vgg16", "efficientnet"):
        raise ValueError(f"kind must be 'auto', 'vgg16' or 'efficientnet', got {kind!r}")
    if kind == "vgg16" or (kind == "auto" and VGG16Features.available(weights_dir)):
        return "vgg16", FeatureMSE(VGG16Features(weights_dir)).eval()
    return "efficientnet", FeatureMSE(EfficientNetLite0Features(resize=64)).eval()


def perceptual_distance(prefer: str = "auto") -> tuple[str, nn.Module]:
    """``("lpips-vgg", LPIPS('vgg'))`` when the VGG16 weights are on disk, else the offline
    ``("efficientnet", OfflinePerceptualDistance)`` (``prefer="efficientnet"`` forces it)."""
    if prefer not in ("auto", "efficientnet"):
        raise ValueError(f"prefer must be 'auto' or 'efficientnet', got {prefer!r}")
    lp = LPIPS("vgg")
    if prefer == "auto" and lp.weight_file().is_file():
        return "lpips-vgg", lp
    return "efficientnet", OfflinePerceptualDistance(EfficientNetLite0Features(resize=64)).eval()
