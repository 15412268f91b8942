"""The stage engine: per-image inversion of a prior as one short ``Trainer.fit``.

One epoch is one optimisation step (a one-item dummy loader), so epoch-end callbacks such as
``EarlyStopping`` act per step. The module optimises manually: at each stage boundary it sets
``requires_grad`` on exactly what the stage trains and builds a fresh ``Adam(fused=True)`` (plain
Adam where fused is unavailable). Losses are summed over images (never averaged), so images of one
batch do not interact; each image keeps its best iterate (IAGAN, "minimal objective value") or,
with ``keep="last"``, its final one (DGP).

Generator fine-tuning gives each image a private generator copy, from the first stage that trains
the generator: ``batching="sequential"`` (a ``deepcopy`` per image; the CPU default: batched private weights
fall out of cache and do not pay there) or ``batching="vmap"`` (stacked weights through
``torch.func.functional_call`` + ``vmap``). BatchNorm runs on running statistics during fits.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from inversion.operators.base import forward_operator
from inversion.stages import Stage, StageCallback, as_stages
from lcm.prior import Prior, to_unit

__all__ = ["FitResult", "InversionModule", "LossContext", "make_adam", "run_stages"]

Batching = Literal["sequential", "vmap"]
Keep = Literal["best", "last"]
Optimizers = Literal["per_stage", "persistent"]
GroupFn = Callable[[nn.Module], list[list[nn.Parameter]]]
BUILTIN_TERMS = ("mse", "latent_prior")


@dataclass
class LossContext:
    """What a loss term sees at one step. A term returns a per-image loss ``(B,)``.

    Attributes:
        x: current restorations ``(B, C, H, W)`` in [0, 1] (differentiable).
        ax: ``operator.A(x)`` (noiseless forward model of the estimate).
        y: the measurements.
        latent: the per-image latents ``(B, *latent_shape)``.
        labels: class labels ``(B,)`` or None.
        prior, operator: as given to the engine.
        stage: the current :class:`Stage`.
        module: the running :class:`InversionModule` (e.g. ``module.generate(w)`` runs the
            per-image generators on other codes).
    """

    x: torch.Tensor
    ax: torch.Tensor
    y: torch.Tensor
    latent: torch.Tensor
    labels: torch.Tensor | None
    prior: Prior
    operator: nn.Module
    stage: Stage
    module: InversionModule | None = None
    cache: dict = field(default_factory=dict)  # terms sharing work within one step (e.g. DGP's lifted A x)


LossTerm = Callable[[LossContext], torch.Tensor]


@dataclass
class FitResult:
    """Outcome of :func:`run_stages`, at each image's best iterate.

    Attributes:
        images: ``(B, C, H, W)`` in [0, 1].
        latent: ``(B, *latent_shape)``.
        objective: ``(B,)`` best objective; ``mse``: ``(B,)`` measurement MSE there.
        history: ``(T, B)`` objective per step (NaN after an image stopped).
        steps: ``(B,)`` steps each image ran before it stopped (or the run ended).
        generators: per-image fitted generator copies (at the best iterate) when a stage trained
            the generator, else None.
        losses: optional ``(T, B)`` per-step values of named loss terms (DGP's faithful run: ``critic``,
            ``mse``), before each step's update.
    """

    images: torch.Tensor
    latent: torch.Tensor
    objective: torch.Tensor
    mse: torch.Tensor
    history: torch.Tensor
    steps: torch.Tensor
    generators: list[nn.Module] | None = None
    losses: dict[str, torch.Tensor] | None = None


def stage_callbacks(trainer: pl.Trainer | None) -> list[StageCallback]:
    """The trainer's callbacks that implement :class:`~inversion.stages.StageCallback`, in order."""
    return [cb for cb in (trainer.callbacks if trainer is not None else ()) if isinstance(cb, StageCallback)]


def make_adam(groups: list[dict], fused: bool | None = None, **kwargs) -> torch.optim.Optimizer:
    """``Adam(fused=True, **kwargs)`` where this torch supports it for these tensors, plain Adam otherwise
    (``fused=False``: plain Adam, as the authors' code builds it)."""
    if fused is not False:
        try:
            return torch.optim.Adam(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            if fused:
                raise
    return torch.optim.Adam(groups, **kwargs)


def _block_param_names(gen: nn.Module, spec: str | list[int]) -> list[str]:
    names = [n for n, _ in gen.named_parameters()]
    if spec == "all":
        return names
    start, stop = spec
    n_blocks = len(gen.blocks)
    if stop > n_blocks:
        raise ValueError(f"Stage.generator block range {spec} exceeds the generator's {n_blocks} blocks")
    prefixes = tuple(f"blocks.{i}." for i in range(start, stop))
    return [n for n in names if n.startswith(prefixes)]


def check_prior(prior) -> None:
    """Refuse anything but an :class:`lcm.Prior` (None, a checkpoint path) with one clear message."""
    if not isinstance(prior, Prior):
        what = f"the string {prior!r}" if isinstance(prior, str) else type(prior).__name__
        raise ValueError(
            f"prior must be an lcm.Prior, got {what}: load a checkpoint or a named prior with "
            "lcm.load_prior(path_or_name)"
        )


def _check_latent_init(latent_init, y: torch.Tensor, prior: Prior) -> None:
    """A start the fit can use: a finite floating tensor of the prior's dtype, on y's device."""
    if not isinstance(latent_init, torch.Tensor):
        raise ValueError(
            f"latent_init must be a tensor (B, *prior.latent_shape), got {type(latent_init).__name__}"
        )
    param = next(iter(prior.parameters()), None)
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    if latent_init.device.type == "meta" or latent_init.device != y.device:
        raise ValueError(
            f"latent_init is on {latent_init.device}, the measurements y on {y.device}: create the start on "
            "y's device (prior.sample_latent(n).to(y.device))"
        )
    if latent_init.dtype != dtype:
        raise ValueError(
            f"latent_init is {latent_init.dtype}, the prior computes in {dtype}: pass "
            f"latent_init.to({dtype}) (an integer start is no latent)"
        )
    if latent_init.numel() and not bool(torch.isfinite(latent_init).all()):
        raise ValueError(
            "latent_init holds NaN / Inf values: start from finite latents (prior.sample_latent)"
        )


class InversionModule(pl.LightningModule):
    """Fits per-image latents (and, stage by stage, private generator copies) to measurements.

    Args:
        prior: the :class:`lcm.Prior`; never modified (its flags are restored after the fit).
        operator: forward model with ``A(x)``.
        y: measurements ``(B, ...)``.
        latent_init: starting latents ``(B, *prior.latent_shape)`` (projected onto the latent set).
        stages: list of :class:`Stage` or mappings.
        labels: ``(B,)`` class labels for a conditional prior.
        loss_terms: extra per-image loss terms by name (used by stages' ``weights``).
        batching: ``"sequential"`` or ``"vmap"`` private generator copies.
        keep: which iterate an image returns: ``"best"``, its least objective (IAGAN, "minimal
            objective value"; CSGM), or ``"last"``, its final iterate (DGP's ``run()``; an image stopped by
            a stage's ``stop_mse`` keeps the iterate that met it and resumes from it in the next stage).
        optimizers: ``"per_stage"`` (a fresh Adam per stage over what the stage trains) or
            ``"persistent"`` (one Adam for the latent and one for the generator copies, built once for the
            whole run, as DGP's code: every generator group keeps its gradient and Adam moments; a stage
            sets learning rates only: the latent's ``latent_lr`` (0 where ``latent=False``), the generator
            groups' ``generator_lr``, which a callback such as :class:`callbacks.GroupLearningRates` may
            set per group).
        adam: extra ``torch.optim.Adam`` arguments (``betas``, ``eps``, ``fused``).
        generator_groups: persistent optimizers: the parameter groups of one generator copy (group ``j``
            of every copy becomes the param group tagged ``group=j``); parameters outside every group get
            no gradient. None: one group of every parameter.
        final_score: score the final iterate after the last step into ``history`` / ``objective``
            (False: DGP's ``run()``: both end at the last step's value, the returned iterate is still the
            one after the last update).
        record_terms: loss terms whose per-step values ``FitResult.losses`` holds (computed at weight 0
            too), e.g. DGP's ``critic``.
        copies_train: the per-image generator copies run in train mode during the fit (BatchNorm on
            the batch's statistics, as DIP fits its network) and in eval mode for the final iterate.

    Shape:
        - y: ``(B, ...)`` as ``operator.A`` returns; latent_init: ``(B, *prior.latent_shape)``.
    """

    def __init__(
        self,
        prior: Prior,
        operator: nn.Module,
        y: torch.Tensor,
        latent_init: torch.Tensor,
        stages: Sequence[Stage | Mapping],
        *,
        labels: torch.Tensor | None = None,
        loss_terms: Mapping[str, LossTerm] | None = None,
        batching: Batching = "sequential",
        keep: Keep = "best",
        optimizers: Optimizers = "per_stage",
        adam: Mapping | None = None,
        generator_groups: GroupFn | None = None,
        final_score: bool = True,
        record_terms: Sequence[str] = (),
        copies_train: bool = False,
    ):
        super().__init__()
        if batching not in ("sequential", "vmap"):
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {batching!r}")
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        if optimizers not in ("per_stage", "persistent"):
            raise ValueError(f"optimizers must be 'per_stage' or 'persistent', got {optimizers!r}")
        if optimizers == "persistent" and batching != "sequential":
            raise ValueError("persistent optimizers need batching='sequential' (per-image generator copies)")
        self.keep = keep
        check_prior(prior)
        _check_latent_init(latent_init, y, prior)
        self.persistent = optimizers == "persistent"
        self.adam = dict(adam or {})
        self.group_fn = generator_groups
        self.final_score = bool(final_score)
        self.record_terms = tuple(record_terms)
        self.copies_train = bool(copies_train)
        if self.copies_train and batching != "sequential":
            raise ValueError("copies_train needs batching='sequential' (per-image generator copies)")
        if latent_init.shape[0] != y.shape[0]:
            raise ValueError(f"latent_init has {latent_init.shape[0]} rows for {y.shape[0]} measurements")
        if tuple(latent_init.shape[1:]) != prior.latent_shape:
            raise ValueError(f"latent_init shape {tuple(latent_init.shape[1:])} != prior.latent_shape")
        self.automatic_optimization = False
        self.prior = prior
        # not a submodule: the operator stays where the caller put it (on y's device)
        self.__dict__["operator"] = operator
        # A without the NaN scan: x is the generator's own output (y was checked once by the method)
        self.__dict__["_forward"] = forward_operator(operator, check=False)
        self.stages = as_stages(stages)
        self.loss_terms = dict(loss_terms or {})
        missing = set(self.record_terms) - set(BUILTIN_TERMS) - set(self.loss_terms)
        if missing:
            raise ValueError(
                f"record_terms names unknown loss terms {sorted(missing)}: pass them as loss_terms"
            )
        for s in self.stages:
            unknown = set(s.weights) - set(BUILTIN_TERMS) - set(self.loss_terms)
            if unknown:
                raise ValueError(
                    f"stage weights name unknown loss terms {sorted(unknown)}: pass them as loss_terms"
                )
        self.batching = batching
        with torch.no_grad():
            self.latent = nn.Parameter(prior.project_latent(latent_init.detach().clone()))
        self.register_buffer("y", y.detach().clone())
        self.register_buffer("labels", None if labels is None else labels.detach().clone())
        self.starts = [sum(s.iterations for s in self.stages[:k]) for k in range(len(self.stages))]
        self.total_steps = sum(s.iterations for s in self.stages)
        self.n = y.shape[0]
        # private generator copies (plain attributes: not submodules, not moved by train()/eval())
        self.copies: list[nn.Module] | None = None
        self.stacked: dict[str, torch.Tensor] | None = None
        self.stage_index = -1
        self.t = 0
        self._opts: list[torch.optim.Optimizer] = []
        self.last_terms: dict[str, torch.Tensor] = {}  # this step's term values (before its update)
        self.split: tuple[int, int] | None = None  # (image, images) of a per-image fit (run_stages)
        self.log_metrics = True  # run_stages turns it off when no callback or progress bar reads it

    # -- Lightning plumbing ----------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        self.prior.eval()  # BatchNorm on running statistics: shared, unbatched buffers
        return self

    def configure_optimizers(self):
        return None  # built per stage in _enter_stage (manual optimisation)

    def on_train_start(self) -> None:
        dev = self.y.device
        self._flags = [p.requires_grad for p in self.prior.parameters()]
        self.prior.requires_grad_(False)
        self.best_obj = torch.full((self.n,), float("inf"), device=dev, dtype=self.latent.dtype)
        self.best_mse = torch.full_like(self.best_obj, float("inf"))
        self.best_latent = self.latent.detach().clone()
        self.best_state: list[dict | None] = [None] * self.n
        self.best_stacked: dict[str, torch.Tensor] | None = None
        self.active = torch.ones(self.n, dtype=torch.bool, device=dev)
        self.stall = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.steps_run = torch.zeros(self.n, dtype=torch.long, device=dev)
        self.history: list[torch.Tensor] = []
        self.term_history: dict[str, list[torch.Tensor]] = {n: [] for n in self.record_terms}

    def on_train_end(self) -> None:
        for p, f in zip(self.prior.parameters(), self._flags, strict=True):
            p.requires_grad_(f)

    # -- stages ----------------------------------------------------------------------------
    @property
    def stage(self) -> Stage:
        return self.stages[max(self.stage_index, 0)]

    def make_copies(self) -> None:
        """Create the per-image private generator copies (override point, e.g. for a BN->IN swap)."""
        gen = self.prior.generator
        if self.batching == "sequential":
            self.copies = [copy.deepcopy(gen).train(self.copies_train) for _ in range(self.n)]
        else:
            self.stacked = {
                n: p.detach().unsqueeze(0).repeat(self.n, *([1] * p.dim())).contiguous()
                for n, p in gen.named_parameters()
            }
            self.best_stacked = {n: v.clone() for n, v in self.stacked.items()}

    def generator_parameters(self) -> list[torch.Tensor]:
        """Every per-image generator parameter (private copies or stacked weights; empty before copies)."""
        if self.copies is not None:
            return [p for c in self.copies for p in c.parameters()]
        if self.stacked is not None:
            return list(self.stacked.values())
        return []

    def _enter_stage(self, k: int) -> None:
        """Set what stage ``k`` trains and build its Adam.

        Defaults follow ``stage.latent`` / ``stage.generator``; then every :class:`StageCallback` (a
        callback with ``on_stage_start(trainer, module, k, stage)``) runs (it may freeze or unfreeze generator
        parameters or swap layers, e.g. :class:`callbacks.ProgressiveUnfreezing`,
        :class:`callbacks.BatchNormToInstanceNorm`); the optimizer takes exactly the generator
        parameters that then require gradients.
        """
        previous = self.stages[self.stage_index] if self.stage_index >= 0 else None
        self.stage_index = k
        stage = self.stages[k]
        if self.persistent and self.copies is None and any(s.trains_generator for s in self.stages):
            self.make_copies()  # the generator optimizer lives for the whole run
        if stage.trains_generator and self.copies is None and self.stacked is None:
            self.make_copies()
        if previous is not None:
            self._restart_stopped()
            if previous.weights != stage.weights:
                # a new objective: values of the old one are not comparable, the best restarts here
                self.best_obj.fill_(float("inf"))
                self.best_mse.fill_(float("inf"))
        if self.persistent:
            self._enter_persistent_stage(k, stage)
            return
        self.latent.requires_grad_(stage.latent)
        self.latent.grad = None
        groups: list[dict] = []
        train_names = (
            set(_block_param_names(self.prior.generator, stage.generator))
            if stage.trains_generator
            else set()
        )
        if self.copies is not None:
            for c in self.copies:
                for n, p in c.named_parameters():
                    p.requires_grad_(n in train_names)
                    p.grad = None
        if self.stacked is not None:
            for n, p in self.stacked.items():
                p.requires_grad_(n in train_names)
                p.grad = None
        # stage callbacks (progressive unfreezing, BN->IN swap) may change what trains or swap layers
        trainer = self._trainer
        for cb in stage_callbacks(trainer):
            cb.on_stage_start(trainer, self, k, stage)
        if stage.latent:
            groups.append({"params": [self.latent], "lr": stage.latent_lr})
        gen_params = [p for p in self.generator_parameters() if p.requires_grad]
        if gen_params:
            groups.append({"params": gen_params, "lr": stage.generator_lr})
        if not groups:
            raise ValueError(
                f"stage {k} ({stage.name or 'unnamed'}) trains nothing after its callbacks ran: "
                "set latent=True or leave some generator blocks trainable"
            )
        self._opts = [make_adam(groups, **self.adam)]
        self.stall.zero_()

    @property
    def stage_optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers of the current stage (persistent: the latent's, then the generator's)."""
        return self._opts

    def _enter_persistent_stage(self, k: int, stage: Stage) -> None:
        """Persistent optimizers (DGP's ``run()``): built at the first stage, then only learning rates
        change; every :class:`StageCallback` runs after the stage's default rates are set."""
        if not self._opts:
            self.latent.requires_grad_(True)  # z keeps its gradient (and Adam moments) at lr 0 too
            self._opts = [make_adam([{"params": [self.latent], "lr": 0.0}], **self.adam)]
            if self.copies is not None:
                by_group: dict[int, list[nn.Parameter]] = {}
                for c in self.copies:
                    c.requires_grad_(False)
                    groups = self.group_fn(c) if self.group_fn is not None else [list(c.parameters())]
                    for j, params in enumerate(groups):
                        for p in params:
                            p.requires_grad_(True)
                        by_group.setdefault(j, []).extend(params)
                pgs = [{"params": ps, "lr": 0.0, "group": j} for j, ps in sorted(by_group.items()) if ps]
                if pgs:
                    self._opts.append(make_adam(pgs, **self.adam))
        self._opts[0].param_groups[0]["lr"] = stage.latent_lr if stage.latent else 0.0
        for opt in self._opts[1:]:
            for pg in opt.param_groups:
                pg["lr"] = stage.generator_lr if stage.trains_generator else 0.0
        trainer = self._trainer
        for cb in stage_callbacks(trainer):
            cb.on_stage_start(trainer, self, k, stage)
        self.stall.zero_()

    @torch.no_grad()
    def _restart_stopped(self) -> None:
        """Images stopped in the last stage (stop_mse / patience) resume from their best iterate."""
        stopped = ~self.active
        if stopped.any():
            self.latent[stopped] = self.best_latent[stopped]
            for i in stopped.nonzero().flatten().tolist():
                if self.copies is not None and self.best_state[i] is not None:
                    for n, p in self.copies[i].named_parameters():
                        p.copy_(self.best_state[i][n])
            if self.stacked is not None and self.best_stacked is not None:
                for n, v in self.stacked.items():
                    v[stopped] = self.best_stacked[n][stopped]
        self.active.fill_(True)

    # -- forward ---------------------------------------------------------------------------
    def synthesize(self, latent: torch.Tensor | None = None) -> torch.Tensor:
        """Current restorations ``(B, C, H, W)`` in [0, 1] (private copies where they exist)."""
        latent = self.latent if latent is None else latent
        if self.copies is None and self.stacked is None:
            return self.prior(latent, self.labels)
        return self.generate(self.prior.code(latent, self.labels))

    def generate(self, w: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from generator inputs ``w`` ``(B, ...)``, row i through image i's generator.

        Uses the per-image private copies once a stage has trained the generator, the shared
        (frozen) generator before that. Loss terms reach it as ``ctx.module.generate``.
        """
        labels = self.labels
        if self.copies is None and self.stacked is None:
            return self.prior.synthesize(w, labels)
        cond = bool(self.prior.num_classes)
        if self.copies is not None:
            outs = [
                g(w[i : i + 1], labels[i : i + 1]) if cond else g(w[i : i + 1])
                for i, g in enumerate(self.copies)
            ]
            return to_unit(torch.cat(outs))
        gen = self.prior.generator
        buffers = dict(gen.named_buffers())

        def one(params, wi, li):
            args = (wi.unsqueeze(0), li.unsqueeze(0)) if cond else (wi.unsqueeze(0),)
            return torch.func.functional_call(gen, (params, buffers), args).squeeze(0)

        lab = labels if cond else torch.zeros(self.n, device=w.device)
        return to_unit(torch.func.vmap(one)(self.stacked, w, lab))

    def objective(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image objective and measurement MSE, both ``(B,)``."""
        stage = self.stage
        ax = self._forward(x)
        mse = (ax - self.y).pow(2).flatten(1).mean(dim=1)
        obj = torch.zeros_like(mse)
        ctx = None
        terms: dict[str, torch.Tensor] = {}
        names = list(stage.weights) + [n for n in self.record_terms if n not in stage.weights]
        for name in names:
            weight = stage.weights.get(name, 0.0)
            if weight == 0.0 and name not in self.record_terms:
                continue
            if name == "mse":
                term = mse
            elif name == "latent_prior":
                term = self.prior.latent_penalty(self.latent)
            else:
                if ctx is None:
                    ctx = LossContext(
                        x, ax, self.y, self.latent, self.labels, self.prior, self.operator, stage, self
                    )
                term = self.loss_terms[name](ctx)
            terms[name] = term
            if weight != 0.0:
                obj = obj + weight * term
        self.last_terms = {n: v.detach() for n, v in terms.items()}
        return obj, mse

    # -- one step --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        k = self.starts.index(self.t) if self.t in self.starts else None
        if k is not None:
            self._enter_stage(k)
        x = self.synthesize()
        obj, mse = self.objective(x)
        self._record(obj, mse)
        loss = (obj * self.active).sum()  # summed per-image losses: images do not interact
        for opt in self._opts:
            opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        for opt in self._opts:
            opt.step()
        self._after_step()
        self.t += 1
        if self.log_metrics:  # Lightning's logging costs ~1-3 ms a step: only when a callback reads it
            live = mse[self.active] if self.active.any() else mse
            self.log("measurement_mse_max", live.max().detach(), on_step=False, on_epoch=True)
            self.log("objective", obj.detach().sum(), on_step=False, on_epoch=True, prog_bar=True)
        return loss.detach()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """After the callbacks' ``on_train_batch_end`` (which may stop images, :meth:`stop_images`): once
        every image stopped, on to the next stage, or the end."""
        if not self.active.any():
            k = self.stage_index + 1
            self.t = self.starts[k] if k < len(self.starts) else self.total_steps
        if self.t >= self.total_steps:
            self.trainer.should_stop = True

    @torch.no_grad()
    def stop_images(self, mask: torch.Tensor) -> None:
        """Stop the images of ``mask`` ``(B,)`` for the rest of the stage *after* this step's update (DGP's
        ``break``; a stage's ``stop_mse`` stops before it). With ``keep="last"`` the iterate they keep, and
        resume from in the next stage, is the updated one."""
        mask = mask.to(self.active.device) & self.active
        if not mask.any():
            return
        if self.keep == "last":
            self._snapshot(mask)
        self.active &= ~mask

    @torch.no_grad()
    def _after_step(self) -> None:
        if self.stage.latent and self.prior.latent_kind != "gaussian":
            self.latent.copy_(self.prior.project_latent(self.latent))

    @torch.no_grad()
    def _record(self, obj: torch.Tensor, mse: torch.Tensor, count: bool = True) -> None:
        obj, mse = obj.detach(), mse.detach()
        stage = self.stage
        better = obj < self.best_obj
        # "last": the kept snapshot follows every step of a running image (frozen once it stops)
        improved = (better if self.keep == "best" else torch.ones_like(better)) & self.active
        self.best_obj = torch.where(improved, obj, self.best_obj)
        self.best_mse = torch.where(improved, mse, self.best_mse)
        self._snapshot(improved)
        nan = torch.full_like(obj, float("nan"))
        self.history.append(torch.where(self.active, obj, nan))
        for name, rows in self.term_history.items():
            rows.append(torch.where(self.active, self.last_terms[name], nan))
        if count:
            self.steps_run += self.active.long()
        self.stall = torch.where(better & self.active, torch.zeros_like(self.stall), self.stall + 1)
        if stage.stop_mse is not None:
            self.active &= mse > stage.stop_mse
        if stage.patience is not None:
            self.active &= self.stall < stage.patience

    @torch.no_grad()
    def _snapshot(self, improved: torch.Tensor) -> None:
        """Keep the current iterate of the images of ``improved`` ``(B,)`` as their result."""
        self.best_latent[improved] = self.latent[improved]
        if self.copies is not None:
            for i in improved.nonzero().flatten().tolist():
                params, best = dict(self.copies[i].named_parameters()), self.best_state[i]
                if best is not None and best.keys() == params.keys():  # in place: no second copy in memory
                    for n, p in params.items():
                        best[n].copy_(p)
                else:
                    self.best_state[i] = {n: p.detach().clone() for n, p in params.items()}
        if self.stacked is not None:
            for n, v in self.stacked.items():
                m = improved.view(-1, *([1] * (v.dim() - 1)))
                self.best_stacked[n] = torch.where(m, v.detach(), self.best_stacked[n])

    # -- result ----------------------------------------------------------------------------
    @torch.no_grad()
    def finish(self) -> FitResult:
        """Score the last iterate too, then return every image at its kept (best or last) iterate."""
        for c in self.copies or ():
            c.eval()
        if self.t > 0 and self.active.any():
            if self.final_score:
                x = self.synthesize()
                obj, mse = self.objective(x)
                self._record(obj, mse, count=False)  # history gets this final iterate as its last row
            elif self.keep == "last":
                self._snapshot(self.active.clone())  # the iterate after the last update
        self.latent.copy_(self.best_latent)
        gens = None
        if self.copies is not None:
            original = dict(self.prior.generator.named_parameters())
            for c, best in zip(self.copies, self.best_state, strict=True):
                src = best if best is not None else original
                for n, p in c.named_parameters():
                    p.copy_(src[n])
            gens = self.copies
        if self.stacked is not None:
            for n in self.stacked:
                self.stacked[n] = self.best_stacked[n]
            gens = []
            for i in range(self.n):
                g = copy.deepcopy(self.prior.generator).eval()
                for n, p in g.named_parameters():
                    p.copy_(self.stacked[n][i])
                gens.append(g)
        images = self.synthesize().clamp(0.0, 1.0)
        for g in gens or []:
            for p in g.parameters():
                p.grad = None
            g.requires_grad_(False)
        return FitResult(
            images=images,
            latent=self.best_latent.clone(),
            objective=self.best_obj.clone(),
            mse=self.best_mse.clone(),
            history=torch.stack(self.history) if self.history else self.best_obj.new_zeros(0, self.n),
            steps=self.steps_run.clone(),
            generators=gens,
            losses={n: torch.stack(v) for n, v in self.term_history.items()} or None,
        )


def _accelerator(device: torch.device) -> tuple[str, list[int] | int]:
    if device.type == "cuda":
        return "gpu", [device.index or 0]
    if device.type == "mps":
        return "mps", 1
    return "cpu", 1


@contextlib.contextmanager
def quiet_lightning():
    """Silence Lightning's per-fit banners and hint warnings (many short fits per run)."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers.*returned `None`.*")
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def run_stages(
    prior: Prior,
    operator: nn.Module,
    y: torch.Tensor,
    latent_init: torch.Tensor,
    stages: Sequence[Stage | Mapping],
    *,
    labels: torch.Tensor | None = None,
    loss_terms: Mapping[str, LossTerm] | None = None,
    batching: Batching = "sequential",
    callbacks: Sequence[pl.Callback] = (),
    progress: bool = False,
    module_hook: Callable[[InversionModule], None] | None = None,
    keep: Keep = "best",
    per_image: bool = False,
    **options,
) -> FitResult:
    """Run the stages as one ``Trainer.fit`` (one epoch per step) and return the kept iterates.

    Args:
        prior, operator, y, latent_init, stages, labels, loss_terms, batching, keep: see
            :class:`InversionModule`; ``options``: its other keywords (``optimizers``, ``adam``,
            ``generator_groups``, ``final_score``, ``record_terms``).
        callbacks: Lightning callbacks (e.g. :class:`callbacks.MSEThresholdStop`,
            :class:`callbacks.ImageGridLogger`); those that are :class:`~inversion.stages.StageCallback`
            also run at each stage start.
        progress: show Lightning's progress bar.
        module_hook: called with the module before the fit (tests, custom setups).
        per_image: one fit per image (DGP fits one image at a time: with persistent optimizers each image
            then has its own Adam step count, so a stopped image skips its updates exactly); the results
            are stacked, histories padded with NaN to the schedule's length.

    Shape:
        - y: ``(B, ...)``; latent_init: ``(B, *prior.latent_shape)``; result images ``(B, C, H, W)``.
    """
    kw = dict(labels=labels, loss_terms=loss_terms, batching=batching, keep=keep, **options)
    if per_image and y.shape[0] > 1:
        fits = []
        for i in range(y.shape[0]):
            one = {**kw, "labels": None if labels is None else labels[i : i + 1]}
            module = InversionModule(prior, operator, y[i : i + 1], latent_init[i : i + 1], stages, **one)
            module.split = (i, y.shape[0])
            fits.append(_fit(module, prior, y, callbacks, progress, module_hook))
        return stack_results(fits, module.total_steps)
    module = InversionModule(prior, operator, y, latent_init, stages, **kw)
    if per_image:
        module.split = (0, 1)
    fit = _fit(module, prior, y, callbacks, progress, module_hook)
    return stack_results([fit], module.total_steps) if per_image else fit


def _fit(module, prior, y, callbacks, progress, module_hook) -> FitResult:
    module.log_metrics = any(getattr(c, "reads_metrics", True) for c in callbacks) or progress
    if module_hook is not None:
        module_hook(module)
    accelerator, devices = _accelerator(y.device)
    with quiet_lightning():
        trainer = pl.Trainer(
            accelerator=accelerator,
            devices=devices,
            max_epochs=module.total_steps,
            min_epochs=0,
            enable_checkpointing=False,
            logger=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=list(callbacks),
        )
        flags = [p.requires_grad for p in prior.parameters()]
        try:
            trainer.fit(module, train_dataloaders=DataLoader([0], batch_size=1))
        finally:  # an interrupted fit must not leave the prior frozen
            for p, f in zip(prior.parameters(), flags, strict=True):
                p.requires_grad_(f)
    return module.finish()


def _pad(rows: torch.Tensor, total: int) -> torch.Tensor:
    if rows.shape[0] >= total:
        return rows
    return torch.cat([rows, rows.new_full((total - rows.shape[0], *rows.shape[1:]), float("nan"))])


def stack_results(fits: Sequence[FitResult], total: int) -> FitResult:
    """Per-image :class:`FitResult` s (one row each) as one; histories NaN-padded to ``total`` rows."""
    gens = [g for f in fits for g in (f.generators or [])]
    losses = None
    if fits[0].losses:
        losses = {n: torch.cat([_pad(f.losses[n], total) for f in fits], dim=1) for n in fits[0].losses}
    return FitResult(
        images=torch.cat([f.images for f in fits]),
        latent=torch.cat([f.latent for f in fits]),
        objective=torch.cat([f.objective for f in fits]),
        mse=torch.cat([f.mse for f in fits]),
        history=torch.cat([_pad(f.history, total) for f in fits], dim=1),
        steps=torch.cat([f.steps for f in fits]),
        generators=gens if fits[0].generators is not None else None,
        losses=losses,
    )
