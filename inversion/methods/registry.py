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
with the method's valid ones. ``start=name`` asks :func:`~inversion.methods.restore` to run the start
registered as ``name`` (:func:`register_start`) on the labels before the method runs, e.g. DGP's class
pick ``"dgp_class_pick"``, which :mod:`inversion.dgp.starts` registers; the default ``start="given"``
hands the labels over as given (None or -1 for unknown: the method infers them itself, or says why it
cannot).

Plug-ins register themselves: every module in the ``inversion.methods`` package, and the ``method``
module of every sub-package of ``inversion`` (``inversion/dgp/method.py``, ``inversion/cri/method.py``),
is imported on the first lookup; starts come from the sub-packages' ``starts`` modules, imported when a
method names a start not yet registered. A method defined elsewhere registers when its module is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

__all__ = [
    "MethodConfig",
    "MethodSpec",
    "StartSpec",
    "available_methods",
    "check_number",
    "check_positive_int",
    "get_method",
    "get_start",
    "method_config",
    "register_method",
    "register_start",
]

# start(prior, operator, y, seeds, labels, cfg) -> labels, run by restore() before the method
StartFn = Callable[..., object]


@dataclass(frozen=True)
class StartSpec:
    """A registered start: its function and the config fields it reads."""

    name: str
    run: StartFn | None
    needs: tuple[str, ...] = ()


_STARTS: dict[str, StartSpec] = {"given": StartSpec("given", None)}
_starts_loaded = False


def register_start(name: str, run: StartFn, *, needs: Sequence[str] = ()) -> None:
    """Make ``register_method(..., start=name)`` run ``run(prior, operator, y, seeds, labels, cfg)`` (it
    returns the labels the method gets) before the method; ``needs``: config fields the start reads."""
    old = _STARTS.get(name)
    if old is not None and old.run is not run:
        raise ValueError(f"start {name!r} is already registered")
    _STARTS[name] = StartSpec(name, run, tuple(needs))


def _load_starts() -> None:
    """Import the ``starts`` module of every sub-package of ``inversion`` (each registers its starts)."""
    global _starts_loaded
    if _starts_loaded:
        return
    _starts_loaded = True
    for name in _plugin_packages():
        if importlib.util.find_spec(f"{name}.starts") is not None:
            importlib.import_module(f"{name}.starts")


_HERE = Path(__file__).resolve().parent  # inversion/methods (found on disk: the registry imports no plug-in)
_PACKAGE = __name__.rpartition(".")[0]  # inversion.methods


def _plugin_packages() -> list[str]:
    """``inversion``'s sub-packages (``inversion.dgp``, ...), read from the directory."""
    root = _PACKAGE.rpartition(".")[0]
    return [f"{root}.{i.name}" for i in pkgutil.iter_modules([str(_HERE.parent)]) if i.ispkg]


def get_start(name: str) -> StartSpec:
    """The registered start ``name`` (ValueError listing the registered ones)."""
    if name not in _STARTS:
        _load_starts()
    if name not in _STARTS:
        raise ValueError(f"start must be one of {sorted(_STARTS)}, got {name!r}")
    return _STARTS[name]


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
    start: str = "given"
    back_projection: bool = False

    def make_config(self, overrides: Mapping | None = None) -> MethodConfig:
        return self.config().updated(dict(overrides or {}), self.name)


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register_method(
    name: str, config: type[MethodConfig], *, start: str = "given", with_bp: bool = True
) -> Callable[[MethodFn], MethodFn]:
    """Decorator: make ``restore(..., method=name)`` run the decorated function with ``config``.

    Args:
        name: method name (``restore``'s and the CLI's ``method``).
        config: a :class:`MethodConfig` dataclass holding the method's options.
        start: ``"given"`` (labels handed over as given) or a registered start's name
            (:func:`register_start`; e.g. ``"dgp_class_pick"``: unknown classes of a class-conditional
            prior picked as DGP does first; ``config`` then needs the start's fields, ``label_candidates``).
        with_bp: also register ``name + "_bp"`` (IAGAN eq. 10 back-projection after the fit).

    Returns:
        the decorator (it returns the function unchanged), so ``register_method(name, cfg)(fn)``
        registers a function defined elsewhere.
    """
    if not (isinstance(config, type) and issubclass(config, MethodConfig)):
        raise ValueError(f"config of method {name!r} must be a MethodConfig dataclass, got {config!r}")
    try:
        spec = get_start(start)
    except ValueError as e:
        raise ValueError(f"start of method {name!r}: {e}") from None
    missing = [f for f in spec.needs if f not in {f.name for f in fields(config)}]
    if missing:
        raise ValueError(
            f"method {name!r} asks for the start {start!r}: its config {config.__name__} needs the "
            f"field(s) {missing}"
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
    for info in pkgutil.iter_modules([str(_HERE)]):
        importlib.import_module(f"{_PACKAGE}.{info.name}")
    for name in _plugin_packages():  # the paper packages' own registrations (inversion/dgp/method.py)
        if name != _PACKAGE and importlib.util.find_spec(f"{name}.method") is not None:
            importlib.import_module(f"{name}.method")


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
