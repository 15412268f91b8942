"""The DGP fit (Pan et al. 2020) on the stage engine: best-of-N start, then progressive fine-tuning of
per-image generator copies under the critic feature + MSE loss (DGP eqs. 2-3). ``restore(method="dgp")``
runs it through :mod:`inversion.methods.dgp`.

Each stage of a DGP schedule is one mapping: ``blocks`` (DGP's "Blocks num.": how many leading
generator blocks fine-tune), ``iterations``, ``latent_lr`` ("z lr"), ``generator_lr`` ("G lr") and
``weights: {critic: <D loss weight>, mse: <MSE loss weight>}``. Ready-made schedules for DGP Tables
6-11 live in ``configs/inversion/dgp/`` (``preset: sr_mse`` etc.).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from callbacks import BatchNormToInstanceNorm, ProgressiveUnfreezing
from inversion.dgp.init import CandidateInit, select_latents
from inversion.dgp.losses import CriticFeatureLoss, MeasurementMSE
from inversion.dgp.schedule import schedule_to_stages
from inversion.engine import FitResult, LossTerm, run_stages
from inversion.methods.common import PriorConfig
from lcm.configs import config_dir, load_options
from lcm.prior import Prior

__all__ = ["DEFAULT_STAGES", "DGPConfig", "DGPFit", "PRESET_DIR", "fit_dgp", "load_preset"]

PRESET_DIR = config_dir() / "inversion" / "dgp"

# DGP Table 9 (SR, balanced critic/MSE), iterations scaled 200 -> 40 for 32x32 priors on a CPU; MSE weight
# x4 because our MSE is on [0, 1] images and DGP's on [-1, 1] (same balance against the critic term).
DEFAULT_STAGES = [
    {
        "blocks": 1,
        "iterations": 40,
        "generator_lr": 5e-5,
        "latent_lr": 2e-3,
        "weights": {"critic": 1, "mse": 4},
    },
    {
        "blocks": 2,
        "iterations": 40,
        "generator_lr": 5e-5,
        "latent_lr": 1e-3,
        "weights": {"critic": 1, "mse": 4},
    },
    {
        "blocks": 3,
        "iterations": 40,
        "generator_lr": 2e-5,
        "latent_lr": 2e-5,
        "weights": {"critic": 1, "mse": 4},
    },
    {
        "blocks": 4,
        "iterations": 40,
        "generator_lr": 1e-5,
        "latent_lr": 1e-5,
        "weights": {"critic": 1, "mse": 4},
    },
    {
        "blocks": 5,
        "iterations": 40,
        "generator_lr": 1e-5,
        "latent_lr": 1e-5,
        "weights": {"critic": 1, "mse": 4},
    },
]


@dataclass
class DGPConfig(PriorConfig):
    """Options of ``restore(..., method="dgp")`` (also ``options:`` of ``python -m inversion``).

    Args (beyond :class:`~inversion.methods.PriorConfig`'s ``space`` and ``optimize_noise``):
        stages: the DGP schedule (see the module docstring; None: :data:`DEFAULT_STAGES`).
        batching: the per-image generator copies run ``sequential`` or stacked (``vmap``).
        preset: a schedule from ``configs/inversion/dgp/<preset>.yaml`` (its ``options``) or a YAML path;
            its values fill every option left at its default here.
        critic_blocks: critic blocks used by the feature loss (None: all; DGP uses all of BigGAN's).
        lift: how measurements reach the critic's image grid, ``resize`` or ``pseudo_inverse``.
        n_candidates: latents scored for the start (DGP appendix B: 500).
        candidate_batch: candidates per generator / critic call.
        candidate_seed: one candidate pool for all images (None: each image's own seed).
        init_metric: ``critic`` (DGP) or ``mse`` for the candidate scoring; None: ``critic`` when the
            first stage weights the critic term, else ``mse``.
        bn_to_in: swap BatchNorm for InstanceNorm per image (DGP appendix B; Tables 7, 8, 10).
        stop_mse: end the current stage for an image once its measurement MSE (on [0, 1] images) is
            <= this; it resumes in the next stage from the iterate that met it (DGP's ``run()`` breaks
            out of the stage only). DGP's defence uses 5e-3 on [-1, 1] images, i.e. 1.25e-3 here.
        critic_reduction: ``paper`` (DGP eq. 3: summed L1 norms of the block features) or
            ``block_mean`` (the released code: per-block mean absolute difference); see
            :class:`~inversion.dgp.losses.CriticFeatureLoss`.
        keep: the iterate returned, ``last`` (DGP's ``run()`` returns its final ``x``) or ``best``
            (least objective, as CSGM / IAGAN).
        colorize_output: for a gray measurement of a colour prior, return the target's luminance with
            the predicted chroma (DGP Sec. 4.1, Lab via kornia).
        finetune_embedding: also fine-tune the generator's class embedding with its first block (DGP
            Table 7, inpainting; no effect on an unconditional prior).
        w_nll: weight of DGP's latent term ``mean(z**2 / 2)`` (its examples: 0.02; added to every stage
            as ``latent_prior`` weight ``w_nll / 2``, since ``latent_prior`` is ``mean(z**2)``).
        candidate_std: std of the Gaussian candidates of the start (DGP's ``sample_std``; its BigGAN
            scripts use 0.3, 0.5 for category transfer; 1 = the prior's own distribution).

    A stage's ``blocks`` larger than the generator's depth fine-tunes every block (DGP's counts refer to
    BigGAN; our 32x32 generators have 4-5 blocks). On a BigGAN prior ``blocks`` is DGP's ``ft_num``:
    its parameter groups (first linear, then one per residual block; 6 at 128 px = all DGP trains);
    ``'all'`` (7 at 128 px) also trains the output layer, which DGP's optimizer leaves out.
    """

    stages: list[dict] | None = None
    batching: str = "sequential"
    preset: str | None = None
    critic_blocks: list[int] | None = None
    lift: str = "resize"
    n_candidates: int = 500
    candidate_batch: int = 100
    candidate_seed: int | None = None
    init_metric: str | None = None
    bn_to_in: bool = False
    stop_mse: float | None = None
    colorize_output: bool = True
    critic_reduction: str = "paper"
    keep: str = "last"
    finetune_embedding: bool = False
    w_nll: float = 0.0
    candidate_std: float = 1.0

    def check(self) -> None:
        if self.batching not in ("sequential", "vmap"):
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {self.batching!r}")


def load_preset(name: str) -> dict:
    """The ``options`` mapping of a DGP preset (name in ``configs/inversion/dgp/`` or a YAML path)."""
    path = Path(name)
    if not path.is_file():
        path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
        raise FileNotFoundError(f"DGP preset {name!r} not found: give a YAML path or one of {known}")
    return load_options(path)


def _resolve(cfg: DGPConfig) -> DGPConfig:
    if cfg.preset is None:
        return cfg
    opts = load_preset(cfg.preset)
    opts.pop("preset", None)
    defaults = DGPConfig()
    keep = {f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(defaults, f.name)}
    return cfg.updated({k: v for k, v in opts.items() if k not in keep} | {"preset": None})


@dataclass
class DGPFit:
    """A DGP fit: the engine result (per-image generators in ``fit.generators``), the labels the fit
    used (``(B,)`` or None; chosen by the start for unknown classes) and the candidate start."""

    fit: FitResult
    labels: torch.Tensor | None
    init: CandidateInit


def fit_dgp(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
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
    cfg = _resolve(cfg or DGPConfig())
    schedule = cfg.stages if cfg.stages is not None else DEFAULT_STAGES
    blocks, stages = schedule_to_stages(schedule)
    if cfg.w_nll:
        for s in stages:  # DGP: loss += w_nll * mean(z**2 / 2)
            s.weights = {**s.weights, "latent_prior": s.weights.get("latent_prior", 0.0) + cfg.w_nll / 2}
    uses_critic = any(s.weights.get("critic", 0.0) > 0 for s in stages)
    terms: dict[str, LossTerm] = dict(loss_terms or {})
    critic = None
    if prior.critic is not None:
        critic = CriticFeatureLoss(
            prior.critic, prior.image_shape, cfg.critic_blocks, cfg.lift, cfg.critic_reduction
        )
        terms.setdefault("critic", critic)
    elif uses_critic:
        raise ValueError(
            f"this {prior.kind} prior has no critic, but the DGP stages weight the 'critic' term: use a "
            "WGAN-GP checkpoint or set every stage's weights.critic to 0"
        )
    else:
        terms.setdefault("critic", lambda ctx: ctx.ax.new_zeros(ctx.ax.shape[0]))
    init_metric = cfg.init_metric or ("critic" if stages[0].weights.get("critic", 0.0) > 0 else "mse")
    if init_metric not in ("critic", "mse"):
        raise ValueError(f"init_metric must be 'critic', 'mse' or None, got {init_metric!r}")
    if init_metric == "critic" and critic is None:
        raise ValueError("init_metric='critic' needs a prior with a critic; use init_metric='mse'")
    metric = critic if init_metric == "critic" else MeasurementMSE()
    if prior.num_classes and labels is None:
        labels = torch.full((y.shape[0],), -1, dtype=torch.long, device=y.device)
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
    )
    if cfg.stop_mse is not None:
        for s in stages:
            s.stop_mse = float(cfg.stop_mse)
    # (an unconditional prior has no class embedding: the option is a no-op there, so presets stay shared)
    cbs = [ProgressiveUnfreezing(blocks, embedding=cfg.finetune_embedding and bool(prior.num_classes))]
    if cfg.bn_to_in:
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
        init.labels,
        terms,
        cfg.batching,
        [*cbs, *callbacks],
        keep=cfg.keep,
    )
    return DGPFit(fit, init.labels, init)
