"""CSGM, IAGAN, back-projection and latent-only restoration as configurations of the stage engine.

* CSGM (Bora et al. 2017): optimise z only, Adam lr 0.1, R random restarts run as one batch of
  ``B * R`` latents, best kept per image (restarts as in Bora et al.; the IAGAN paper gives no
  number, 5 is our default).
* IAGAN (Abu Hussein et al. 2020, eq. 3): from the CSGM latent, jointly fine-tune z and a private
  copy of the generator with small learning rates and a short budget (early stopping), keeping the
  iterate of minimal objective; half the steps for noisy measurements.
* Back-projection (IAGAN eq. 10): ``x + A^dagger (y - A x)`` as a post-step (CSGM-BP, IAGAN-BP).
* Latent-only restoration (LCM eqs. 4-5): optimise the prior's own latent (Gaussian z, GLO sphere,
  or the LCM latent ConvNet parameters phi in their box) with the generator frozen.

Step counts default to values scaled down from the papers for the project's small priors (see
:class:`MethodConfig`); every number can be overridden per call.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import ClassVar

import torch
from torch import nn

from inversion.engine import FitResult, LossTerm, run_stages
from inversion.stages import Stage
from lcm.prior import Prior

__all__ = [
    "METHODS",
    "MethodConfig",
    "RestoreResult",
    "available_methods",
    "csgm",
    "iagan",
    "init_latents",
    "latent_only",
    "method_config",
    "register_method",
    "restore",
]

METHODS = ("csgm", "csgm_bp", "iagan", "iagan_bp", "latent", "latent_bp")  # built in; see available_methods()

# Methods that live in their own modules and register themselves on import (name -> module).
_PLUGINS = {
    "dgp": "inversion.dgp",
    "cri": "inversion.cri",
    "tv": "inversion.baselines",
    "dip": "inversion.baselines",
}


@dataclass
class MethodConfig:
    """Hyper-parameters of the built-in methods (each one a ``restore(..., name=value)`` override).

    Paper values and our scaled defaults (small priors, 16-64 px, CPU):
    CSGM 1600-1800 steps (IAGAN paper) -> ``csgm_steps=500``; lr 0.1 and 5 restarts as published.
    IAGAN joint phase 500-600 steps (BEGAN; PGGAN 300-500) -> ``iagan_steps=300``; lrs 1e-4 for z
    and theta (BEGAN; PGGAN uses 1e-3 for theta) as published; half the steps when noisy.
    Latent-only (LCM eqs. 4-5): ``latent_steps=500``; lr 0.1 for Gaussian z, 0.05 on the sphere,
    ``box / 10`` for LCM's phi (the paper's box is +-0.01).
    ``space``: the latent every method optimises, ``z`` (the prior's own), ``w`` or ``w+`` (the codes of
    a prior with a mapping network, :func:`lcm.spaces.code_space_prior`); ``optimize_noise`` adds the
    generator's noise inputs to a W / W+ latent (StyleGAN2).
    """

    # False where a method gives ``space`` its own meaning (CRI: the offset's space; it clusters in W)
    space_is_latent: ClassVar[bool] = True

    csgm_steps: int = 500
    csgm_lr: float = 0.1
    restarts: int = 5
    latent_prior: float = 0.0
    iagan_steps: int = 300
    iagan_latent_lr: float = 1e-4
    iagan_generator_lr: float = 1e-4
    iagan_blocks: str | list[int] = "all"
    noisy_step_fraction: float = 0.5
    patience: int | None = None
    latent_steps: int = 500
    latent_lr: float | None = None
    batching: str = "sequential"
    stages: list[dict] | None = field(default=None)
    space: str = "z"
    optimize_noise: bool = False
    # a class-conditional prior with unknown classes (-1 / no labels): candidates for DGP's class pick
    label_candidates: int = 500
    # the ``_bp`` methods' A-dagger: ``paper`` (IAGAN: bicubic up-sampling for SR) or ``exact`` (CGLS)
    bp: str = "paper"

    def updated(self, overrides: Mapping) -> MethodConfig:
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown restore() options {sorted(unknown)}; valid options: {sorted(names)}")
        cfg = replace(self, **overrides)
        cfg.check_values()
        return cfg

    def check_values(self) -> None:
        """Raise ValueError naming the first option whose value no fit can run with (before any fit)."""
        for name in ("csgm_steps", "iagan_steps", "latent_steps", "restarts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name, positive in (
            ("csgm_lr", True),
            ("latent_lr", True),
            ("iagan_latent_lr", False),
            ("iagan_generator_lr", False),
            ("latent_prior", False),
            ("noisy_step_fraction", True),
        ):
            v = getattr(self, name)
            if v is None and name == "latent_lr":
                continue
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or v < 0 or (positive and v == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or int(self.patience) < 1):
            raise ValueError(f"patience must be None or a positive integer, got {self.patience!r}")


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


# A method runs (prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms) -> (fit, history).
MethodFn = Callable[..., tuple[FitResult, torch.Tensor]]


@dataclass(frozen=True)
class _Method:
    run: MethodFn
    config: type
    back_projection: bool


_REGISTRY: dict[str, _Method] = {}


def register_method(name: str, run: MethodFn, config: type = MethodConfig, with_bp: bool = True) -> None:
    """Make ``restore(..., method=name)`` run ``run`` (and ``name + "_bp"`` with back-projection).

    Args:
        name: method name (``restore``'s and the CLI's ``method``).
        run: ``run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms)`` returning
            ``(FitResult, history (T, B))``.
        config: a :class:`MethodConfig` subclass holding the method's options (its fields are the
            valid ``restore`` overrides).
        with_bp: also register ``name_bp`` (IAGAN eq. 10 post-step).
    """
    if not (isinstance(config, type) and issubclass(config, MethodConfig)):
        raise ValueError(f"config for method {name!r} must be a MethodConfig subclass, got {config!r}")
    _REGISTRY[name] = _Method(run, config, False)
    if with_bp:
        _REGISTRY[name + "_bp"] = _Method(run, config, True)


def _lookup(method: str) -> _Method:
    base = method.removesuffix("_bp")
    if method not in _REGISTRY and base in _PLUGINS:
        importlib.import_module(_PLUGINS[base])
    if method not in _REGISTRY:
        raise ValueError(f"method must be one of {available_methods()}, got {method!r}")
    return _REGISTRY[method]


def method_config(method: str, overrides: Mapping | None = None) -> MethodConfig:
    """The validated config of ``method`` with ``overrides`` (ValueError names unknown ones)."""
    return _lookup(method).config().updated(dict(overrides or {}))


def available_methods() -> tuple[str, ...]:
    """Every method name ``restore`` accepts (built-in and plug-in)."""
    names = set(_REGISTRY)
    for base in _PLUGINS:
        names.update((base, base + "_bp"))
    return tuple(sorted(names))


def _seeds(seed: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seed, int):
        return [seed + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"seed has {len(seeds)} entries for {n} images: pass one int or one seed per image")
    return seeds


def init_latents(prior: Prior, seeds: Sequence[int], per_image: int = 1) -> torch.Tensor:
    """``per_image`` latents for each image, image ``i`` drawn from its own ``seeds[i]``.

    An image's start therefore does not depend on which other images share its batch or process.

    Shape:
        - output: ``(len(seeds) * per_image, *prior.latent_shape)``, restarts of an image adjacent.
    """
    device = next(prior.generator.parameters()).device
    out = []
    for s in seeds:
        g = torch.Generator(device=device).manual_seed(int(s))
        out.append(prior.sample_latent(per_image, generator=g))
    return torch.cat(out)


def _select_restarts(fit: FitResult, n: int, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the best restart of each image (by best objective) into the ``n * r`` rows."""
    best = fit.objective.view(n, r).argmin(dim=1)
    return torch.arange(n, device=best.device) * r + best, best


def _repeat(t: torch.Tensor | None, r: int) -> torch.Tensor | None:
    return None if t is None else t.repeat_interleave(r, dim=0)


def _repeat_operator(operator: nn.Module, r: int) -> nn.Module:
    """The operator for ``n * r`` restart rows: row ``j`` is measured like image ``j // r``."""
    repeated = getattr(operator, "repeated", None)
    return repeated(r) if r > 1 and callable(repeated) else operator


def csgm(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: MethodConfig | None = None,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """CSGM (Bora et al.): z only, all images x restarts as one batch; best restart per image.

    Returns:
        the fit restricted to each image's best restart, and its history ``(T, B)``.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or MethodConfig()
    n, r = y.shape[0], max(int(cfg.restarts), 1)
    stage = Stage(
        iterations=cfg.csgm_steps,
        latent_lr=cfg.csgm_lr,
        weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
        name="csgm",
    )
    z0 = init_latents(prior, seeds, r)
    op = _repeat_operator(operator, r)
    fit = run_stages(
        prior, op, _repeat(y, r), z0, [stage], _repeat(labels, r), loss_terms, callbacks=callbacks
    )
    rows, _ = _select_restarts(fit, n, r)
    sel = FitResult(
        images=fit.images[rows],
        latent=fit.latent[rows],
        objective=fit.objective[rows],
        mse=fit.mse[rows],
        history=fit.history[:, rows],
        steps=fit.steps[rows],
    )
    return sel, sel.history


def iagan(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: MethodConfig | None = None,
    noisy: bool = False,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """IAGAN (Abu Hussein et al., eq. 3): CSGM start, then joint z + private-generator fine-tuning.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or MethodConfig()
    start, hist0 = csgm(prior, operator, y, seeds, labels, cfg, loss_terms=loss_terms)
    steps = cfg.iagan_steps
    if noisy:  # IAGAN Sec. Experiments: half the iterations for noisy measurements
        steps = max(1, int(round(steps * cfg.noisy_step_fraction)))
    stage = Stage(
        iterations=steps,
        latent=cfg.iagan_latent_lr > 0,
        generator=cfg.iagan_blocks,
        latent_lr=cfg.iagan_latent_lr,
        generator_lr=cfg.iagan_generator_lr,
        weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
        patience=cfg.patience,
        name="iagan",
    )
    fit = run_stages(
        prior, operator, y, start.latent, [stage], labels, loss_terms, cfg.batching, callbacks=callbacks
    )
    return fit, torch.cat([hist0, fit.history])


def latent_only(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: MethodConfig | None = None,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> tuple[FitResult, torch.Tensor]:
    """Latent-only restoration (LCM eq. 4 for a latent ConvNet's phi, eq. 5 for a vector z).

    Uses ``cfg.stages`` (z-only stages) when given, else one stage of ``latent_steps``.

    Shape:
        - y: ``(B, ...)``; result images ``(B, C, H, W)``.
    """
    cfg = cfg or MethodConfig()
    lr = cfg.latent_lr
    if lr is None:
        lr = {"gaussian": 0.1, "sphere": 0.05}.get(prior.latent_kind, (prior.box or 1.0) / 10)
    stages = cfg.stages or [
        Stage(
            cfg.latent_steps,
            latent_lr=lr,
            weights={"mse": 1.0, "latent_prior": cfg.latent_prior},
            name="latent",
        )
    ]
    n, r = y.shape[0], max(int(cfg.restarts), 1)
    z0 = init_latents(prior, seeds, r)
    op = _repeat_operator(operator, r)
    fit = run_stages(
        prior, op, _repeat(y, r), z0, stages, _repeat(labels, r), loss_terms, cfg.batching, callbacks
    )
    rows, _ = _select_restarts(fit, n, r)
    gens = None if fit.generators is None else [fit.generators[i] for i in rows.tolist()]
    sel = FitResult(
        fit.images[rows],
        fit.latent[rows],
        fit.objective[rows],
        fit.mse[rows],
        fit.history[:, rows],
        fit.steps[rows],
    )
    sel.generators = gens
    return sel, sel.history


def back_projection(x: torch.Tensor, y: torch.Tensor, operator: nn.Module, bp: str = "paper") -> torch.Tensor:
    """IAGAN eq. 10: ``x + A^dagger (y - A x)`` (linear operators only; for low noise).

    ``bp="paper"`` (default) uses IAGAN's A-dagger: for super-resolution bicubic up-sampling (IAGAN
    Sec. 4.2, "A-dagger can be implemented by bicubic upsampling"; Matlab ``imresize``), elsewhere the
    exact pseudo-inverse; ``bp="exact"`` always the exact pseudo-inverse (``operator.A_dagger``, CGLS),
    which makes ``A x_bp = y`` hold exactly.

    Shape:
        - x: ``(B, C, H, W)``; y: ``(B, ...)``; output like x (not clamped).
    """
    if bp not in ("paper", "exact"):
        raise ValueError(f"bp must be 'paper' (IAGAN's bicubic A-dagger for SR) or 'exact', got {bp!r}")
    if not getattr(operator, "linear", False):
        raise ValueError(
            f"back-projection needs a linear operator (with A_dagger); {type(operator).__name__} is not"
        )
    from inversion.operators import SuperResolution, back_project

    if bp == "paper" and isinstance(operator, SuperResolution):
        from inversion.operators.functional import bicubic_upsample

        return x + bicubic_upsample(y - operator.A(x), operator.factor)
    return back_project(x, y, operator)


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
    if y.is_floating_point() or y.is_complex():
        for bad, found in (("NaN", torch.isnan(y)), ("Inf", torch.isinf(y))):
            if found.any():
                raise ValueError(
                    f"y contains {bad} values ({int(found.sum())} of {y.numel()} entries): the measurements "
                    "must be finite; check how y was computed or loaded"
                )
    if prior is None:  # prior-free methods (tv, dip) have no image shape to check against
        return
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
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor (B,) in [0, {k}), got {labels!r}")
    if tuple(labels.shape) != (n,):
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected ({n},): one class per image")
    if labels.numel() and (int(labels.min()) < -1 or int(labels.max()) >= k):
        raise ValueError(
            f"labels must be class indices in [0, {k}) (or -1: unknown, picked as DGP does) for this "
            f"{k}-class prior, got {int(labels.min())} to {int(labels.max())}"
        )


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
        method: one of :func:`available_methods` (``csgm``, ``iagan``, ``latent``, ``dgp``, ``cri``,
            each also with ``_bp``).
        seed: an int (image ``i`` uses ``seed + i``) or one seed per image. Same seed, same result.
        labels: ``(B,)`` class labels for a class-conditional prior; unknown ones (-1, or None) are
            picked as DGP does (best of ``label_candidates`` random latent/class pairs).
        x_true: ground truth ``(B, C, H, W)``; when given, per-image metrics are returned.
        noisy: whether y is noisy (IAGAN halves its steps); default: ``operator.sigma > 0``.
        callbacks: Lightning callbacks for the fits.
        loss_terms: extra per-image loss terms for custom ``stages``.
        **overrides: fields of the method's config (:class:`MethodConfig` or its subclass), e.g.
            ``csgm_steps=200, restarts=3``.

    Shape:
        - y: ``(B, ...)``; x_true and ``result.images``: ``(B, C, H, W)``.
    """
    spec = _lookup(method)
    _check_inputs(y, operator, prior, labels, x_true)
    cfg = spec.config().updated(overrides)
    if cfg.batching not in ("sequential", "vmap"):
        raise ValueError(f"batching must be 'sequential' or 'vmap', got {cfg.batching!r}")
    if noisy is None:
        noisy = float(getattr(operator, "sigma", 0.0)) > 0
    seeds = _seeds(seed, y.shape[0])
    if cfg.space_is_latent:
        from lcm.spaces import code_space_prior

        prior = code_space_prior(prior, cfg.space, cfg.optimize_noise)
    t0 = time.perf_counter()
    unknown = labels is None or bool((labels < 0).any())
    if prior is not None and prior.num_classes and unknown and not getattr(spec.run, "selects_labels", False):
        from inversion.dgp.init import sample_labels  # DGP's class pick, for every method

        labels = sample_labels(prior, operator, y, seeds, labels, cfg.label_candidates)
    fit, history = spec.run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms)
    with torch.no_grad():
        raw = fit.images
        if spec.back_projection:
            raw = back_projection(raw, y, operator, getattr(cfg, "bp", "paper"))
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
        config=asdict(cfg),
        prior=prior,
    )


register_method("csgm", lambda p, o, y, s, lab, c, noisy, cb, lt: csgm(p, o, y, s, lab, c, cb, lt))
register_method("iagan", iagan)
register_method("latent", lambda p, o, y, s, lab, c, noisy, cb, lt: latent_only(p, o, y, s, lab, c, cb, lt))
