"""The command line of ``python -m inversion``: ``--config`` presets plus one flag per field of
:class:`~inversion.cli.options.RestoreOptions`; ``python -m inversion compare OUT1 OUT2 ...`` compares
runs."""

from __future__ import annotations

import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

import inversion.cli as package
from inversion.cli.options import RestoreOptions

__all__ = ["build_parser", "compare_main", "main"]


def build_parser() -> ArgumentParser:
    from lcm.configs import restrict_config_files

    restrict_config_files()  # YAML size / aliases bounded; class_path imports only genprior's and Lightning's
    parser = ArgumentParser(prog="python -m inversion", description=package.__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML preset (configs/inversion/*.yaml)")
    parser.add_class_arguments(RestoreOptions)
    return parser


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # python -m inversion compare OUT1 OUT2 ...
        return compare_main(argv[1:])
    parser = build_parser()
    init = parser.instantiate_classes(parser.parse_args(argv))
    opts = RestoreOptions(**{k: v for k, v in init.items() if k != "config"})
    from inversion.cli.run import launch

    return launch(opts, argv)


def compare_main(argv: list[str]) -> Path:
    """``python -m inversion compare OUT1 OUT2 ... [--output DIR]`` (default DIR: ``OUT1/../compare``)."""
    from inversion.cli.report import compare

    parser = ArgumentParser(prog="python -m inversion compare", description=compare.__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="output folders of `python -m inversion` runs")
    parser.add_argument("--output", default=None, help="folder of the comparison report")
    args = parser.parse_args(list(argv))
    output = args.output or str(Path(args.runs[0]).resolve().parent / "compare")
    try:
        path = compare(args.runs, output)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    print(f"[inversion] comparison report: {path}", file=sys.stderr)
    return path
