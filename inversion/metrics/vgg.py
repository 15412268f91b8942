"""The LCM paper's perceptual metric (LCM Sec. 3, "Metrics"): mean squared distance of VGG16 features
at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 with equal weights, only over the hole for inpainting.

:class:`VGG16Features` needs the torchvision ImageNet VGG16 checkpoint on disk (nothing downloads);
:func:`feature_metric` falls back to the offline EfficientNet-Lite0 features under the same formula
when it is missing (NOT comparable with the paper's numbers in either case: other data, other sizes).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inversion.metrics.perceptual import (
    LPIPS_BACKBONE_FILES,
    EfficientNetLite0Features,
    FeatureExtractor,
    _to_rgb,
)
from inversion.operators.functional import check_image
from lcm.features import _IMAGENET_MEAN, _IMAGENET_STD

__all__ = ["VGG16_RELU", "FeatureMSE", "VGG16Features", "feature_metric"]

#: indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's ``vgg16().features``
VGG16_RELU = (3, 8, 15, 22, 29)


class VGG16Features(nn.Module):
    """Frozen ImageNet VGG16 trunk returning the five relu maps of :data:`VGG16_RELU`.

    Reads ``weights_dir/vgg16-397923af.pth`` (default ``$TORCH_HOME/hub/checkpoints``); a missing
    file raises one FileNotFoundError naming the file and folder. ``resize`` upsamples the shorter
    side first (VGG's five pooling stages need >= 32 px; 64 by default for 32 px data).

    Shape:
        x: (B, 1 or 3, H, W) in [0, 1] -> list of 5 maps (B, C_l, H_l, W_l)
    """

    def __init__(
        self, weights_dir: str | None = None, resize: int | None = 64, features: nn.Module | None = None
    ):
        super().__init__()
        self.weights_dir = weights_dir
        self.resize = resize
        self._features = features  # a prebuilt trunk (tests); None: loaded from the checkpoint
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def weight_file(self) -> Path:
        folder = self.weights_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
        return Path(folder) / LPIPS_BACKBONE_FILES["vgg"]

    @staticmethod
    def available(weights_dir: str | None = None) -> bool:
        """Whether the VGG16 checkpoint is on disk."""
        return VGG16Features(weights_dir).weight_file().is_file()

    def _build(self) -> nn.Module:
        path = self.weight_file()
        if not path.is_file():
            raise FileNotFoundError(
                f"the VGG16 feature distance needs the torchvision ImageNet weights {path.name!r}, not found "
                f"at {str(path)!r}: copy that file there (or pass weights_dir=...), or use "
                "feature_metric('efficientnet') / inversion.metrics.OfflinePerceptualDistance"
            )
        from torchvision.models.vgg import cfgs, make_layers

        trunk = make_layers(cfgs["D"])  # vgg16().features without the 120M-parameter classifier
        state = torch.load(path, map_location="cpu", weights_only=True)
        trunk.load_state_dict(
            {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        )
        return trunk.eval().requires_grad_(False)

    @property
    def features(self) -> nn.Module:
        if self._features is None:
            object.__setattr__(self, "_features", self._build())  # not a submodule: state_dict stays empty
        return self._features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = _to_rgb(x, "x")
        net = self.features.to(device=x.device, dtype=x.dtype)
        if self.resize is not None and min(x.shape[-2:]) != self.resize:
            scale = self.resize / min(x.shape[-2:])
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        h = (x - self.mean.to(x)) / self.std.to(x)
        out = []
        for i, layer in enumerate(net):
            h = layer(h)
            if i in VGG16_RELU:
                out.append(h)
            if i >= VGG16_RELU[-1]:
                break
        return out


class FeatureMSE(nn.Module):
    """Mean squared feature distance with equal layer weights, optionally inside a mask (LCM Sec. 3).

    ``d = mean_l [ sum_{c, p in hole} (f_l(x) - f_l(y))^2 / (C_l * |hole_l|) ]``; the mask is resized to
    each map by area averaging (soft weights at the hole's border).

    Shape:
        pred, target: (B, C, H, W) in [0, 1]; mask: (B or 1, 1, H, W), 1 = scored -> (B,)
    """

    def __init__(self, extractor: FeatureExtractor):
        super().__init__()
        self.extractor = extractor

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        check_image(pred, "pred")
        check_image(target, "target")
        if pred.shape != target.shape:
            raise ValueError(f"`pred` {tuple(pred.shape)} and `target` {tuple(target.shape)} differ in shape")
        fp, ft = self.extractor(pred), self.extractor(target)
        terms = []
        for a, b in zip(fp, ft, strict=True):
            d = (a - b).pow(2).mean(1, keepdim=True)  # (B, 1, h, w)
            if mask is None:
                terms.append(d.flatten(1).mean(1))
                continue
            m = F.adaptive_avg_pool2d(mask[:, :1].to(d), d.shape[-2:]).expand_as(d)
            terms.append((d * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1e-12))
        return torch.stack(terms).mean(0)


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
