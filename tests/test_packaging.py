"""The wheel: ships configs/ as package data, no experiments (benchmarks/, claims), and runs a DGP preset
from outside the checkout."""

import os
import runpy
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import sys
from pathlib import Path
import lcm, inversion
site = Path(sys.argv[1]).resolve()
assert Path(lcm.__file__).resolve().is_relative_to(site), lcm.__file__
assert Path(inversion.__file__).resolve().is_relative_to(site), inversion.__file__
from lcm.configs import config_dir
assert config_dir().resolve().is_relative_to(site), config_dir()
from inversion.dgp import load_preset
assert load_preset("sr_mse")["bn_to_in"] is True
from inversion.cli import main
from inversion.cli.prior import register_prior_factory
import toyprior
register_prior_factory("toyprior:prior", toyprior.prior)  # a spec names no code to import: register it
main(["--prior", "toyprior:prior", "--input", "imgs", "--output", "out", "--method", "dgp",
      "--options", "{preset: sr_mse, n_candidates: 2, stages: [{blocks: 1, iterations: 2}]}",
      "--operator", "{class_path: inversion.operators.SuperResolution, init_args: {factor: 2}}",
      "--progress", "false"])
"""

PRIOR = """
import torch
import lcm

def prior():
    torch.manual_seed(0)
    return lcm.WGANGP(channels=1, resolution=16, latent_dim=4, width=4, critic_width=4).to_prior()
"""


def _experiments(folder: Path) -> list[Path]:
    """Experiment code under ``folder``: a ``benchmarks`` package, ``benchmark*.py``, ``claims*``."""
    found = [p for p in folder.rglob("benchmarks") if p.is_dir()]
    return sorted([*found, *folder.rglob("benchmark*.py"), *folder.rglob("claims*")])


def test_the_package_list_holds_no_experiments(monkeypatch):
    import setuptools

    got = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: got.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    packages = got["packages"]
    assert {"lcm", "inversion", "inversion.dgp", "datamodules", "callbacks"} <= set(packages)
    assert (ROOT / "benchmarks" / "__init__.py").is_file()  # the experiments exist, beside the packages
    assert not [p for p in packages if p.split(".")[0] == "benchmarks" or "benchmark" in p or "claims" in p]
    shipped = [ROOT / p.replace(".", "/") for p in packages if p != "genprior_configs"]
    assert not [x for d in shipped for x in _experiments(d)]  # no benchmark module inside a package


def test_every_imported_third_party_package_is_declared():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for d in deps}
    for needed in ("pyyaml", "tqdm", "threadpoolctl", "efficientnet-lite-pytorch"):
        assert needed in names


@pytest.mark.skipif(os.environ.get("GENPRIOR_SKIP_WHEEL") == "1", reason="GENPRIOR_SKIP_WHEEL=1")
def test_wheel_runs_a_dgp_preset_outside_the_checkout(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    # setuptools reuses build/lib: a module deleted from the tree since the last wheel would ship again
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT], check=True)
    (wheel,) = wheels.glob("genprior-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    for sub in ("lcm", "inversion", "inversion/dgp", "datamodules", "callbacks"):  # every code package
        assert (site / sub / "__init__.py").is_file()
    assert not _experiments(site)  # and no benchmark or claims code
    shipped = {p.relative_to(site / "genprior_configs") for p in (site / "genprior_configs").rglob("*.yaml")}
    assert shipped == {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*.yaml")}

    work.mkdir()
    (work / "toyprior.py").write_text(PRIOR)
    (work / "imgs").mkdir()
    from datamodules.io.images import save_png
    from lcm.toy import blob_images

    save_png(blob_images(1)[0], work / "imgs" / "a.png")
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run([sys.executable, "-c", RUN, site], cwd=work, env=env, check=True, timeout=300)
    assert (work / "out" / "restored" / "a.png").is_file()
    assert len((work / "out" / "metrics.csv").read_text().splitlines()) == 2
