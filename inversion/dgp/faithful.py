"""DGP's optimisation exactly as its released code runs it (``DGP.run`` and ``DGP.select_z`` of
``models/dgp.py`` in XingangPan/deep-generative-prior), on any prior with a critic.

Per image (DGP fits one image at a time):

* one Adam for ``z`` and one for the generator copy, built once for the whole run with betas
  ``(0, 0.999)`` and eps 1e-8 (``DGP.__init__`` / ``_prepare_latent``; BigGAN's ``G_B1 = 0``);
* the generator's parameter groups as DGP's ``G.get_params(i, update_embed)`` counts them: group 0 = the
  latent-side layer (BigGAN: the first linear layer, plus the class embedding with ``update_embed``), then
  one group per block, the output layer last (``prior.generator.blocks`` in order);
* at every step DGP's ``LRScheduler.update``: group ``i`` gets ``G_lr * lr_ratio**i`` if ``i < ft_num``,
  else learning rate 0 -- its parameters still get gradients, so Adam's moments keep accumulating, and
  they move once a later stage raises ``ft_num``;
* loss (in [-1, 1] image space, on the degraded images lifted onto the image grid, as ``pre_process``
  does): ``w_D * sum_{last ftr_num features} F.l1_loss(D_i(A x), D_i(y)) + w_mse * MSE + w_nll *
  mean(z**2 / 2)`` (``utils/losses.py`` ``DiscriminatorLoss``);
* ``use_in`` per stage: BigGAN's InstanceNorm twins, their frozen affine initialised once from the BN
  output at the first step that uses them (``models/layers.py`` ``GBlock``); other generators get the
  BN -> IN swap of :func:`callbacks.swap_batchnorm_for_instancenorm` at that step, affine frozen;
* a stage ends early once the [-1, 1] MSE < ``stop_mse`` or the feature loss < ``stop_ftr`` (DGP's
  ``break`` out of the stage loop).

The image returned is ``G(z)`` after the last update (DGP saves the ``x`` of the last step, computed
before that step's update; its saved ``G`` and ``z`` are those after it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from inversion.dgp.init import budget_candidates, check_candidate_batch, scoring_precision
from inversion.dgp.losses import dgp_critic_features
from inversion.dgp.operators import lift_to_grid, measure
from inversion.engine import FitResult
from inversion.stages import Stage
from lcm.prior import Prior, to_unit

__all__ = [
    "DGPLoss",
    "DGPStage",
    "critic_distance",
    "engine_stages",
    "fit_faithful",
    "generator_groups",
    "parse_stages",
    "score_candidates",
]

_STAGE_KEYS = {
    "blocks",
    "iterations",
    "latent_lr",
    "generator_lr",
    "lr_ratio",
    "weights",
    "critic_features",
    "instance_norm",
    "latent",
    "stop_mse",
    "name",
}


@dataclass
class DGPStage:
    """One stage of DGP's script arguments (one column of ``--ft_num ... --use_in``).

    Args:
        blocks: DGP's ``ft_num``: parameter groups that train (see module docstring; ``'all'`` = every group).
        iterations: steps (``--iterations``).
        latent_lr, generator_lr: ``--z_lrs``, ``--G_lrs``.
        lr_ratio: ``--lr_ratio`` (group ``i`` trains at ``generator_lr * lr_ratio**i``).
        critic: ``--w_D_loss``; mse: ``--w_mse`` (on DGP's [-1, 1] MSE).
        critic_features: ``--ftr_num`` (the last n critic features; None: all).
        instance_norm: ``--use_in``.
        latent: whether z moves (False: its learning rate is 0).
        stop_mse: DGP's ``--stop_mse`` on the [-1, 1] MSE (None: never).
        extra: weights of extra per-image loss terms (``loss_terms`` of :func:`fit_faithful`, e.g. the
            VGG perceptual loss of DGP's ``--ftr_type VGG``), each summed over the image.
    """

    blocks: int | str
    iterations: int
    latent_lr: float
    generator_lr: float
    lr_ratio: float = 1.0
    critic: float = 0.0
    mse: float = 1.0
    critic_features: int | None = None
    instance_norm: bool = False
    latent: bool = True
    stop_mse: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


def parse_stages(schedule: Sequence[Mapping]) -> list[DGPStage]:
    """DGP stage mappings (``blocks``, ``iterations``, ``latent_lr``, ``generator_lr``, ``lr_ratio``,
    ``weights: {critic, mse}``, ``critic_features``, ``instance_norm``) -> :class:`DGPStage` list."""
    if isinstance(schedule, Mapping) or not len(schedule):
        raise ValueError("the DGP schedule must be a non-empty list of stage mappings")
    out = []
    for i, s in enumerate(schedule):
        if not isinstance(s, Mapping) or "blocks" not in s or "iterations" not in s:
            raise ValueError(f"DGP stage {i} needs 'blocks' (DGP's ft_num) and 'iterations'")
        unknown = set(s) - _STAGE_KEYS
        if unknown:
            raise ValueError(
                f"DGP stage {i} has unknown keys {sorted(unknown)}; valid: {sorted(_STAGE_KEYS)}"
            )
        w = dict(s.get("weights", {"mse": 1.0}))
        extra = {k: float(v) for k, v in w.items() if k not in ("critic", "mse")}
        blocks = s["blocks"]
        if not (
            blocks == "all" or (isinstance(blocks, int) and not isinstance(blocks, bool) and blocks >= 0)
        ):
            raise ValueError(f"DGP stage {i}: blocks must be a count >= 0 or 'all', got {blocks!r}")
        it = s["iterations"]
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise ValueError(f"DGP stage {i}: iterations must be a positive integer, got {it!r}")
        nf = s.get("critic_features")
        if nf is not None and (isinstance(nf, bool) or not isinstance(nf, int) or nf < 1):
            raise ValueError(f"DGP stage {i}: critic_features must be None or >= 1, got {nf!r}")
        out.append(
            DGPStage(
                blocks=blocks,
                iterations=it,
                latent_lr=float(s.get("latent_lr", 0.1)),
                generator_lr=float(s.get("generator_lr", 0.0)),
                lr_ratio=float(s.get("lr_ratio", 1.0)),
                critic=float(w.get("critic", 0.0)),
                mse=float(w.get("mse", 0.0)),
                critic_features=nf,
                instance_norm=bool(s.get("instance_norm", False)),
                latent=bool(s.get("latent", True)),
                stop_mse=None if s.get("stop_mse") is None else float(s["stop_mse"]),
                extra=extra,
            )
        )
    return out


def generator_groups(generator: nn.Module, update_embed: bool = False) -> list[list[nn.Parameter]]:
    """DGP's parameter groups of ``generator`` (``G.get_params(i, update_embed)``): one per entry of
    ``generator.blocks`` (latent side first; for BigGAN the first linear layer, the residual blocks, the
    output layer), the class embedding (``generator.embedding``) added to group 0 with ``update_embed``.
    InstanceNorm affines are left out (frozen in DGP)."""
    frozen = {id(p) for m in generator.modules() if isinstance(m, nn.InstanceNorm2d) for p in m.parameters()}
    # BigGAN: DGP's optimizer holds range(len(G.blocks) + 1) groups, never the output layer
    n = int(getattr(generator, "dgp_optimized_groups", len(generator.blocks)))
    groups = [[p for p in b.parameters() if id(p) not in frozen] for b in list(generator.blocks)[:n]]
    emb = getattr(generator, "embedding", None)
    if update_embed and isinstance(emb, nn.Module):
        groups[0] = groups[0] + list(emb.parameters())
    return groups


def critic_distance(
    fa: Sequence[torch.Tensor], fb: Sequence[torch.Tensor], n: int | None, reduction: str = "block_mean"
) -> torch.Tensor:
    """DGP's ``DiscriminatorLoss``: ``sum_{i < n} F.l1_loss(fa[-i-1], fb[-i-1])`` (``block_mean``, the
    released code), or DGP eq. 3's summed L1 norms divided by the mean feature size (``paper``); ``fb``
    rows broadcast. -> ``(B,)``."""
    n = len(fa) if n is None else min(int(n), len(fa))
    pairs = [(fa[-i - 1], fb[-i - 1]) for i in range(n)]
    if reduction == "block_mean":
        return sum((a - b).abs().flatten(1).mean(1) for a, b in pairs)
    if reduction == "paper":
        mean_size = sum(a[0].numel() for a, _ in pairs) / len(pairs)
        return sum((a - b).abs().flatten(1).sum(1) for a, b in pairs) / mean_size
    raise ValueError(
        f"critic_reduction must be 'block_mean' (DGP's code) or 'paper' (eq. 3), got {reduction!r}"
    )


def _features(prior: Prior, x_pm: torch.Tensor) -> list[torch.Tensor]:
    """Critic features of [-1, 1] images, as DGP's scripts compute them (:func:`dgp_critic_features`)."""
    return dgp_critic_features(prior.critic, to_unit(x_pm))


@torch.no_grad()
def score_candidates(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    candidates: torch.Tensor,
    labels: torch.Tensor | int | None = None,
    critic_features: int = 3,
    reduction: str = "block_mean",
    batch_size: int | str = "auto",
    bf16: bool = False,
) -> torch.Tensor:
    """DGP's start score of each candidate latent (``DGP.select_z``): the critic loss on the last
    ``critic_features`` (3) features between the candidate's degraded image and the target ``y``. As in
    DGP the candidate is degraded along the *target* path (``pre_process(x)``: for SR the uint8 PIL
    Lanczos, not the DIP down-sampler of the fit), i.e. ``operator.measure`` where the operator has one.

    ``batch_size``: candidates per generator / critic call, or ``"auto"`` (default): as many as fit a
    quarter of the free memory (:func:`lcm.runtime.budget_rows`; DGP scores one at a time, the scores do not
    depend on the chunks). ``bf16``: score under bf16 autocast (a named option,
    :func:`inversion.dgp.init.scoring_precision`; off by default).

    Shape:
        - y: ``(1, ...)`` in [0, 1]; candidates ``(K, *latent_shape)``; labels ``(K,)``, ``(1,)``, an int or
          None; output ``(K,)``.
    """
    if prior.critic is None:
        raise ValueError("DGP's candidate score needs a prior with a critic (discriminator)")
    if y.shape[0] != 1:
        raise ValueError(
            f"score_candidates scores against one target: y must be (1, ...), got {tuple(y.shape)}"
        )
    k = candidates.shape[0]
    if prior.num_classes:
        if labels is None:
            raise ValueError("a class-conditional prior needs labels for the candidates")
        labels = torch.as_tensor(labels, dtype=torch.long, device=candidates.device).reshape(-1)
        labels = labels.expand(k) if labels.numel() == 1 else labels
    check_candidate_batch(batch_size)

    def features(x):
        return _features(prior, lift_to_grid(operator, measure(operator, x), prior.image_shape))

    if batch_size == "auto":
        batch_size = budget_candidates(prior, features, k, None, bf16)
    target = _features(prior, lift_to_grid(operator, y, prior.image_shape))
    out = []
    for s in range(0, k, batch_size):
        lab = None if not prior.num_classes else labels[s : s + batch_size]
        with scoring_precision(bf16, y.device):
            feats = features(prior(candidates[s : s + batch_size], lab))
        out.append(critic_distance(feats, target, critic_features, reduction).float())
    return torch.cat(out)


class DGPLoss:
    """DGP's per-image loss terms for the engine (``utils/losses.py`` ``DiscriminatorLoss`` and
    ``models/dgp.py`` ``run()``), on the degraded images lifted onto the image grid as ``pre_process`` does:

    * ``dgp_mse``: ``F.mse_loss`` of the lifted ``A x`` and the lifted ``y`` (DGP's [-1, 1] MSE);
    * ``critic``: :func:`critic_distance` of their critic features, over the stage's ``critic_features``;
    * ``dgp_nll``: ``mean(z**2 / 2)``.

    The target's lift and features are computed once per fit (per engine module).
    """

    def __init__(self, prior: Prior, operator: nn.Module, stages: Sequence[DGPStage], reduction: str):
        self.prior, self.operator, self.stages, self.reduction = prior, operator, list(stages), reduction
        self.uses_critic = any(s.critic for s in self.stages)
        self._target: tuple[int, torch.Tensor, list[torch.Tensor] | None] | None = None

    def terms(self) -> dict:
        out = {"dgp_mse": self.mse, "dgp_nll": self.nll}
        if self.uses_critic:
            out["critic"] = self.critic
        return out

    def _lifted(self, ctx) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        key = id(ctx.module)
        if self._target is None or self._target[0] != key:
            with torch.no_grad():
                target = lift_to_grid(self.operator, ctx.y, self.prior.image_shape)
                feats = [f.detach() for f in _features(self.prior, target)] if self.uses_critic else None
            self._target = (key, target, feats)
        if "dgp_x_map" not in ctx.cache:
            ctx.cache["dgp_x_map"] = lift_to_grid(self.operator, ctx.ax, self.prior.image_shape)
        return ctx.cache["dgp_x_map"], self._target[1], self._target[2]

    def mse(self, ctx) -> torch.Tensor:
        x_map, target, _ = self._lifted(ctx)
        return (x_map - target).pow(2).flatten(1).mean(1)

    def critic(self, ctx) -> torch.Tensor:
        x_map, _, feats = self._lifted(ctx)
        n = self.stages[ctx.module.stage_index].critic_features
        return critic_distance(_features(self.prior, x_map), feats, n, self.reduction)

    @staticmethod
    def nll(ctx) -> torch.Tensor:
        return (ctx.latent**2 / 2).flatten(1).mean(1)


def engine_stages(stages: Sequence[DGPStage], w_nll: float, uses_critic: bool) -> list[Stage]:
    """DGP stages as engine stages of :class:`DGPLoss`'s terms (every stage holds the generator: DGP's
    optimizer has every group from the start, :class:`callbacks.GroupLearningRates` sets their rates)."""
    out = []
    for s in stages:
        weights = {"dgp_mse": s.mse}
        if uses_critic:
            weights["critic"] = s.critic
        weights["dgp_nll"] = float(w_nll)
        weights.update(s.extra)
        out.append(
            Stage(
                iterations=s.iterations,
                latent=s.latent,
                generator="all",
                latent_lr=s.latent_lr,
                generator_lr=s.generator_lr,
                weights=weights,
            )
        )
    return out


def fit_faithful(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    *,
    z0: torch.Tensor,
    labels: torch.Tensor | None,
    stages: Sequence[DGPStage],
    w_nll: float = 0.0,
    update_embed: bool = False,
    reduction: str = "block_mean",
    stop_ftr: float | None = None,
    loss_terms: Mapping | None = None,
    callbacks: Sequence = (),
) -> FitResult:
    """DGP's ``run()`` for each image from ``z0`` (see module docstring) as one engine fit per image (DGP
    fits one image at a time) with persistent optimizers and DGP's callbacks: learning rates per group
    (:class:`callbacks.GroupLearningRates`), BN->IN (:class:`callbacks.BatchNormToInstanceNorm`, frozen
    affine) where a stage uses it, the stage ``break`` (:class:`callbacks.TermThresholdStop`).
    ``FitResult.losses`` holds ``critic`` and ``mse`` (DGP's [-1, 1] MSE) per step, before its update.

    Shape:
        - y: ``(B, ...)`` in [0, 1]; z0: ``(B, *latent_shape)``; labels ``(B,)`` or None.
    """
    from callbacks import BatchNormToInstanceNorm, GroupLearningRates, TermThresholdStop
    from inversion.engine import run_stages

    if not stages:
        raise ValueError("DGP needs at least one stage")
    terms = dict(loss_terms or {})
    missing = sorted({k for s in stages for k, w in s.extra.items() if w} - set(terms))
    if missing:
        raise ValueError(f"the DGP stages weight loss terms {missing} that no loss_terms entry provides")
    loss = DGPLoss(prior, operator, stages, reduction)
    if loss.uses_critic and prior.critic is None:
        raise ValueError(
            f"this {prior.kind} prior has no critic, but the DGP stages weight the critic loss: use the "
            "critic-less presets of DGP Table 4 (options: {preset: mse} or {preset: perceptual}), pass the "
            "generator's discriminator (critic=...), or set every stage's weights.critic to 0"
        )
    cbs: list = [GroupLearningRates([s.blocks for s in stages], [s.lr_ratio for s in stages])]
    if any(s.instance_norm for s in stages):
        cbs.append(BatchNormToInstanceNorm(stages=[s.instance_norm for s in stages], freeze_affine=True))
    if any(s.stop_mse is not None for s in stages):
        cbs.append(TermThresholdStop("dgp_mse", [s.stop_mse for s in stages]))
    if stop_ftr is not None and loss.uses_critic:
        cbs.append(TermThresholdStop("critic", float(stop_ftr)))
    record = ("critic", "dgp_mse") if loss.uses_critic else ("dgp_mse",)
    fit = run_stages(
        prior,
        operator,
        y,
        z0,
        engine_stages(stages, w_nll, loss.uses_critic),
        labels=labels if prior.num_classes else None,
        loss_terms={**terms, **loss.terms()},
        callbacks=[*cbs, *callbacks],
        keep="last",
        per_image=True,
        optimizers="persistent",
        # DGP: one Adam per network for the whole run, betas (G_B1, G_B2) = (0, 0.999), eps 1e-8
        adam={"betas": (0.0, 0.999), "eps": 1e-8},
        generator_groups=lambda g: generator_groups(g, update_embed),
        final_score=False,
        record_terms=record,
    )
    mse = fit.losses["dgp_mse"]
    critic = (
        fit.losses["critic"] if loss.uses_critic else torch.where(mse.isnan(), mse, torch.zeros_like(mse))
    )
    fit.losses = {"critic": critic, "mse": mse}
    return fit
