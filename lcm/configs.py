"""Where the YAML presets (``configs/``) live: the checkout's folder, or the installed package data.

A wheel ships ``configs/`` as the package ``genprior_configs`` (see setup.py), so presets such as DGP's
``preset: sr_mse`` resolve outside a checkout too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["config_dir", "load_options"]


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
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    opts = data.get("options", data)
    if not isinstance(opts, Mapping):
        raise ValueError(f"preset {str(path)!r}: 'options' must be a mapping")
    return dict(opts)
