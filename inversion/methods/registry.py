"""The method registry: ``restore(..., method=name)`` looks its method up here.

A method is one module that registers a run function with its own typed config::

    from dataclasses import dataclass

    from inversion.methods.common import PriorConfig
    from inversion.methods.registry import check_positive_int, register_method

    @dataclass
    class MyConfig(PriorConfig):          # or MethodConfig for a prior-free method
        my_steps: int = 100

        def check(self) -> None:          # optional: reject values no fit can run with
            check_positive_int(self, "my_steps")

    @register_method("mine", MyConfig)    # also registers "mine_bp" (IAGAN eq. 10 post-step)
    def mine(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms):
        ...
        return fit, history               # (FitResult, (T, B) objective per step)

The config's fields are the method's ``restore(**options)`` / CLI ``options:``; an unknown option fails
with the method's valid ones. ``start="dgp_class_pick"`` asks :func:`~inversion.methods.restore` to pick
unknown classes of a class-conditional prior as DGP does before the method runs (the config then needs a
``label_candidates`` field); the default ``start="given"`` hands the labels over as given (None or -1 for
unknown: the method infers them itself, or says why it cannot).

Every module in the ``inversion.methods`` package is imported on the first lookup, so a method module
placed there registers itself without being listed anywhere; a method defined elsewhere registers when its
module is imported.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Literal

__all__ = [
    "MethodConfig",
    "MethodSpec",
    "available_methods",
    "check_number",
    "check_positive_int",
    "get_method",
    "method_config",
    "register_method",
]

Start = Literal["given", "dgp_class_pick"]
STARTS = ("given", "dgp_class_pick")

# run(prior, operator, y, seeds, labels, cfg, noisy, callbacks, loss_terms) -> (FitResult, history (T, B))
MethodFn = Callable[..., tuple]


@dataclass
class MethodConfig:
    """Base of every method's config: no options, only their validation.

    Subclasses are dataclasses whose fields are the method's options; :meth:`check` rejects values
    no fit can run with (called by :meth:`updated`, i.e. before any fit).
    """

    def updated(self, overrides: Mapping, method: str | None = None) -> MethodConfig:
        """A copy with ``overrides`` applied and checked (ValueError names unknown options)."""
        names = {f.name for f in fields(self)}
        unknown = set(overrides) - names
        if unknown:
            who = f"method {method!r}" if method else type(self).__name__
            raise ValueError(
                f"unknown restore() options {sorted(unknown)} for {who}; valid options: {sorted(names)}"
            )
        cfg = replace(self, **overrides)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ValueError naming the first option whose value no fit can run with."""


def check_positive_int(cfg: MethodConfig, *names: str) -> None:
    """ValueError unless each named option is an int >= 1."""
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def check_number(cfg: MethodConfig, name: str, positive: bool = False, optional: bool = False) -> None:
    """ValueError unless the option is a finite number >= 0 (> 0 when ``positive``; None if ``optional``)."""
    v = getattr(cfg, name)
    if v is None and optional:
        return
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its run function, config class, start and back-projection flag."""

    name: str
    run: MethodFn
    config: type[MethodConfig]
    start: Start = "given"
    back_projection: bool = False

    def make_config(self, overrides: Mapping | None = None) -> MethodConfig:
        return self.config().updated(dict(overrides or {}), self.name)


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register_method(
    name: str, config: type[MethodConfig], *, start: Start = "given", with_bp: bool = True
) -> Callable[[MethodFn], MethodFn]:
    """Decorator: make ``restore(..., method=name)`` run the decorated function with ``config``.

    Args:
        name: method name (``restore``'s and the CLI's ``method``).
        config: a :class:`MethodConfig` dataclass holding the method's options.
        start: ``"given"`` (labels handed over as given) or ``"dgp_class_pick"`` (unknown classes of a
            class-conditional prior picked as DGP does first; ``config`` needs ``label_candidates``).
        with_bp: also register ``name + "_bp"`` (IAGAN eq. 10 back-projection after the fit).

    Returns:
        the decorator (it returns the function unchanged), so ``register_method(name, cfg)(fn)``
        registers a function defined elsewhere.
    """
    if not (isinstance(config, type) and issubclass(config, MethodConfig)):
        raise ValueError(f"config of method {name!r} must be a MethodConfig dataclass, got {config!r}")
    if start not in STARTS:
        raise ValueError(f"start of method {name!r} must be one of {STARTS}, got {start!r}")
    if start == "dgp_class_pick" and "label_candidates" not in {f.name for f in fields(config)}:
        raise ValueError(
            f"method {name!r} asks for DGP's class pick: its config {config.__name__} needs a "
            "label_candidates field (candidates per unknown class)"
        )

    def register(run: MethodFn) -> MethodFn:
        for key, bp in ((name, False), *(((name + "_bp", True),) if with_bp else ())):
            old = _REGISTRY.get(key)
            if old is not None and old.run is not run:
                raise ValueError(f"method {key!r} is already registered (by {old.run.__module__})")
            _REGISTRY[key] = MethodSpec(key, run, config, start, bp)
        return run

    return register


def _discover() -> None:
    """Import every module of ``inversion.methods`` once (each registers its method)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import inversion.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def get_method(name: str) -> MethodSpec:
    """The registered method ``name`` (ValueError listing the available ones)."""
    if name not in _REGISTRY:
        _discover()
    if name not in _REGISTRY:
        raise ValueError(f"method must be one of {available_methods()}, got {name!r}")
    return _REGISTRY[name]


def available_methods() -> tuple[str, ...]:
    """Every method name ``restore`` accepts (sorted)."""
    _discover()
    return tuple(sorted(_REGISTRY))


def method_config(method: str, overrides: Mapping | None = None) -> MethodConfig:
    """The validated config of ``method`` with ``overrides`` (ValueError names unknown ones)."""
    return get_method(method).make_config(overrides)
