"""Stages of an inversion: what trains, how fast, under which loss weights, for how many steps.

A stage is one mapping (YAML) or one :class:`Stage` (Python); a method is a list of them. Example::

    stages:
      - {iterations: 300, latent_lr: 0.1}                                   # CSGM: z only
      - {iterations: 200, latent_lr: 1.0e-4, generator: all, generator_lr: 1.0e-4}   # IAGAN: z + G
      - {iterations: 100, generator: [0, 2], weights: {mse: 1.0, critic: 0.1}}       # DGP-style
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pytorch_lightning as pl

__all__ = ["Stage", "StageCallback", "as_stages"]


@dataclass
class Stage:
    """One stage of an inversion.

    Args:
        iterations: Adam steps of this stage (> 0).
        latent: whether the per-image latent trains.
        generator: which generator parameters train, per image (each image gets a private copy of
            the generator from the first stage that trains it): ``None`` (frozen, shared), ``"all"``,
            or ``[start, stop)`` block indices into ``prior.generator.blocks`` (latent side first).
        latent_lr: Adam learning rate of the latent.
        generator_lr: Adam learning rate of the trainable generator parameters.
        weights: per-image loss weights by term name. Built-in terms: ``mse`` (measurement MSE,
            mean over the measurement of each image) and ``latent_prior`` (``prior.latent_penalty``);
            other names must be given to the engine as ``loss_terms``.
        stop_mse: an image stops for the rest of this stage (its best iterate is frozen) once its
            measurement MSE is <= this; it resumes from that iterate in the next stage. To end the
            whole fit at a threshold use :class:`callbacks.MSEThresholdStop`.
        patience: an image stops for the rest of this stage once its objective has not improved
            for this many steps.

    The kept result of an image is its iterate of least objective (engine ``keep="best"``; with
    ``keep="last"``, DGP, it is the final iterate and ``stop_mse`` only ends the stage); a stage
    whose ``weights`` differ from the previous stage's starts that comparison afresh (values of
    different objectives are not comparable), so the result comes from the last objective.
        name: label for logs.
    """

    iterations: int
    latent: bool = True
    generator: str | list[int] | None = None
    latent_lr: float = 0.1
    generator_lr: float = 1e-4
    weights: dict[str, float] = field(default_factory=lambda: {"mse": 1.0})
    stop_mse: float | None = None
    patience: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if int(self.iterations) <= 0:
            raise ValueError(f"Stage.iterations must be a positive integer, got {self.iterations!r}")
        self.iterations = int(self.iterations)
        if isinstance(self.generator, str) and self.generator.lower() in ("none", ""):
            self.generator = None
        if self.generator is not None and self.generator != "all":
            if (
                isinstance(self.generator, str)
                or len(self.generator) != 2
                or not 0 <= int(self.generator[0]) < int(self.generator[1])
            ):
                raise ValueError(
                    "Stage.generator must be None, 'all' or a block range [start, stop), "
                    f"got {self.generator!r}"
                )
            self.generator = [int(self.generator[0]), int(self.generator[1])]
        if not self.latent and self.generator is None:
            raise ValueError(
                "a Stage must train something: set latent=True or generator='all' / [start, stop)"
            )
        if not self.weights:
            raise ValueError("Stage.weights is empty: give at least {'mse': 1.0}")
        self.weights = {str(k): float(v) for k, v in self.weights.items()}

    @property
    def trains_generator(self) -> bool:
        return self.generator is not None


def as_stages(stages: Sequence[Stage | Mapping]) -> list[Stage]:
    """Turn a list of :class:`Stage` / mappings (from YAML) into fresh :class:`Stage` objects."""
    if isinstance(stages, (Stage, Mapping)) or not len(stages):
        raise ValueError("stages must be a non-empty list of Stage objects or mappings")
    names = {f.name for f in fields(Stage)}
    out = []
    for i, s in enumerate(stages):
        if isinstance(s, Stage):
            out.append(replace(s, weights=dict(s.weights)))
            continue
        unknown = set(s) - names
        if unknown:
            raise ValueError(f"stage {i} has unknown keys {sorted(unknown)}; valid keys: {sorted(names)}")
        out.append(Stage(**dict(s)))
    return out


@runtime_checkable
class StageCallback(Protocol):
    """The engine's stage hook: a Lightning callback with this method is called at each stage boundary
    (:meth:`inversion.engine.InversionModule._enter_stage`), after the engine set what the stage trains
    and before it builds the stage's optimizer. It may freeze or unfreeze generator parameters or swap
    layers (``callbacks.ProgressiveUnfreezing``, ``callbacks.BatchNormToInstanceNorm``) or just record
    (``callbacks.StageMarks``); the optimizer then takes exactly the parameters that require gradients.

    Callbacks implement it structurally (``callbacks`` does not import ``inversion``).
    """

    def on_stage_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, k: int, stage: Stage
    ) -> None:
        """Stage ``k`` (0-based) of ``pl_module.stages`` starts; ``stage`` is ``pl_module.stages[k]``."""
