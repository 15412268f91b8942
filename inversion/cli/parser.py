"""The command line of ``python -m inversion``: ``--config`` presets plus one flag per field of
:class:`~inversion.cli.options.RestoreOptions`; ``python -m inversion compare OUT1 OUT2 ...`` compares
runs."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

import inversion.cli as package
from inversion.cli.options import RestoreOptions

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m inversion", description=package.__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML preset (configs/inversion/*.yaml)")
    parser.add_class_arguments(RestoreOptions)
    return parser


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # python -m inversion compare OUT1 OUT2 ...
        from inversion.report import compare_main

        return compare_main(argv[1:])
    parser = build_parser()
    init = parser.instantiate_classes(parser.parse_args(argv))
    opts = RestoreOptions(**{k: v for k, v in init.items() if k != "config"})
    from inversion.cli.run import launch

    return launch(opts, argv)


if __name__ == "__main__":  # pragma: no cover
    main()
