"""``python -m lcm {fit,validate,test,predict} -c configs/lcm/<name>.yaml``: train or evaluate a prior
(LightningCLI, :mod:`lcm.cli`).

The bare overview (``python -m lcm --help``) is printed without importing Lightning, whose import alone
takes 5-7 s on a 2-core machine; every subcommand, and ``python -m lcm <subcommand> --help`` with all
options, goes to LightningCLI.
"""

import sys

# LightningCLI's subcommands (pytorch_lightning.cli.LightningCLI.subcommands(); a test keeps them equal)
SUBCOMMANDS = {
    "fit": "train a prior (resume with --ckpt_path last)",
    "validate": "held-out reconstruction and offline Frechet distance of a checkpoint",
    "test": "the same on the test split",
    "predict": "write samples of a checkpoint as PNGs and a grid",
}


def overview() -> str:
    from lcm.configs import config_dir

    try:
        presets = sorted(p.name for p in (config_dir() / "lcm").glob("*.yaml"))
    except FileNotFoundError:
        presets = []
    lines = [
        "usage: python -m lcm [-c CONFIG] [--print_config[=flags]] {" + ",".join(SUBCOMMANDS) + "} ...",
        "",
        "Train and evaluate learned image priors (WGAN-GP, GLO, LCM, AE) with LightningCLI.",
        "",
        "subcommands (python -m lcm <subcommand> --help lists every option):",
        *(f"  {name:<10} {text}" for name, text in SUBCOMMANDS.items()),
        "",
        "options:",
        "  -h, --help            show this overview and exit",
        "  -c CONFIG, --config CONFIG",
        "                        a YAML configuration (may be given after the subcommand)",
        "  --print_config        print the resulting configuration and exit",
    ]
    if presets:
        lines += ["", f"presets in {config_dir() / 'lcm'}:", "  " + " ".join(presets)]
    lines += ["", "example: python -m lcm fit -c configs/lcm/wgangp.yaml --trainer.max_steps 2000"]
    return "\n".join(lines)


def main() -> None:
    from lcm.runtime import tune_allocator

    tune_allocator()  # lcm.runtime: freed memory stays in the process (GENPRIOR_ALLOCATOR=system: off)
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(overview())
        return
    from datamodules.io.errors import one_line_errors
    from lcm.cli import cli_main

    one_line_errors(lambda argv: cli_main(argv), "lcm")  # one-line errors, exit 143 on SIGTERM


if __name__ == "__main__":
    main()
