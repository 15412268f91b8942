"""The CRI fit (Wang et al., AAAI 2023, Algorithm 1) on the stage engine (``restore(method="cri")`` via
:mod:`inversion.cri.method`): nearest centroid, regularised offset,
pivotal tuning with a locality regulariser.

1. Clustering (eqs. 2-3): :func:`inversion.cri.clustering.cluster_centroids` per class.
2. Start point: the centroid whose clean image is nearest to the degraded input (Algorithm 1;
   :func:`select_centroids`, ``centroid_view="degraded"`` degrades the centre images first).
3. Regularised offset (eqs. 4-6): the engine optimises the latent of :class:`OffsetPrior`, whose
   latent is ``w_off`` (starting at zero) and whose code is ``w_cen + w_off``; its
   ``latent_penalty`` is ``||w_off||_2`` (or ``||w_off||_1`` / nothing, CRI Table 4's ablation).
4. Pivotal tuning (eqs. 7-8, PTI): the pivot frozen (``Stage(latent=False, generator="all")``), each
   image's private generator copy tuned under perceptual + L2 + the locality term
   (:func:`locality_term`), which compares the tuned and the original generator at codes
   interpolated between random codes and the pivot.

W vs W+: CRI inverts StyleGAN's W+ (one w per synthesis layer). Our DCGAN generator
(:class:`lcm.networks.Generator`) takes w only in its first block, so W+ has no meaning for it and
``space="w"`` is the only honest choice there. ``space="w+"`` is offered for generators that take one
code per block: they expose ``num_ws`` and accept ``(B, num_ws, *w_shape)``; others raise ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from inversion.cri.clustering import cluster_centroids
from inversion.engine import FitResult, LossContext, LossTerm, run_stages
from inversion.methods.common import PriorConfig
from inversion.metrics.perceptual import EfficientNetLite0Features, FeatureDistance, LPIPSDistance
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = [
    "CRIConfig",
    "OffsetPrior",
    "cri",
    "locality_term",
    "make_distance",
    "measurement_view",
    "perceptual_term",
    "resolve_labels",
    "select_centroids",
]

REGULARIZERS = ("l2", "l1", "none")
SPACES = ("w", "w+")


@dataclass
class CRIConfig(PriorConfig):
    """CRI's options (``restore(..., method="cri", name=value)``).

    Paper values (StyleGAN-XL, 512 px; StyleGAN2, 1024 px) and our scaled defaults (32 px DCGAN, CPU):

    * ``n_clusters`` N = 10 (CRI Fig. 5); ``n_samples`` M = 10,000 (M is not given in the paper text).
    * ``offset_steps``: 1000 (ImageNet) / 500 (faces) -> 200. ``offset_lr`` 0.05 (Adam on w_off).
    * ``lambda_l2`` (eq. 6 lambda_1) = 10 and ``lambda_reg`` (eq. 6 lambda_2) = 0.03: the paper leaves
      them to its supplement. Our offline perceptual distance has other units than LPIPS; at
      lambda_l2 = 1 the offset ignores the pixels (inpainting, conditional Fashion-MNIST prior, 8 images,
      offset only: PSNR 16.2 dB vs 18.0 at 10). lambda_reg 0 / 0.01 / 0.03 / 0.1 traded overall PSNR
      (18.1 / 18.0 / 17.8 / 16.0) against PSNR inside the hole (14.3 / 14.4 / 15.0 / 15.4): 0.03.
      The norm pulls with a constant force lambda_reg, so where the data term's gradient at the centroid
      is weaker (emoji colorization: < 0.003) the offset never moves; the colorization preset uses 3e-4.
      ``regularizer``: ``l2`` (eq. 5), ``l1`` or ``none`` (Table 4).
    * ``tune_steps``: 350 (ImageNet) / 20 (faces) -> 100; ``tune_lr`` 3e-4 (PTI).
    * eq. 7 ``lambda_tune_l2`` = 10 (as lambda_l2); ``lambda_locality`` (lambda_R) = 0.1 and eq. 8
      ``lambda_locality_l2`` = 1: PTI's effective locality weights (0.1 on LPIPS, 0.1 on L2). At
      lambda_R = 1 (lambda^R_L2 = 0.1) our small DCGAN cannot fit the pivot (inpainting PSNR 20.8 dB vs
      23.4 at these weights and 24.0 without the term; 8 images): a weight change moves all outputs.
      ``locality_alpha``: the locality code is ``pivot + alpha (w_rand - pivot)`` (PTI steps a fixed
      30 units towards w_rand in StyleGAN's 512-d W; we use a fraction, 0.5; 1.0 made no difference).
    * ``distance``: ``offline`` (EfficientNet-Lite0 ImageNet features, the offline stand-in for the
      paper's VGG/LPIPS), ``lpips`` (the paper's LPIPS, :class:`inversion.metrics.LPIPS`; needs its
      torchvision trunk weights on disk), ``critic`` (the prior's critic features) or ``mse``.
    * ``classifier``: checkpoint of :mod:`inversion.cri.classifier` to infer the class of each input
      when a class-conditional prior gets no labels (CRI uses DeiT for out-of-domain images).
    * ``cache_dir``: folder of the on-disk centroid cache (None: memory only).
    * ``space``: the offset's space, ``w`` or ``w+`` (module docstring); None (default) = W+ where the
      generator takes one code per block (``num_ws``: a mapping-network prior such as StyleGAN; CRI's
      experiments invert W+), else W. ``optimize_noise`` optimises the generator's noise inputs with the
      offset; ``patience``: early stopping of both stages; ``batching``: the tuned generator copies run
      ``sequential`` or stacked (``vmap``).
    * ``centroid_view``: ``clean`` (Algorithm 1: the degraded input against the clean centre images) or
      ``degraded`` (the centre images through the same operator first); measurements that are no images
      (compressed sensing) are compared degraded either way.
    """

    space_is_latent: ClassVar[bool] = False  # ``space`` is the offset's space; CRI clusters in W

    n_clusters: int = 10
    n_samples: int = 10_000
    cluster_seed: int = 0
    cache_dir: str | None = None
    distance: str = "offline"
    distance_resize: int | None = None
    space: str | None = None
    centroid_view: str = "clean"
    offset_steps: int = 200
    offset_lr: float = 0.05
    lambda_l2: float = 10.0
    lambda_reg: float = 0.03
    regularizer: str = "l2"
    tune_steps: int = 100
    tune_lr: float = 3e-4
    tune_blocks: str | list[int] = "all"
    lambda_tune_l2: float = 10.0
    lambda_locality: float = 0.1
    lambda_locality_l2: float = 1.0
    locality_alpha: float = 0.5
    locality_samples: int = 1
    classifier: str | None = None
    patience: int | None = None
    batching: str = "sequential"

    def check(self) -> None:
        """Raise ValueError on options CRI cannot run with."""
        if self.batching not in ("sequential", "vmap"):
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {self.batching!r}")
        if self.regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {self.regularizer!r}")
        if self.space is not None and self.space not in SPACES:
            raise ValueError(f"space must be 'w', 'w+' or None, got {self.space!r}")
        if self.centroid_view not in ("clean", "degraded"):
            raise ValueError(f"centroid_view must be 'clean' or 'degraded', got {self.centroid_view!r}")
        if self.distance not in ("offline", "critic", "mse", "lpips"):
            raise ValueError(f"distance must be 'offline', 'critic', 'mse' or 'lpips', got {self.distance!r}")
        if self.offset_steps < 1:
            raise ValueError(f"offset_steps must be >= 1, got {self.offset_steps}")
        if self.tune_steps < 0:
            raise ValueError(f"tune_steps must be >= 0 (0 skips pivotal tuning), got {self.tune_steps}")
        if not 0.0 <= self.locality_alpha <= 1.0:
            raise ValueError(f"locality_alpha must lie in [0, 1], got {self.locality_alpha}")
        if self.locality_samples < 1:
            raise ValueError(f"locality_samples must be >= 1, got {self.locality_samples}")
        for name in ("lambda_l2", "lambda_reg", "lambda_tune_l2", "lambda_locality", "lambda_locality_l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def default_space(prior: Prior) -> str:
    """CRI's space: W+ for generators that take one code per block (``num_ws``), else W."""
    n = getattr(prior.generator, "num_ws", None)
    return "w+" if isinstance(n, int) and n >= 1 else "w"


# -- distances compared in measurement space ------------------------------------------------------
# CRI measures distances with VGG / LPIPS features (eqs. 6-8; Algorithm 1). Both sides of a comparison
# go through the same map: measurements A(x) and y are brought to the prior's image size by
# measurement_view (bilinear resize, an identical linear map for both), so in the losses a degraded target
# is compared with degraded candidates; the centroid pick follows Algorithm 1 (clean centre images) unless
# centroid_view="degraded".
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


def _num_ws(prior: Prior, space: str) -> int | None:
    if space == "w":
        return None
    n = getattr(prior.generator, "num_ws", None)
    if not isinstance(n, int) or n < 1:
        raise ValueError(
            f"space='w+' needs a generator that takes one code per block (an int attribute `num_ws` and "
            f"inputs (B, num_ws, *w)); {type(prior.generator).__name__} feeds w to its first block only: "
            "use space='w'"
        )
    return n


class OffsetPrior(Prior):
    """A prior whose latent is CRI's offset: ``code(w_off) = w_cen + w_off`` (CRI eq. 4).

    The engine optimises ``w_off`` from zero with the centroids frozen (a buffer);
    ``latent_penalty`` is the offset regulariser (CRI eq. 5: ``||w_off||_2``; ``l1``: ``||w_off||_1``;
    ``none``: 0). Generator, critic and classes are the base prior's (shared, not copied).

    Args:
        base: the prior.
        start: per-image starting codes ``w_cen``.
        regularizer: ``"l2"``, ``"l1"`` or ``"none"``.
        space: ``"w"`` or ``"w+"`` (one offset per generator block; see the module docstring).

    Shape:
        - start: ``(B, *w_shape)``; latent: ``(B, *w_shape)`` in W, ``(B, num_ws, *w_shape)`` in W+.
    """

    def __init__(
        self, base: Prior, start: torch.Tensor, regularizer: str = "l2", space: str = "w", noise: bool = False
    ):
        if regularizer not in REGULARIZERS:
            raise ValueError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
        num_ws = _num_ws(base, space)
        w_shape = tuple(start.shape[1:])
        shape = w_shape if num_ws is None else (num_ws, *w_shape)
        # noise inputs optimised with the offset (CRI, remark after eq. 6): the code packs them after w
        self.__dict__["_lift"] = None
        if noise:
            from lcm.spaces import code_space_prior

            lifted = code_space_prior(base, space, optimize_noise=True)
            self.__dict__["_lift"] = lifted.lift
            shape = lifted.latent_shape
        super().__init__(
            base.generator,
            "gaussian",
            shape,
            base.image_shape,
            num_classes=base.num_classes,
            kind=f"{base.kind}+cri_offset",
        )
        self.critic = base.critic
        self.regularizer, self.space, self.num_ws = regularizer, space, num_ws
        self.register_buffer("start", start.detach().clone())

    def expand(self, w: torch.Tensor) -> torch.Tensor:
        """A W code as this prior's generator input (repeated per block in W+, noise maps appended)."""
        if self._lift is not None:
            return self._lift(w)
        if self.num_ws is None:
            return w
        return w.unsqueeze(1).expand(-1, self.num_ws, *w.shape[1:])

    def code(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if latent.shape[0] != self.start.shape[0]:
            raise ValueError(
                f"OffsetPrior holds {self.start.shape[0]} centroids, got {latent.shape[0]} offsets"
            )
        return self.expand(self.start) + latent

    def latent_penalty(self, latent: torch.Tensor) -> torch.Tensor:
        flat = latent.flatten(1)
        if self.regularizer == "l2":  # CRI eq. 5
            return torch.linalg.vector_norm(flat, dim=1)
        if self.regularizer == "l1":  # CRI Table 4 ablation
            return flat.abs().sum(dim=1)
        return flat.new_zeros(flat.shape[0])


def _candidate_operator(operator: nn.Module, n: int, k: int, image_shape, ref: torch.Tensor) -> nn.Module:
    """An operator for ``n * k`` candidate rows (image-major) that gives each image's k candidates
    that image's measurement (per-batch-position masks, generated or given with ``set_mask``, also
    inside a :class:`~inversion.operators.Composite`): :meth:`Operator.repeated`."""
    repeated = getattr(operator, "repeated", None)
    return operator if repeated is None else repeated(k)


@torch.no_grad()
def select_centroids(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    centroids: Mapping[int | None, torch.Tensor],
    labels: torch.Tensor | None,
    distance: FeatureDistance,
    chunk: int = 256,
    degrade: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CRI's start point: per image, the centroid whose image is nearest to the input.

    CRI Algorithm 1 ("Estimating a centroid": ``VGG(G.synthesis(centroids))`` against ``VGG(Id)``)
    compares the degraded input with the *clean* centre images (default); the input is resized to the
    prior's image size (:func:`measurement_view`) and a gray input repeated to the image's channels.
    ``degrade=True`` puts each centre image through the same ``operator.A`` as the target first (with
    the image's own mask for per-image masks). Compared with ``distance`` (the paper's VGG distance,
    here the configured one).

    Args:
        prior: the prior.
        operator: the forward model that produced ``y``.
        y: measurements.
        centroids: class label (None when unconditional) -> ``(N, *w_shape)`` centroids.
        labels: ``(B,)`` class of each image, or None.
        distance: a :class:`FeatureDistance`.
        chunk: candidate images per feature batch.

    Returns:
        ``(start, index, distances)``: chosen codes ``(B, *w_shape)``, their index ``(B,)`` into the
        image's class centroids, and all distances ``(B, N)``.

    Shape:
        - y: ``(B, ...)``; labels ``(B,)`` or None.
    """
    b = y.shape[0]
    keys = [None] * b if labels is None else [int(v) for v in labels.tolist()]
    missing = sorted({k for k in keys if k not in centroids}, key=str)
    if missing:
        raise ValueError(f"no centroids for class(es) {missing}: cluster them first")
    sizes = {centroids[k].shape[0] for k in keys}
    if len(sizes) != 1:
        raise ValueError(f"every class needs the same number of centroids, got {sorted(sizes)}")
    k = sizes.pop()
    cand = torch.cat([centroids[key] for key in keys])  # (B * N, *w), image-major
    cand_labels = None if labels is None else labels.repeat_interleave(k)
    images = torch.cat(
        [
            prior.synthesize(cand[i : i + chunk], None if cand_labels is None else cand_labels[i : i + chunk])
            for i in range(0, cand.shape[0], chunk)
        ]
    )
    size = prior.image_shape[-2:]
    target_view = measurement_view(y, size)
    if degrade:
        op = _candidate_operator(operator, b, k, prior.image_shape, y)
        degraded = measurement_view(op.A(images), size)  # the same A as the target's, per image
    else:
        degraded = images  # CRI Algorithm 1: clean centre images
        if target_view.shape[1] == 1 and images.shape[1] > 1:
            target_view = target_view.expand(-1, images.shape[1], -1, -1)  # a gray input as a gray image
    target = distance.features(target_view)
    d = []
    for i in range(0, degraded.shape[0], chunk):
        rows = torch.arange(i, min(i + chunk, degraded.shape[0]), device=y.device) // k
        d.append(distance.between(distance.features(degraded[i : i + chunk]), [t[rows] for t in target]))
    dist = torch.cat(d).view(b, k)
    index = dist.argmin(dim=1)
    start = cand.view(b, k, *cand.shape[1:])[torch.arange(b, device=index.device), index]
    return start, index, dist


def perceptual_term(distance: FeatureDistance, y: torch.Tensor, size: tuple[int, int]) -> LossTerm:
    """Per-image ``d(A(x), y)`` in measurement space (CRI eqs. 6-7, L_LPIPS(I_d, D(I_syn))), with the
    target's features computed once.

    Shape:
        - y: ``(B, C', H', W')``; the term maps a :class:`LossContext` to ``(B,)``.
    """
    with torch.no_grad():
        target = [t.detach() for t in distance.features(measurement_view(y, size))]

    def term(ctx: LossContext) -> torch.Tensor:
        return distance.between(distance.features(measurement_view(ctx.ax, size)), target)

    return term


def locality_term(
    base: Prior,
    distance: FeatureDistance,
    alpha: float = 0.5,
    lambda_l2: float = 0.1,
    samples: int = 1,
    seed: int | Sequence[int] = 0,
) -> LossTerm:
    """CRI eq. 8 (PTI's locality regulariser) as an engine loss term.

    At each call, per image: a random code ``w_rand = base.code(z, c)``, the interpolated code
    ``w_r = pivot + alpha (w_rand - pivot)``, and
    ``d(G_tuned(w_r), G_orig(w_r)) + lambda_l2 * MSE(G_tuned(w_r), G_orig(w_r))``, where ``G_tuned``
    is the image's private generator (``ctx.module.generate``) and ``G_orig`` the frozen original
    (``ctx.prior.synthesize``). Averaged over ``samples`` random codes. Image ``i``'s random codes come
    from its own generator seeded with ``seed[i]`` (an int: ``seed + i``), so an image's draws, and
    its result, do not depend on the batch it runs in.

    Shape:
        - returns a term mapping a :class:`LossContext` to ``(B,)``.
    """
    state: dict[str, list[torch.Generator]] = {}

    def term(ctx: LossContext) -> torch.Tensor:
        if ctx.module is None:
            raise ValueError("the locality term needs the running InversionModule (ctx.module)")
        dev = ctx.latent.device
        b = ctx.latent.shape[0]
        if "g" not in state:
            seeds = [int(seed) + i for i in range(b)] if isinstance(seed, int) else [int(v) for v in seed]
            if len(seeds) != b:
                raise ValueError(f"locality_term has {len(seeds)} seeds for {b} images: give one per image")
            state["g"] = [torch.Generator(device=dev).manual_seed(v) for v in seeds]
        pivot = ctx.prior.code(ctx.latent, ctx.labels).detach()
        total = ctx.latent.new_zeros(b)
        for _ in range(samples):
            with torch.no_grad():
                z = torch.cat([base.sample_latent(1, generator=g) for g in state["g"]])
                w_rand = base.code(z, ctx.labels)
                if isinstance(ctx.prior, OffsetPrior):
                    w_rand = ctx.prior.expand(w_rand)
                w_r = pivot + alpha * (w_rand - pivot)
                # one row at a time, like the private copies: a batched pass differs by rounding, and
                # Adam turns the tiny gradient of that difference into full steps (batch dependence)
                lab = ctx.labels
                x_orig = torch.cat(
                    [
                        ctx.prior.synthesize(w_r[i : i + 1], None if lab is None else lab[i : i + 1])
                        for i in range(b)
                    ]
                )
            x_tuned = ctx.module.generate(w_r)
            mse = (x_tuned - x_orig).pow(2).flatten(1).mean(1)
            total = total + distance(x_tuned, x_orig) + lambda_l2 * mse
        return total / samples

    return term


def resolve_labels(
    prior: Prior, y: torch.Tensor, labels: torch.Tensor | None, classifier: str | None
) -> torch.Tensor | None:
    """The class of each input: given labels, else the classifier's prediction (CRI uses DeiT).

    Shape:
        - y: ``(B, ...)``; output ``(B,)`` int64 or None for an unconditional prior.
    """
    if not prior.num_classes:
        if labels is not None:
            raise ValueError(f"this {prior.kind} prior is unconditional: pass labels=None")
        return None
    if labels is not None:
        labels = torch.as_tensor(labels, device=y.device).long().view(-1)
        if labels.shape[0] != y.shape[0] or (labels < 0).any() or (labels >= prior.num_classes).any():
            raise ValueError(
                f"labels must be {y.shape[0]} class indices in [0, {prior.num_classes}), "
                f"got {labels.tolist()}"
            )
        return labels
    if classifier is None:
        raise ValueError(
            f"this prior is class-conditional ({prior.num_classes} classes) and no labels were given: pass "
            "labels=..., or classifier=<checkpoint of python -m inversion.cri.classifier fit> to infer them"
        )
    from inversion.cri.classifier import infer_labels

    return infer_labels(classifier, measurement_view(y, prior.image_shape[-2:]), prior.num_classes)


def cri(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: CRIConfig | None = None,
    noisy: bool = False,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """CRI, Algorithm 1: nearest centroid (clean centre images), regularised offset, pivotal tuning.

    ``noisy`` is accepted for the method interface and not used (CRI has no noise schedule).

    Returns:
        the fit (images at the last iterate of the tuning stage -- at the best offset iterate when
        ``tune_steps=0`` --, ``latent`` = the pivot
        codes ``w_cen + w_off`` ``(B, *code_shape)``, ``generators`` = tuned copies) and the
        history ``(T_offset + T_tune, B)``.

    Shape:
        - y: ``(B, ...)``; labels ``(B,)`` or None; result images ``(B, C, H, W)``.
    """
    cfg = cfg or CRIConfig()
    if not isinstance(cfg, CRIConfig):
        raise ValueError(f"cri needs a CRIConfig, got {type(cfg).__name__}")
    cfg.check()
    labels = resolve_labels(prior, y, labels, cfg.classifier)
    dist = make_distance(cfg.distance, prior, cfg.distance_resize)
    keys = [None] if labels is None else sorted(set(labels.tolist()))
    centroids = {
        k: cluster_centroids(prior, cfg.n_clusters, cfg.n_samples, k, cfg.cluster_seed, cfg.cache_dir)
        for k in keys
    }
    degrade = cfg.centroid_view == "degraded" or y.dim() != 4
    start, _, _ = select_centroids(prior, operator, y, centroids, labels, dist, degrade=degrade)
    space = cfg.space or default_space(prior)
    offset_prior = OffsetPrior(prior, start, cfg.regularizer, space, cfg.optimize_noise)
    size = tuple(prior.image_shape[-2:])
    terms = {"perceptual": perceptual_term(dist, y, size), **dict(loss_terms or {})}
    w_off0 = torch.zeros(y.shape[0], *offset_prior.latent_shape, device=y.device, dtype=start.dtype)
    offset_stage = Stage(  # CRI eq. 6: perceptual + lambda_1 L2 + lambda_2 ||w_off||
        iterations=cfg.offset_steps,
        latent_lr=cfg.offset_lr,
        weights={"perceptual": 1.0, "mse": cfg.lambda_l2, "latent_prior": cfg.lambda_reg},
        patience=cfg.patience,
        name="cri_offset",
    )
    fit = run_stages(
        offset_prior,
        operator,
        y,
        w_off0,
        [offset_stage],
        labels=labels,
        loss_terms=terms,
        callbacks=callbacks,
    )
    history = fit.history
    if cfg.tune_steps > 0:
        terms["locality"] = locality_term(  # per-image seeds: an image's result ignores its batch
            prior, dist, cfg.locality_alpha, cfg.lambda_locality_l2, cfg.locality_samples, list(seeds)
        )
        tune_stage = Stage(  # CRI eq. 7: pivot frozen, generator tuned with the locality term (eq. 8)
            iterations=cfg.tune_steps,
            latent=False,
            generator=cfg.tune_blocks,
            generator_lr=cfg.tune_lr,
            weights={"perceptual": 1.0, "mse": cfg.lambda_tune_l2, "locality": cfg.lambda_locality},
            patience=cfg.patience,
            name="cri_tune",
        )
        # the locality term is a fresh random draw each step, so the objective cannot rank iterates:
        # keep the last tuned generator (as PTI / CRI Algorithm 1 return after their T steps)
        fit = run_stages(
            offset_prior,
            operator,
            y,
            fit.latent,
            [tune_stage],
            labels=labels,
            loss_terms=terms,
            batching=cfg.batching,
            callbacks=callbacks,
            keep="last",
        )
        history = torch.cat([history, fit.history])
    with torch.no_grad():
        pivot = offset_prior.code(fit.latent, labels)
    return (
        FitResult(fit.images, pivot, fit.objective, fit.mse, fit.history, fit.steps, fit.generators),
        history,
    )
