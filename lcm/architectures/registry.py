"""The architecture registry: :func:`lcm.load_prior` asks each registered architecture whether it
recognises a checkpoint file, and the first that does loads it.

How to register an architecture (e.g. a DCGAN, or named pretrained priors)::

    # lcm/architectures/dcgan.py
    from lcm.architectures.registry import Architecture, CheckpointFile, register_architecture
    from lcm.architectures.state_dicts import load_state_dict_strict

    def _recognise(file: CheckpointFile) -> bool:
        state = file.state()              # torch.load(weights_only=True), read once for all recognisers
        return isinstance(state, dict) and "main.0.weight" in state

    def _load(file: CheckpointFile, map_location="cpu") -> Prior:   # keyword options: load_prior's
        net = DCGANGenerator(...)                                     # **options for this architecture
        load_state_dict_strict(net, file.state(), repr(str(file.path)), "the DCGAN generator")
        return Prior(net, ...).to(map_location).eval()

    register_architecture(Architecture("dcgan", "DCGAN generator state dict (.pth)", _recognise, _load))

then import the module in ``lcm/architectures/__init__.py`` (the package's list of architectures). A
recogniser must be cheap, accept no file another one accepts (the first that recognises a file loads it),
and raise for no readable file of another architecture (look at the suffix, the options or the keys of
:meth:`CheckpointFile.state`; an unreadable file fails there with one clear message); ``explain`` may name
what an unrecognised file is (shown in the error). Options the loader does not take fail with the
architecture's valid ones. A named pretrained prior is an architecture whose recogniser matches its name
(``file.path.name``) and whose loader reads weights that are on disk (weights that cannot be downloaded are
never faked: fail with one clear message).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Architecture",
    "CheckpointFile",
    "available_architectures",
    "get_architecture",
    "load_checkpoint",
    "recognise",
    "register_architecture",
]


@dataclass
class CheckpointFile:
    """A checkpoint file as the recognisers see it: its path, ``load_prior``'s architecture options,
    and its contents read once (:meth:`state`)."""

    path: Path
    options: dict = field(default_factory=dict)
    _state: Any = field(default=None, repr=False)
    _read: bool = field(default=False, repr=False)

    def state(self) -> Any:
        """``torch.load(path, weights_only=True)`` on the CPU, read on first use.

        Raises:
            ValueError: a truncated / corrupt file, or one holding objects ``weights_only`` refuses.
        """
        if not self._read:
            self._state = _read_torch_file(self.path)
            self._read = True
        return self._state

    def is_pickle_snapshot(self) -> bool:
        """A ``.pkl`` that is a pickle, not a torch zip archive (a ``.ckpt`` renamed ``.pkl`` is not one:
        files are recognised by their content, the name only tells a snapshot from a legacy torch file)."""
        from lcm.checkpoints import sniff

        return self.path.suffix == ".pkl" and sniff(self.path) != "zip"


def _read_torch_file(path: Path) -> Any:
    from lcm.checkpoints import read_torch_file  # CRCs, not-a-checkpoint, weights_only, finite weights

    return read_torch_file(path, "prior checkpoint", "cpu")


@dataclass(frozen=True)
class Architecture:
    """A registered checkpoint format.

    Attributes:
        name: short name (``"lightning"``, ``"biggan"``, ``"stylegan2"``).
        description: what files it reads, for the error listing the architectures.
        recognise: ``recognise(file) -> bool``; cheap, never raises for foreign files.
        load: ``load(file, map_location, **options) -> lcm.Prior``.
        explain: optional ``explain(file) -> str | None``: what an unrecognised file is, if this
            architecture can tell (e.g. "a BigGAN discriminator (pass it as critic=...)").
    """

    name: str
    description: str
    recognise: Callable[[CheckpointFile], bool]
    load: Callable[..., Any]
    explain: Callable[[CheckpointFile], str | None] | None = None

    def options(self) -> list[str]:
        """The keyword options its loader takes (besides the file and ``map_location``)."""
        params = list(inspect.signature(self.load).parameters.values())[2:]
        return [p.name for p in params if p.kind is not p.VAR_KEYWORD]


_REGISTRY: dict[str, Architecture] = {}


def register_architecture(arch: Architecture) -> Architecture:
    """Add ``arch`` (tried after those registered before it). ValueError if its name is taken."""
    old = _REGISTRY.get(arch.name)
    if old is not None and old != arch:
        raise ValueError(f"architecture {arch.name!r} is already registered")
    _REGISTRY[arch.name] = arch
    return arch


def _ensure_loaded() -> None:
    import lcm.architectures  # noqa: F401 - its __init__ imports (and so registers) every architecture


def available_architectures() -> tuple[str, ...]:
    """Names of the registered architectures, in the order they are tried."""
    _ensure_loaded()
    return tuple(_REGISTRY)


def get_architecture(name: str) -> Architecture:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(f"architecture must be one of {available_architectures()}, got {name!r}")
    return _REGISTRY[name]


def recognise(file: CheckpointFile) -> Architecture:
    """The first registered architecture that recognises ``file``.

    Raises:
        ValueError: none does; the message lists the registered architectures (and what the file is, when
            one of them can tell).
    """
    _ensure_loaded()
    for arch in _REGISTRY.values():
        if arch.recognise(file):
            return arch
    hints = [h for a in _REGISTRY.values() if a.explain is not None and (h := a.explain(file))]
    state = file.state()
    what = hints[0] if hints else f"a {type(state).__name__} that no registered architecture recognises"
    known = "; ".join(f"{a.name}: {a.description}" for a in _REGISTRY.values())
    raise ValueError(f"{str(file.path)!r} is {what}. load_prior reads: {known}")


def load_checkpoint(path: str | os.PathLike, map_location="cpu", **options):
    """The :class:`lcm.Prior` of the checkpoint at ``path`` (see :func:`lcm.load_prior`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prior checkpoint {str(path)!r} does not exist (or is not a file)")
    critic = options.get("critic")
    if critic is not None and not Path(critic).is_file():  # whatever the architecture: a missing file
        raise FileNotFoundError(f"critic {str(critic)!r} does not exist (or is not a file)")
    file = CheckpointFile(path, dict(options))
    arch = recognise(file)
    valid = arch.options()
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"{str(path)!r} is a {arch.name} checkpoint ({arch.description}); options {unknown} are not "
            f"among its options {valid}"
        )
    return arch.load(file, map_location, **options)
