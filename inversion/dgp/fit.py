"""The DGP fit (Pan et al. 2020; ``restore(method="dgp")`` registers it in :mod:`inversion.dgp.method`):
best-of-N start, then progressive fine-tuning of a per-image generator copy
under the critic feature + MSE loss (DGP eqs. 2-3).

Two variants (``variant``):

* ``faithful`` (default): DGP's released ``run()`` step by step (:mod:`inversion.dgp.faithful`): one
  persistent Adam pair with betas (0, 0.999), per-group learning rates with ``lr_ratio``, every group's
  gradient computed (frozen groups at learning rate 0 still accumulate Adam moments), the critic loss as
  its code reduces it, frozen IN affine.
* ``fast``: the stage engine (:func:`inversion.engine.run_stages`): frozen groups get no gradient and each
  stage builds a fresh Adam (0.9, 0.999). Faster, not DGP; see ``benchmarks/dgp_step.py``.

Each stage of a DGP schedule is one mapping, one column of a DGP script: ``blocks`` (DGP's ``ft_num``:
how many parameter groups train, group 0 = the latent-side layer, then one per block, the output layer
last), ``iterations``, ``latent_lr`` (``z_lrs``), ``generator_lr`` (``G_lrs``), ``lr_ratio``,
``weights: {critic: w_D_loss, mse: w_mse}`` (``mse`` weighs DGP's MSE of [-1, 1] images in both variants),
``critic_features`` (``ftr_num``), ``instance_norm`` (``use_in``). :func:`script_stages` turns a script's
arguments into these options; ``configs/inversion/dgp/`` holds one preset per released script
(``preset: imagenet1k_128/SR/D_biased`` etc.) and our scaled small-prior presets.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from callbacks import BatchNormToInstanceNorm, ProgressiveUnfreezing
from inversion.dgp.faithful import fit_faithful, parse_stages, score_candidates
from inversion.dgp.init import CandidateInit, candidate_pool, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE, PerceptualLoss
from inversion.dgp.operators import MODES
from inversion.dgp.schedule import schedule_to_stages
from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.common import PriorConfig
from inversion.methods.registry import check_number, check_positive_int
from lcm.configs import config_dir, load_options
from lcm.prior import Prior

__all__ = [
    "DEFAULT_STAGES",
    "DGPConfig",
    "DGPFit",
    "PRESET_DIR",
    "fit_dgp",
    "load_preset",
    "resolve_config",
    "scaled_options",
    "script_stages",
]

PRESET_DIR = config_dir() / "inversion" / "dgp"

# DGP's imagenet1k_128/SR/D_biased/train.sh (Table 9 balances critic and MSE), iterations scaled 200 -> 40
# for small priors on a CPU; ft_num 2..6 as the script (DGP's groups: the latent-side layer is group 0).
DEFAULT_STAGES = [
    {"blocks": b, "iterations": 40, "generator_lr": g, "latent_lr": z, "weights": {"critic": 1, "mse": 1}}
    for b, g, z in zip(
        [2, 3, 4, 5, 6], [5e-5, 5e-5, 2e-5, 1e-5, 1e-5], [2e-3, 1e-3, 2e-5, 1e-5, 1e-5], strict=True
    )
]


@dataclass
class DGPConfig(PriorConfig):
    """Options of ``restore(..., method="dgp")`` (also ``options:`` of ``python -m inversion``).

    Args (beyond :class:`~inversion.methods.PriorConfig`'s ``space`` and ``optimize_noise``):
        stages: the DGP schedule (see the module docstring; None: :data:`DEFAULT_STAGES`).
        batching: the fast variant's per-image generator copies run ``sequential`` or stacked (``vmap``).
        preset: a schedule from ``configs/inversion/dgp/<preset>.yaml`` (its ``options``) or a YAML path;
            its values fill every option left at its default here.
            Without a preset and without ``stages``, a prior with no critic runs preset ``mse`` (DGP
            Table 4's MSE variant) with a one-line warning; ``perceptual`` is Table 4's other
            critic-less variant. Critic-weighted stages on such a prior raise, naming both.
        critic_blocks: critic blocks used by the feature loss (None: all; DGP uses all of BigGAN's).
        lift: how measurements reach the critic's image grid, ``resize`` or ``pseudo_inverse``.
        n_candidates: latents scored for the start (DGP appendix B: 500).
        candidate_batch: candidates per generator / critic call, or ``auto`` (default): as many as fit a
            quarter of the free memory (CPU RAM or CUDA memory; :func:`lcm.runtime.budget_rows`). The scores
            do not depend on it (tests/inversion/test_dgp_trace.py: the trace's pick, chunked or not).
        candidate_bf16: score the start's candidates (and the class pick's) under bf16 autocast: faster
            where the device has bf16 units; scores move by rounding, so a near tie can pick another
            candidate (off by default; the trace's picks are kept, tests/inversion/test_dgp_trace.py).
        candidate_seed: one candidate pool for all images (None: each image's own seed).
        init_metric: ``critic`` (DGP) or ``mse`` for the candidate scoring; None: ``critic`` when the
            first stage weights the critic term, else ``mse``.
        bn_to_in: swap BatchNorm for InstanceNorm per image (DGP appendix B; Tables 7, 8, 10).
        stop_mse: end the current stage for an image once its measurement MSE (on [0, 1] images) is
            <= this; it resumes in the next stage from the iterate that met it (DGP's ``run()`` breaks
            out of the stage only). DGP's defence uses 5e-3 on [-1, 1] images, i.e. 1.25e-3 here.
        critic_reduction: ``block_mean`` (default: DGP's released code, ``F.l1_loss`` per feature, summed)
            or ``paper`` (eq. 3's summed L1 norms over the mean feature size; kept because it is the loss the
            paper writes and the one our earlier small-prior results used); see
            :class:`~inversion.dgp.losses.CriticFeatureLoss`.
        keep: the iterate returned, ``last`` (DGP's ``run()`` returns its final ``x``) or ``best``
            (least objective, as CSGM / IAGAN).
        colorize_output: for a gray measurement of a colour prior, return the target's luminance with
            the predicted chroma (DGP Sec. 4.1, Lab via kornia).
        finetune_embedding: also fine-tune the generator's class embedding with its first block (DGP
            Table 7, inpainting; no effect on an unconditional prior).
        w_nll: weight of DGP's latent term ``mean(z**2 / 2)`` (its scripts: 0.02; manipulation 0.2).
        candidate_std: std of the Gaussian candidates of the start (DGP's ``sample_std``; its scripts use
            0.3 for SR / inpainting, 0.5 for colorization and manipulation; 1 = the prior's own distribution).
        candidate_features: the start scores candidates on the last this many critic features (DGP's
            ``select_z``: 3; faithful variant).
        variant: ``faithful`` (DGP's ``run()``) or ``fast`` (see the module docstring).
        init_latent: ``(B, *latent_shape)`` start latents given by the user (no candidate search); labels
            must then be known for a class-conditional prior.
        stop_ftr: DGP's ``--stop_ftr``: a stage ends once the critic loss is below it (faithful variant).
        scale: multiply every stage's ``iterations`` by this (rounded, at least 1): shortens any preset,
            e.g. ``scale: 0.05`` for a CPU run of a released script's 200-400 steps per stage.

    A stage's ``blocks`` (DGP's ``ft_num``) counts parameter groups: on BigGAN group 0 is the first linear
    layer (+ the class embedding with ``finetune_embedding``), groups 1..5 the residual blocks, group 6 the
    output layer, which DGP's optimizer never holds (the faithful variant leaves it out too, so ``ft_num``
    7 or 8 of the 256-px scripts means every residual block); on our generators group 0 is the latent-side
    layer, then each block, the output layer last. A count above the depth trains every group.
    """

    stages: list[dict] | None = None
    batching: str = "sequential"
    preset: str | None = None
    critic_blocks: list[int] | None = None
    lift: str = "resize"
    n_candidates: int = 500
    candidate_batch: int | str = "auto"
    candidate_bf16: bool = False
    candidate_seed: int | None = None
    init_metric: str | None = None
    bn_to_in: bool = False
    stop_mse: float | None = None
    colorize_output: bool = True
    critic_reduction: str = "block_mean"
    keep: str = "last"
    finetune_embedding: bool = False
    w_nll: float = 0.0
    candidate_std: float = 1.0
    candidate_features: int | None = 3
    variant: str = "faithful"
    init_latent: torch.Tensor | None = None
    stop_ftr: float | None = None
    scale: float | None = None

    def check(self) -> None:
        """Every option's type and range (ValueError naming the first bad one), before any work; a
        faithful ``stages`` list is parsed stage by stage (:func:`~inversion.dgp.faithful.parse_stages`)."""
        super().check()
        for name, allowed in _CHOICES.items():
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"{name} must be one of {sorted(map(str, allowed))}, got {v!r}")
        for name in ("bn_to_in", "colorize_output", "finetune_embedding", "candidate_bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_positive_int(self, "n_candidates")
        cb = self.candidate_batch
        if cb != "auto" and (isinstance(cb, bool) or not isinstance(cb, int) or cb < 1):
            raise ValueError(f"candidate_batch must be a positive integer or 'auto', got {cb!r}")
        if self.candidate_features is not None:
            check_positive_int(self, "candidate_features")
        if self.candidate_seed is not None and (
            isinstance(self.candidate_seed, bool) or not isinstance(self.candidate_seed, int)
        ):
            raise ValueError(f"candidate_seed must be an integer or None, got {self.candidate_seed!r}")
        check_number(self, "w_nll")
        check_number(self, "candidate_std", positive=True)
        check_number(self, "stop_mse", positive=True, optional=True)
        check_number(self, "stop_ftr", optional=True)
        check_number(self, "scale", positive=True, optional=True)
        if self.preset is not None and not isinstance(self.preset, str):
            raise ValueError(f"preset must be a preset name or a YAML path, got {self.preset!r}")
        cb = self.critic_blocks
        if cb is not None and (
            isinstance(cb, (str, bytes))
            or not isinstance(cb, Sequence)
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in cb)
        ):
            raise ValueError(f"critic_blocks must be a list of block indices or None, got {cb!r}")
        if self.init_latent is not None and not isinstance(self.init_latent, torch.Tensor):
            raise ValueError(
                f"init_latent must be a (B, *latent_shape) tensor or None, got {type(self.init_latent)}"
            )
        if self.stages is not None:
            if isinstance(self.stages, Mapping) or not isinstance(self.stages, Sequence) or not self.stages:
                raise ValueError("stages must be a non-empty list of stage mappings (or None)")
            if self.variant == "faithful":
                parse_stages(self.stages)
            elif not all(isinstance(st, Mapping) for st in self.stages):
                raise ValueError("stages must be a list of stage mappings")


_CHOICES = {
    "batching": ("sequential", "vmap"),
    "lift": ("resize", "pseudo_inverse"),
    "init_metric": (None, "critic", "mse"),
    "critic_reduction": ("block_mean", "paper"),
    "keep": ("last", "best"),
    "variant": ("faithful", "fast"),
}


def load_preset(name: str) -> dict:
    """The ``options`` mapping of a DGP preset: a name under ``configs/inversion/dgp/`` (our scaled presets
    ``sr_mse`` ..., DGP's scripts ``imagenet1k_128/SR/D_biased`` ..., ``examples/run_SR`` ...) or a path."""
    path = Path(name)
    if not path.is_file():
        path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = (
            sorted(str(p.relative_to(PRESET_DIR).with_suffix("")) for p in PRESET_DIR.rglob("*.yaml"))
            if PRESET_DIR.is_dir()
            else []
        )
        raise FileNotFoundError(f"DGP preset {name!r} not found: give a YAML path or one of {known}")
    return load_options(path)


def resolve_config(cfg: DGPConfig) -> DGPConfig:
    """``cfg`` checked, its preset's options filled in, its ``scale`` applied to the stages."""
    cfg.check()
    if cfg.preset is not None:
        opts = load_preset(cfg.preset)
        opts.pop("preset", None)
        defaults = DGPConfig()
        keep = {
            f.name
            for f in fields(cfg)
            if getattr(cfg, f.name) is not getattr(defaults, f.name)
            and not (
                not isinstance(getattr(cfg, f.name), torch.Tensor)
                and getattr(cfg, f.name) == getattr(defaults, f.name)
            )
        }
        cfg = cfg.updated({k: v for k, v in opts.items() if k not in keep} | {"preset": None})
    if cfg.scale is not None:
        cfg = cfg.updated({"stages": scaled_options(cfg.stages or DEFAULT_STAGES, cfg.scale), "scale": None})
    return cfg


def scaled_options(stages: Sequence[Mapping], scale: float) -> list[dict]:
    """``stages`` with every ``iterations`` multiplied by ``scale`` (rounded, at least 1)."""
    return [{**s, "iterations": max(1, round(int(s["iterations"]) * float(scale)))} for s in stages]


def _per_stage(name: str, value, n: int) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) < n:
            raise ValueError(f"{name} has {len(value)} entries for {n} stages: give one per stage")
        return list(value)[:n]
    return [value] * n


def script_stages(
    ft_num: Sequence[int],
    ftr_num: Sequence[int],
    lr_ratio: Sequence[float],
    w_D_loss: Sequence[float],
    w_mse: Sequence[float],
    w_nll: float,
    G_lrs: Sequence[float],
    z_lrs: Sequence[float],
    use_in: Sequence[bool],
    update_embed: bool = False,
    iterations: Sequence[int] = (200, 200, 200, 200),
    sample_std: float = 1.0,
    select_num: int = 500,
    mode: str | None = None,
    stop_mse: float = 0.0,
) -> dict:
    """The arguments of one of DGP's scripts (``main.py`` flags, ``utils/common_utils.py``
    ``add_dgp_parser``) as the keyword options of ``restore(..., method="dgp", **opts)``.

    Per-stage lists have one entry per ``iterations`` entry (longer lists are cut, as DGP indexes them by
    stage). ``mode`` (DGP's ``--dgp_mode``) is checked but chooses nothing here: pass
    ``inversion.dgp.dgp_operator(mode, resolution)`` as the operator. ``stop_mse`` is DGP's threshold
    on its [-1, 1] MSE (0: never).
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (DGP's --dgp_mode) or None, got {mode!r}")
    n = len(iterations)
    cols = {
        k: _per_stage(k, v, n)
        for k, v in (
            ("ft_num", ft_num),
            ("ftr_num", ftr_num),
            ("lr_ratio", lr_ratio),
            ("w_D_loss", w_D_loss),
            ("w_mse", w_mse),
            ("G_lrs", G_lrs),
            ("z_lrs", z_lrs),
            ("use_in", use_in),
        )
    }
    stages = []
    for k in range(n):
        stage = {
            "blocks": int(cols["ft_num"][k]),
            "iterations": int(iterations[k]),
            "generator_lr": float(cols["G_lrs"][k]),
            "latent_lr": float(cols["z_lrs"][k]),
            "lr_ratio": float(cols["lr_ratio"][k]),
            "weights": {"critic": float(cols["w_D_loss"][k]), "mse": float(cols["w_mse"][k])},
            "critic_features": int(cols["ftr_num"][k]),
            "instance_norm": bool(cols["use_in"][k]),
        }
        if stop_mse:
            stage["stop_mse"] = float(stop_mse)
        stages.append(stage)
    return {
        "variant": "faithful",
        "stages": stages,
        "w_nll": float(w_nll),
        "candidate_std": float(sample_std),
        "n_candidates": int(select_num),
        "candidate_features": 3,
        "finetune_embedding": bool(update_embed),
        "critic_reduction": "block_mean",
        "keep": "last",
    }


@dataclass
class DGPFit:
    """A DGP fit: the engine result (per-image generators in ``fit.generators``), the labels the fit
    used (``(B,)`` or None; chosen by the start for unknown classes) and the candidate start."""

    fit: FitResult
    labels: torch.Tensor | None
    init: CandidateInit


def _faithful_start(prior, operator, y, seeds, labels, cfg: DGPConfig) -> CandidateInit:
    """DGP's ``select_z``: per image the best of ``n_candidates`` latents drawn at ``candidate_std``
    under the critic loss on the last ``candidate_features`` features (MSE without a critic)."""
    if cfg.init_latent is not None:
        z = torch.as_tensor(cfg.init_latent)
        if tuple(z.shape) != (y.shape[0], *prior.latent_shape):
            raise ValueError(
                f"init_latent must be (B, *latent_shape) = {(y.shape[0], *prior.latent_shape)}, "
                f"got {tuple(z.shape)}"
            )
        if prior.num_classes and (labels is None or bool((labels < 0).any())):
            raise ValueError(
                "init_latent on a class-conditional prior needs known labels (>= 0) for every image"
            )
        ref = next(prior.generator.parameters())
        n = y.shape[0]
        return CandidateInit(
            z.to(ref), labels, torch.full((n,), float("nan")), torch.full((n,), -1, dtype=torch.long)
        )
    if prior.critic is None or cfg.init_metric == "mse":
        return select_latents(
            prior,
            operator,
            y,
            MeasurementMSE(),
            seeds,
            labels,
            cfg.n_candidates,
            cfg.candidate_batch,
            cfg.candidate_seed,
            cfg.candidate_std,
            cfg.candidate_bf16,
        )
    n = y.shape[0]
    zs, labs, scores, idx = [], [], [], []
    for i in range(n):
        known = prior.num_classes and labels is not None and int(labels[i]) >= 0
        seed = int(cfg.candidate_seed) if cfg.candidate_seed is not None else int(seeds[i])
        z, zl = candidate_pool(
            prior, cfg.n_candidates, seed, int(labels[i]) if known else None, cfg.candidate_std
        )
        d = score_candidates(
            prior,
            operator,
            y[i : i + 1],
            z,
            zl,
            cfg.candidate_features,
            cfg.critic_reduction,
            cfg.candidate_batch,
            cfg.candidate_bf16,
        )
        j = int(d.argmin())
        zs.append(z[j : j + 1])
        labs.append(None if zl is None else zl[j : j + 1])
        scores.append(d[j])
        idx.append(j)
    out_labels = torch.cat(labs).to(y.device) if prior.num_classes else None
    return CandidateInit(torch.cat(zs), out_labels, torch.stack(scores), torch.tensor(idx))


def _fit_faithful(prior, operator, y, seeds, labels, cfg: DGPConfig, callbacks, loss_terms) -> DGPFit:
    if cfg.batching != "sequential":
        raise ValueError(
            "the faithful DGP run fits one image at a time (batching='sequential'); batching='vmap' needs "
            "variant='fast'"
        )
    if cfg.keep != "last":
        raise ValueError("DGP's run() returns its last iterate: keep='best' needs variant='fast'")
    stages = parse_stages(cfg.stages if cfg.stages is not None else DEFAULT_STAGES)
    for s in stages:
        if cfg.bn_to_in:
            s.instance_norm = True
        if cfg.stop_mse is not None and s.stop_mse is None:
            s.stop_mse = 4.0 * float(cfg.stop_mse)  # ours on [0, 1] images, DGP's on [-1, 1]
    if any(s.extra.get("perceptual", 0.0) for s in stages) and "perceptual" not in (loss_terms or {}):
        # DGP Table 4's perceptual variant
        loss_terms = {**(loss_terms or {}), "perceptual": PerceptualLoss(prior.image_shape, lift=cfg.lift)}
    if prior.num_classes and labels is None:
        labels = torch.full((y.shape[0],), -1, dtype=torch.long, device=y.device)
    init = _faithful_start(prior, operator, y, seeds, labels, cfg)
    fit = fit_faithful(
        prior,
        operator,
        y,
        z0=init.latent,
        labels=init.labels,
        stages=stages,
        w_nll=cfg.w_nll,
        update_embed=cfg.finetune_embedding and bool(prior.num_classes),
        reduction=cfg.critic_reduction,
        stop_ftr=cfg.stop_ftr,
        loss_terms=loss_terms,
        callbacks=callbacks,
    )
    return DGPFit(fit, init.labels, init)


def _fast_schedule(schedule: Sequence[Mapping]) -> tuple[list[dict], bool, int | None]:
    """DGP stage mappings -> the stage engine's (``mse`` weight x4: the engine's MSE is on [0, 1] images);
    whether any stage uses IN, and the first stage's ``critic_features``."""
    out, use_in, nf = [], False, None
    for i, s in enumerate(schedule):
        s = dict(s)
        if float(s.pop("lr_ratio", 1.0)) != 1.0:
            raise ValueError(f"DGP stage {i}: lr_ratio != 1 needs variant='faithful'")
        use_in = bool(s.pop("instance_norm", False)) or use_in
        f = s.pop("critic_features", None)
        nf = f if i == 0 else nf
        w = dict(s.get("weights", {"mse": 1.0}))
        if "mse" in w:
            w["mse"] = 4.0 * float(w["mse"])
        s["weights"] = w
        out.append(s)
    return out, use_in, nf


def fit_dgp(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    *,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    cfg: DGPConfig | None = None,
    callbacks: Sequence = (),
    loss_terms: Mapping[str, LossTerm] | None = None,
) -> DGPFit:
    """Run DGP on measurements ``y`` (see module docstring); images are NOT colour-recombined here.

    Shape:
        - y: ``(B, ...)``; labels ``(B,)`` (-1 = unknown) or None; result images ``(B, C, H, W)``.
    """
    cfg = cfg or DGPConfig()
    if prior.critic is None and cfg.preset is None and cfg.stages is None:
        # the default schedule weights the critic; without one, DGP Table 4's MSE variant runs instead
        warnings.warn(
            f"DGP: this {prior.kind} prior has no critic (discriminator), so the default DGP schedule "
            "falls back to DGP Table 4's MSE variant (preset 'mse'); preset 'perceptual' is the other "
            "critic-less variant",
            stacklevel=2,
        )
        cfg = cfg.updated({"preset": "mse"})
    cfg = resolve_config(cfg)
    if cfg.variant == "faithful":
        return _fit_faithful(prior, operator, y, seeds, labels, cfg, callbacks, loss_terms)
    schedule, use_in, nf = _fast_schedule(cfg.stages if cfg.stages is not None else DEFAULT_STAGES)
    blocks, stages = schedule_to_stages(schedule)
    bn_to_in = cfg.bn_to_in or use_in
    critic_blocks = cfg.critic_blocks
    if critic_blocks is None and nf is not None:
        critic_blocks = list(range(-int(nf), 0))
    if cfg.w_nll:
        for s in stages:  # DGP: loss += w_nll * mean(z**2 / 2)
            s.weights = {**s.weights, "latent_prior": s.weights.get("latent_prior", 0.0) + cfg.w_nll / 2}
    uses_critic = any(s.weights.get("critic", 0.0) > 0 for s in stages)
    terms: dict[str, LossTerm] = dict(loss_terms or {})
    critic = None
    if prior.critic is not None:
        critic = CriticFeatureLoss(
            prior.critic, prior.image_shape, critic_blocks, cfg.lift, cfg.critic_reduction
        )
        terms.setdefault("critic", critic)
    elif uses_critic:
        raise ValueError(
            f"this {prior.kind} prior has no critic, but the DGP stages weight the 'critic' term: use the "
            "critic-less presets of DGP Table 4 (options: {preset: mse} or {preset: perceptual}), pass the "
            "generator's discriminator (critic=...), or set every stage's weights.critic to 0"
        )
    else:
        terms.setdefault("critic", lambda ctx: ctx.ax.new_zeros(ctx.ax.shape[0]))
    if any(s.weights.get("perceptual", 0.0) > 0 for s in stages) and "perceptual" not in terms:
        # DGP Table 4's perceptual variant
        terms["perceptual"] = PerceptualLoss(prior.image_shape, lift=cfg.lift)
    init_metric = cfg.init_metric or ("critic" if stages[0].weights.get("critic", 0.0) > 0 else "mse")
    if init_metric not in ("critic", "mse"):
        raise ValueError(f"init_metric must be 'critic', 'mse' or None, got {init_metric!r}")
    if init_metric == "critic" and critic is None:
        raise ValueError("init_metric='critic' needs a prior with a critic; use init_metric='mse'")
    metric = critic if init_metric == "critic" else MeasurementMSE()
    if prior.num_classes and labels is None:
        labels = torch.full((y.shape[0],), -1, dtype=torch.long, device=y.device)
    if cfg.init_latent is not None:
        init = _faithful_start(prior, operator, y, seeds, labels, cfg)
    else:
        init = select_latents(
            prior,
            operator,
            y,
            metric,
            seeds,
            labels if prior.num_classes else None,
            cfg.n_candidates,
            cfg.candidate_batch,
            cfg.candidate_seed,
            cfg.candidate_std,
            cfg.candidate_bf16,
        )
    if cfg.stop_mse is not None:
        for s in stages:
            s.stop_mse = float(cfg.stop_mse)
    # (an unconditional prior has no class embedding: the option is a no-op there, so presets stay shared)
    cbs = [ProgressiveUnfreezing(blocks, embedding=cfg.finetune_embedding and bool(prior.num_classes))]
    if bn_to_in:
        if cfg.batching != "sequential":
            raise ValueError("bn_to_in needs batching='sequential' (per-image generator copies)")
        cbs.append(BatchNormToInstanceNorm())
    # DGP run(): the MSE stop ends the current stage only (no MSEThresholdStop), the last x is returned
    fit = run_stages(
        prior,
        operator,
        y,
        init.latent,
        stages,
        labels=init.labels,
        loss_terms=terms,
        batching=cfg.batching,
        callbacks=[*cbs, *callbacks],
        keep=cfg.keep,
    )
    return DGPFit(fit, init.labels, init)
