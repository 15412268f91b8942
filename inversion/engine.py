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
from dataclasses import dataclass
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


def make_adam(groups: list[dict], fused: bool | None = None) -> torch.optim.Optimizer:
    """``Adam(fused=True)`` where this torch supports it for these tensors, plain Adam otherwise."""
    if fused is not False:
        try:
            return torch.optim.Adam(groups, fused=True)
        except (RuntimeError, TypeError, ValueError):
            if fused:
                raise
    return torch.optim.Adam(groups)


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
        labels: torch.Tensor | None = None,
        loss_terms: Mapping[str, LossTerm] | None = None,
        batching: Batching = "sequential",
        keep: Keep = "best",
    ):
        super().__init__()
        if batching not in ("sequential", "vmap"):
            raise ValueError(f"batching must be 'sequential' or 'vmap', got {batching!r}")
        if keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
        self.keep = keep
        check_prior(prior)
        _check_latent_init(latent_init, y, prior)
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
        self._opt: torch.optim.Optimizer | None = None
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
            self.copies = [copy.deepcopy(gen).eval() for _ in range(self.n)]
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
        if stage.trains_generator and self.copies is None and self.stacked is None:
            self.make_copies()
        if previous is not None:
            self._restart_stopped()
            if previous.weights != stage.weights:
                # a new objective: values of the old one are not comparable, the best restarts here
                self.best_obj.fill_(float("inf"))
                self.best_mse.fill_(float("inf"))
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
        self._opt = make_adam(groups)
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
        for name, weight in stage.weights.items():
            if weight == 0.0:
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
            obj = obj + weight * term
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
        opt = self._opt
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt.step()
        self._after_step()
        self.t += 1
        if self.log_metrics:  # Lightning's logging costs ~1-3 ms a step: only when a callback reads it
            live = mse[self.active] if self.active.any() else mse
            self.log("measurement_mse_max", live.max().detach(), on_step=False, on_epoch=True)
            self.log("objective", obj.detach().sum(), on_step=False, on_epoch=True, prog_bar=True)
        if not self.active.any():  # every image stopped: on to the next stage, or the end
            k = self.stage_index + 1
            self.t = self.starts[k] if k < len(self.starts) else self.total_steps
        if self.t >= self.total_steps:
            self.trainer.should_stop = True
        return loss.detach()

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
        self.history.append(torch.where(self.active, obj, torch.full_like(obj, float("nan"))))
        if count:
            self.steps_run += self.active.long()
        self.stall = torch.where(better & self.active, torch.zeros_like(self.stall), self.stall + 1)
        if stage.stop_mse is not None:
            self.active &= mse > stage.stop_mse
        if stage.patience is not None:
            self.active &= self.stall < stage.patience

    # -- result ----------------------------------------------------------------------------
    @torch.no_grad()
    def finish(self) -> FitResult:
        """Score the last iterate too, then return every image at its kept (best or last) iterate."""
        if self.t > 0 and self.active.any():
            x = self.synthesize()
            obj, mse = self.objective(x)
            self._record(obj, mse, count=False)  # history gets this final iterate as its last row
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
    labels: torch.Tensor | None = None,
    loss_terms: Mapping[str, LossTerm] | None = None,
    batching: Batching = "sequential",
    callbacks: Sequence[pl.Callback] = (),
    progress: bool = False,
    module_hook: Callable[[InversionModule], None] | None = None,
    keep: Keep = "best",
) -> FitResult:
    """Run the stages as one ``Trainer.fit`` (one epoch per step) and return the best iterates.

    Args:
        prior, operator, y, latent_init, stages, labels, loss_terms, batching, keep: see
            :class:`InversionModule`.
        callbacks: Lightning callbacks (e.g. :class:`callbacks.MSEThresholdStop`,
            :class:`callbacks.ImageGridLogger`); those that are :class:`~inversion.stages.StageCallback`
            also run at each stage start.
        progress: show Lightning's progress bar.
        module_hook: called with the module before the fit (tests, custom setups).

    Shape:
        - y: ``(B, ...)``; latent_init: ``(B, *prior.latent_shape)``; result images ``(B, C, H, W)``.
    """
    module = InversionModule(prior, operator, y, latent_init, stages, labels, loss_terms, batching, keep)
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
