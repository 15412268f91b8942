"""Where the YAML presets (``configs/``) live: the checkout's folder, or the installed package data.

A wheel ships ``configs/`` as the package ``genprior_configs`` (see setup.py), so presets such as DGP's
``preset: sr_mse`` resolve outside a checkout too.

Configs are data: :func:`load_yaml` / :func:`check_yaml` bound a YAML text's size and alias expansion, and
:func:`restrict_config_files` makes the CLIs' parser (jsonargparse) use that bound and import a
``class_path`` only under :data:`IMPORTABLE` (genprior's packages, Lightning, ``torch.optim``), checked
before anything is imported; :func:`allow_class_paths` adds a package of your own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

__all__ = [
    "ConfigTooLargeError",
    "allow_class_paths",
    "check_yaml",
    "config_dir",
    "load_options",
    "load_yaml",
    "restrict_config_files",
]

MAX_CONFIG_BYTES = 1 << 20  # a config / priors file; ours are a few KB
MAX_YAML_NODES = 100_000  # nodes of a document once every alias is expanded ("billion laughs": 10**9)


def config_dir() -> Path:
    """The ``configs`` folder: ``<checkout>/configs`` when running from a source tree, else the
    installed ``genprior_configs`` package.

    Raises:
        FileNotFoundError: neither exists (a broken install).
    """
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "configs").is_dir():
        return root / "configs"
    try:
        import genprior_configs  # a namespace package: configs/ has no __init__.py

        for path in genprior_configs.__path__:
            if Path(path).is_dir():
                return Path(path)
    except ImportError:
        pass
    raise FileNotFoundError(
        "genprior's configs/ folder was not found: run from a checkout or reinstall the package "
        "(`pip install genprior` ships it as genprior_configs)"
    )


def load_options(path: str | os.PathLike) -> dict:
    """The ``options`` mapping of a preset YAML file (the whole file when it has no ``options`` key).

    Raises:
        ValueError: ``options`` is not a mapping.
    """
    data = load_yaml(Path(path).read_text(), f"preset {str(path)!r}") or {}
    opts = data.get("options", data)
    if not isinstance(opts, Mapping):
        raise ValueError(f"preset {str(path)!r}: 'options' must be a mapping")
    return dict(opts)


class ConfigTooLargeError(yaml.YAMLError, ValueError):
    """A YAML text over the size bound, or whose aliases expand past the node bound (nothing was built)."""


def check_yaml(text: str, what: str, loader=None) -> None:
    """Refuse a YAML text over :data:`MAX_CONFIG_BYTES`, or whose aliases expand it past
    :data:`MAX_YAML_NODES` nodes (an alias bomb), before it is constructed: composing counts each node once,
    the count follows every alias.

    Raises:
        ConfigTooLargeError (a ValueError): naming ``what``, the size or the expanded node count.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigTooLargeError(
            f"{what} is {len(text)} characters, more than the {MAX_CONFIG_BYTES} a config may have: is it "
            "the right file?"
        )
    if "*" not in text:  # no alias: nothing expands
        return
    sizes: dict[int, int] = {}

    def size(node) -> int:  # nodes of the expanded tree; an aliased node is the same object, counted once
        if id(node) not in sizes:
            sizes[id(node)] = 1  # a recursive alias counts once
            if isinstance(node, yaml.MappingNode):
                n = 1 + sum(size(k) + size(v) for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                n = 1 + sum(size(v) for v in node.value)
            else:
                n = 1
            sizes[id(node)] = min(n, MAX_YAML_NODES + 1)
        return sizes[id(node)]

    for doc in yaml.compose_all(text, Loader=loader or yaml.SafeLoader):
        if doc is not None and size(doc) > MAX_YAML_NODES:
            raise ConfigTooLargeError(
                f"{what}: its aliases (*name) expand it to more than {MAX_YAML_NODES} values (an alias "
                "bomb?); write the values out, or use fewer nested aliases"
            )


def load_yaml(text: str, what: str):
    """``yaml.safe_load(text)`` after :func:`check_yaml` (size and alias expansion bounded)."""
    check_yaml(text, what)
    return yaml.safe_load(text)


_GATED = False


def restrict_config_files() -> None:
    """Make jsonargparse (the CLIs' parser: ``--config`` files and every YAML value on the command line)
    load YAML only through :func:`check_yaml`, and import only what a config may name (see
    :data:`IMPORTABLE`). Idempotent; imports no torch."""
    global _GATED
    if _GATED:
        return
    from jsonargparse import get_loader, set_loader, set_parsing_settings

    yaml_load = get_loader("yaml")

    def bounded(text: str):
        check_yaml(text, "a YAML config or value")
        return yaml_load(text)

    set_loader("yaml", bounded, exceptions=(yaml.YAMLError,))  # a parser error, not a traceback
    extra = [p.strip() for p in os.environ.get("GENPRIOR_CLASS_PATHS", "").split(",") if p.strip()]
    set_parsing_settings(
        import_path_denylist=["*", *NOT_IMPORTABLE], import_path_allowlist=[*IMPORTABLE, *extra]
    )
    _GATED = True


def allow_class_paths(*packages: str) -> None:
    """Let configs and flags name classes of ``packages`` too (your own operators, datamodules, ...; call
    it in Python before the CLI's ``main``). A package named here is imported when a config names it."""
    from jsonargparse import set_parsing_settings

    restrict_config_files()
    set_parsing_settings(import_path_allowlist=list(packages))


# what a class_path in a config or on the command line may name (checked before anything is imported:
# ``evilop.Foo`` must not import an ``evilop.py`` from the current folder, nor ``this.Foo`` print the Zen)
IMPORTABLE = (
    "datamodules",
    "callbacks",
    "lcm",
    "inversion",
    "pytorch_lightning",
    "lightning",
    "lightning_fabric",
    "torch.optim",
)
# inside those: modules that run a program when imported (``--operator inversion.__main__.Foo`` ran the CLI)
NOT_IMPORTABLE = ("inversion.__main__", "lcm.__main__", "datamodules.__main__")
