"""Measurement-space losses of DGP: the critic feature-matching distance (DGP eq. 3), plain MSE and the
perceptual loss of DGP's Table 4 ablation (:class:`PerceptualLoss`).

DGP compares the degraded estimate ``A(x)`` with the degraded target ``y`` (DGP eq. 2). The critic
only accepts images of the prior's shape, so both are first mapped back onto the image grid by
:func:`to_image_grid` (our choice; the published code does the same per task by hand):

* already image-shaped (inpainting, denoising / defence): unchanged;
* one gray channel for a colour prior (colorization): the gray replicated to RGB, i.e. a gray image;
* smaller spatial size (super-resolution): bilinear upsampling to the image size;
* a flat measurement (compressed sensing) or ``lift='pseudo_inverse'``: ``operator.A_dagger``.

The same map is applied to ``A(x)`` and to ``y``, so the distance is zero exactly when the features
of the two lifted measurements agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lcm.prior import from_unit

__all__ = ["CriticFeatureLoss", "MeasurementMSE", "PerceptualLoss", "dgp_critic_features", "to_image_grid"]

Lift = Literal["resize", "pseudo_inverse"]


def to_image_grid(
    m: torch.Tensor, image_shape: Sequence[int], operator: nn.Module | None = None, lift: Lift = "resize"
) -> torch.Tensor:
    """Map measurements (or ``A(x)``) onto the prior's image grid ``(C, H, W)`` (see module docstring).

    Shape:
        - m: ``(B, C', H', W')`` or ``(B, m)``; output ``(B, *image_shape)``.
    """
    c, h, w = (int(s) for s in image_shape)
    if lift not in ("resize", "pseudo_inverse"):
        raise ValueError(f"lift must be 'resize' or 'pseudo_inverse', got {lift!r}")
    if lift == "pseudo_inverse" or m.dim() != 4:
        if operator is None or not getattr(operator, "linear", False):
            raise ValueError(
                f"measurements of shape {tuple(m.shape)} need operator.A_dagger to reach the image grid: "
                "use a linear operator (or image-shaped measurements with lift='resize')"
            )
        m = operator.A_dagger(m)
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    if m.shape[1] != c:
        if m.shape[1] == 1:
            m = m.expand(-1, c, -1, -1)
        elif c == 1:
            m = m.mean(1, keepdim=True)
        else:
            raise ValueError(f"cannot map {m.shape[1]}-channel measurements onto a {c}-channel prior")
    return m


def dgp_critic_features(critic: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The critic's features of images ``x`` in [0, 1] as DGP's scripts read them: a BigGAN critic gives
    :meth:`~lcm.architectures.biggan.BigGANDiscriminator.dgp_features` (``--D_nl inplace_relu`` rectifies
    the last block's output), any other critic its ``features``. Both DGP variants read them here."""
    fn = getattr(getattr(critic, "net", None), "dgp_features", None)
    return fn(from_unit(x)) if callable(fn) else critic.features(x)


class MeasurementMSE:
    """Per-image MSE in measurement space, with the interface of :class:`CriticFeatureLoss` (candidate
    scoring for the MSE ablation and for priors without a critic).
    """

    def target(self, y: torch.Tensor, operator: nn.Module | None = None) -> torch.Tensor:
        return y

    def candidates(self, ax: torch.Tensor, operator: nn.Module | None = None) -> torch.Tensor:
        return ax

    @staticmethod
    def score(feats: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Distances of candidates ``(K, ...)`` to one target ``(1, ...)`` -> ``(K,)``."""
        return (feats - target).pow(2).flatten(1).mean(1)


class CriticFeatureLoss:
    """DGP eq. 3 as a loss term: ``sum_{i in I} ||D_i(lift(A x)) - D_i(lift(y))||_1 / N`` per image.

    ``D_i`` is the output of critic block ``i`` (:func:`dgp_critic_features`), ``I`` = ``blocks`` (None:
    all blocks; negative indices count from the end). ``reduction="paper"`` (default) is eq. 3: the L1
    norms of the blocks summed, so each block weighs by its size; it is divided by one constant, ``N`` =
    the mean element count of the used blocks, which keeps the magnitude of the released code's sum of
    block means (equal to it when all blocks have one size, so the presets' stage weights keep their
    balance against the MSE) without changing the minimiser or the blocks' relative weights.
    ``reduction="block_mean"`` is the released code (``F.l1_loss`` per block, then summed): every block
    weighs the same whatever its size. The target's features
    are computed once per measurement tensor and cached. Used as a ``loss_terms`` entry (engine
    ``LossContext``) and, through :meth:`target` / :meth:`candidates` / :meth:`score`, to rank
    candidate latents.

    Args:
        critic: the prior's critic (``features(x01) -> list``), frozen.
        image_shape: the prior's ``(C, H, W)``.
        blocks: critic block indices to use.
        lift: how measurements reach the image grid (:func:`to_image_grid`).
        reduction: ``"paper"`` (eq. 3) or ``"block_mean"`` (DGP's released code).

    Shape:
        - ``__call__(ctx)``: ctx.ax and ctx.y ``(B, ...)`` -> ``(B,)``.
    """

    def __init__(
        self,
        critic: nn.Module,
        image_shape: Sequence[int],
        blocks: Sequence[int] | None = None,
        lift: Lift = "resize",
        reduction: Literal["paper", "block_mean"] = "paper",
    ):
        if reduction not in ("paper", "block_mean"):
            raise ValueError(f"reduction must be 'paper' (DGP eq. 3) or 'block_mean', got {reduction!r}")
        self.reduction = reduction
        if critic is None or not hasattr(critic, "features"):
            raise ValueError(
                "the critic feature loss needs a prior with a critic (a WGAN-GP checkpoint); "
                "set the stages' 'critic' weights to 0 for priors without one"
            )
        self.critic = critic
        self.image_shape = tuple(int(s) for s in image_shape)
        self.blocks = None if blocks is None else [int(b) for b in blocks]
        if lift not in ("resize", "pseudo_inverse"):
            raise ValueError(f"lift must be 'resize' or 'pseudo_inverse', got {lift!r}")
        self.lift = lift
        self._cache: tuple | None = None

    def features(self, m: torch.Tensor, operator: nn.Module | None = None) -> list[torch.Tensor]:
        """Selected critic features of lifted measurements ``m``."""
        feats = dgp_critic_features(self.critic, to_image_grid(m, self.image_shape, operator, self.lift))
        if self.blocks is None:
            return feats
        try:
            return [feats[i] for i in self.blocks]
        except IndexError as err:
            raise ValueError(
                f"critic_blocks {self.blocks} out of range: this critic has {len(feats)} blocks"
            ) from err

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """Per-row eq. 3 distance; ``fb`` rows broadcast (1 target against K candidates). -> ``(B,)``."""
        pairs = list(zip(fa, fb, strict=True))
        if self.reduction == "block_mean":
            return sum((a - b).abs().flatten(1).mean(1) for a, b in pairs)
        mean_size = sum(a[0].numel() for a, _ in pairs) / len(pairs)
        return sum((a - b).abs().flatten(1).sum(1) for a, b in pairs) / mean_size

    def target_features(self, y: torch.Tensor, operator: nn.Module | None = None) -> list[torch.Tensor]:
        key = (y.data_ptr(), tuple(y.shape), y._version, y.dtype, y.device)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, [f.detach() for f in self.features(y, operator)])
        return self._cache[1]

    def __call__(self, ctx) -> torch.Tensor:
        return self.distance(self.features(ctx.ax, ctx.operator), self.target_features(ctx.y, ctx.operator))

    # candidate scoring interface (see inversion.dgp.init)
    def target(self, y: torch.Tensor, operator: nn.Module | None = None) -> list[torch.Tensor]:
        return self.features(y, operator)

    def candidates(self, ax: torch.Tensor, operator: nn.Module | None = None) -> list[torch.Tensor]:
        return self.features(ax, operator)

    score = distance


class PerceptualLoss:
    """Per-image perceptual distance between ``lift(A(x))`` and ``lift(y)`` (DGP Table 4, "Perceptual":
    a fixed ImageNet network instead of the discriminator; DGP used VGG features).

    A loss term: ``restore(..., loss_terms={"perceptual": PerceptualLoss(shape)}, stages=[... weights:
    {perceptual: 1, ...}])``; both sides are lifted to the image grid like the critic loss.

    Args:
        image_shape: the prior's ``(C, H, W)``.
        distance: a module ``(pred, target) -> (B,)`` on [0, 1] images (default:
            :func:`inversion.metrics.perceptual_distance`: LPIPS-VGG when on disk, else offline).
        lift: see :func:`inversion.dgp.losses.to_image_grid`.
    """

    def __init__(
        self, image_shape: Sequence[int], distance: torch.nn.Module | None = None, lift: Lift = "resize"
    ):
        self.image_shape = tuple(int(s) for s in image_shape)
        from inversion.metrics.perceptual import perceptual_distance

        self.name, self.distance = ("custom", distance) if distance is not None else perceptual_distance()
        for p in self.distance.parameters():
            p.requires_grad_(False)
        self.lift = lift

    def __call__(self, ctx) -> torch.Tensor:
        a = to_image_grid(ctx.ax, self.image_shape, ctx.operator, self.lift).clamp(0, 1)
        b = to_image_grid(ctx.y, self.image_shape, ctx.operator, self.lift).clamp(0, 1)
        return self.distance(a, b.detach())
