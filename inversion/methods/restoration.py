"""``restore()``: measurements, an operator and a prior in, restorations and their diagnostics out.

The method runs as registered (:mod:`inversion.methods.registry`): its config validates the options, its
declared start picks unknown classes (``start="dgp_class_pick"``) or leaves them to the method, and a
``*_bp`` name adds IAGAN's back-projection (eq. 10) after the fit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from inversion.engine import LossTerm, check_prior
from inversion.methods.common import PriorConfig
from inversion.methods.registry import get_method, get_start
from inversion.operators.base import BP_MODES, back_project
from lcm.prior import Prior

__all__ = ["RestoreResult", "restore"]


@dataclass
class RestoreResult:
    """Restorations and their diagnostics.

    Attributes:
        images: ``(B, C, H, W)`` restorations in [0, 1]; ``raw``: the same before clamping (after BP
            a restoration can leave [0, 1]).
        latent: ``(B, *latent_shape)`` fitted latents.
        objective: ``(B,)`` best objective of the fit; ``measurement_mse``: ``(B,)``
            ``mean((A(raw) - y)^2)`` of the returned restoration.
        history: ``(T, B)`` objective per step (all phases, best restart).
        metrics: per-image ``psnr``, ``ssim``, ``residual`` (``||A(x) - y||_2``) and, for inpainting,
            ``masked_psnr`` (inside the hole) when
            ``x_true`` was given, else None.
        seconds: wall time of the restoration.
        generators: per-image fine-tuned generator copies (IAGAN), else None.
        prior: the prior that was inverted (so that ``inversion.exploration.explore(result, op, y)``
            can rebuild the generator of each image).
        labels: ``(B,)`` the classes the fit used (unknown ones as picked), None for an unconditional
            prior or a method that infers them itself.
    """

    images: torch.Tensor
    raw: torch.Tensor
    latent: torch.Tensor
    objective: torch.Tensor
    measurement_mse: torch.Tensor
    history: torch.Tensor
    method: str
    seconds: float
    metrics: dict[str, torch.Tensor] | None = None
    generators: list[nn.Module] | None = None
    config: dict = field(default_factory=dict)
    prior: Prior | None = field(default=None, repr=False)
    labels: torch.Tensor | None = None


def _seeds(seed: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"seed has {len(seeds)} entries for {n} images: pass one int or one seed per image")
    return seeds


def _metrics(
    x: torch.Tensor, x_true: torch.Tensor, y: torch.Tensor, operator: nn.Module
) -> dict[str, torch.Tensor]:
    from inversion import metrics as M

    out = {
        "psnr": M.psnr(x, x_true),
        "ssim": M.ssim(x, x_true),
        "residual": M.measurement_residual(x, y, operator),
    }
    mask = _hole_mask(operator, x_true)
    if mask is not None:
        out["masked_psnr"] = M.masked_psnr(x, x_true, mask)
    return out


def _hole_mask(operator: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The region to score inpainting in (the unknown pixels), when the operator is an inpainting one."""
    mask_for = getattr(operator, "mask_for", None)
    if mask_for is None:
        return None
    return 1.0 - mask_for(x).to(x.dtype).expand_as(x)


def _check_inputs(
    y: torch.Tensor,
    operator: nn.Module,
    prior: Prior,
    labels: torch.Tensor | None,
    x_true: torch.Tensor | None,
) -> None:
    """What ``restore`` can check before a fit: y's values and shape, x_true's shape, the labels."""
    if not isinstance(y, torch.Tensor) or y.dim() < 2:
        raise ValueError("y must be a batched tensor (B, ...) of measurements")
    if y.shape[0] == 0:
        raise ValueError("y holds a batch of 0 measurements: pass at least one image's y (B >= 1)")
    if y.is_floating_point() or y.is_complex():
        for bad, found in (("NaN", torch.isnan(y)), ("Inf", torch.isinf(y))):
            if found.any():
                raise ValueError(
                    f"y contains {bad} values ({int(found.sum())} of {y.numel()} entries): the measurements "
                    "must be finite; check how y was computed or loaded"
                )
    if prior is None:  # prior-free methods (tv, dip) have no image shape to check against
        return
    check_prior(prior)
    n = y.shape[0]
    want_x = (n, *prior.image_shape)
    if x_true is not None and tuple(x_true.shape) != want_x:
        raise ValueError(f"x_true has shape {tuple(x_true.shape)}; this prior's images need {want_x}")
    with torch.no_grad():  # the measurement of a blank image has exactly the shape y must have
        probe = operator.A(
            torch.zeros(want_x, device=y.device, dtype=y.dtype if y.is_floating_point() else None)
        )
    if tuple(y.shape) != tuple(probe.shape):
        raise ValueError(
            f"y has shape {tuple(y.shape)}, but {type(operator).__name__} measures this prior's images "
            f"{tuple(prior.image_shape)} as {tuple(probe.shape)}: pass y = operator(x) for x of that shape"
        )
    k = prior.num_classes
    if labels is None:  # a conditional prior without labels: the method infers them (CRI) or says so
        return
    if not k:
        raise ValueError("labels were given, but this prior is unconditional: leave labels out")
    if (
        not isinstance(labels, torch.Tensor)
        or labels.is_floating_point()
        or labels.is_complex()
        or labels.dtype == torch.bool
    ):
        raise ValueError(f"labels must be an integer tensor (B,) in [0, {k}), got {labels!r}")
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels are {labels.dtype}: pass class indices as labels.long() (int64)")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({n},): one class per image")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= k):
        raise ValueError(
            f"labels must be class indices in [0, {k}) (or -1: unknown, picked as DGP does) for this "
            f"{k}-class prior, got {int(labels.min())} to {int(labels.max())}"
        )


def _plain_config(cfg) -> dict:
    """The config as plain values (a tensor option, e.g. ``init_latent``, as its shape)."""
    return {k: list(v.shape) if isinstance(v, torch.Tensor) else v for k, v in asdict(cfg).items()}


def restore(
    y: torch.Tensor,
    operator: nn.Module,
    prior: Prior,
    method: str = "csgm",
    seed: int | Sequence[int] = 0,
    labels: torch.Tensor | None = None,
    x_true: torch.Tensor | None = None,
    noisy: bool | None = None,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
    **overrides,
) -> RestoreResult:
    """Restore images from measurements ``y = A(x) + noise`` with a prior.

    Args:
        y: measurements, as ``operator(x)`` returns them.
        operator: the forward model (``inversion.operators``).
        prior: a :class:`lcm.Prior`.
        method: one of :func:`~inversion.methods.available_methods` (``csgm``, ``iagan``, ``latent``,
            ``dgp``, ``cri``, ``tv``, ``dip``, each also with ``_bp``).
        seed: an int (image ``i`` uses ``seed + i``) or one seed per image. Same seed, same result.
        labels: ``(B,)`` class labels for a class-conditional prior; unknown ones (-1, or None) are
            picked as DGP does (best of ``label_candidates`` random latent/class pairs) for methods
            registered with ``start="dgp_class_pick"``; other methods infer them themselves.
        x_true: ground truth ``(B, C, H, W)``; when given, per-image metrics are returned.
        noisy: whether y is noisy (IAGAN halves its steps); default: ``operator.sigma > 0``.
        callbacks: Lightning callbacks for the fits.
        loss_terms: extra per-image loss terms for custom ``stages``.
        **overrides: fields of the method's config (``get_method(method).config``), e.g.
            ``csgm_steps=200, restarts=3`` for CSGM; an unknown one fails naming the valid ones. A ``_bp``
            method also takes ``bp``: ``code`` (default; the A-dagger of IAGAN's ``main.py``,
            ``F.interpolate(mode='bicubic')`` for super-resolution), ``paper`` (its paper's bicubic
            up-sampling) or ``exact`` (the exact pseudo-inverse, CGLS); see
            :func:`inversion.operators.back_project`. CSGM / IAGAN take ``init_latent`` (their starts)
            and ``keep`` (``last`` / ``best``).

    Shape:
        - y: ``(B, ...)``; x_true and ``result.images``: ``(B, C, H, W)``.
    """
    spec = get_method(method)
    _check_inputs(y, operator, prior, labels, x_true)
    if prior is None and issubclass(spec.config, PriorConfig):
        raise ValueError(f"method {method!r} restores with a prior: pass prior=lcm.load_prior(path_or_name)")
    bp = "code"
    if spec.back_projection:  # the back-projection step's own option, for every ``_bp`` method
        overrides = dict(overrides)
        bp = overrides.pop("bp", "code")
        if bp not in BP_MODES:
            raise ValueError(
                f"bp must be one of {BP_MODES} (IAGAN main.py's A-dagger, its paper's bicubic one for SR, or "
                f"the exact pseudo-inverse), got {bp!r}"
            )
    cfg = spec.make_config(overrides)
    if noisy is None:
        noisy = float(getattr(operator, "sigma", 0.0)) > 0
    seeds = _seeds(seed, y.shape[0])
    if isinstance(cfg, PriorConfig) and cfg.space_is_latent:
        from lcm.spaces import code_space_prior

        prior = code_space_prior(prior, cfg.space, cfg.optimize_noise)
    t0 = time.perf_counter()
    start = get_start(spec.start).run  # e.g. DGP's class pick (inversion.dgp.starts)
    if start is not None:
        labels = start(prior, operator, y, seeds, labels, cfg)
    fit, history = spec.run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms)
    with torch.no_grad():
        raw = fit.images
        if spec.back_projection:
            raw = back_project(raw, y, operator, bp)
        images = raw.clamp(0.0, 1.0)
        measurement_mse = (operator.A(raw) - y).pow(2).flatten(1).mean(dim=1)
    seconds = time.perf_counter() - t0
    metrics = None
    if x_true is not None:
        with torch.no_grad():
            metrics = _metrics(images, x_true, y, operator)
    return RestoreResult(
        images=images,
        raw=raw,
        latent=fit.latent,
        objective=fit.objective,
        measurement_mse=measurement_mse,
        history=history,
        method=method,
        seconds=seconds,
        metrics=metrics,
        generators=fit.generators,
        config=_plain_config(cfg),
        prior=prior,
        labels=labels,
    )
