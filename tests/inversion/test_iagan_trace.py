"""IAGAN's own code, replayed step by step through the public API (``tests/data/iagan_trace_faces64.pt``:
shadyabh/IAGAN ``IAGAN.py`` ``CSGM`` / ``IA`` driven as its ``main.py`` drives them, on the real face DCGAN
``dcgan-faces-64`` restoring the Grace Hopper photo; ``benchmarks.iagan_trace`` prints the same figures).

The replay runs in a child process with oneDNN held to AVX2 (``benchmarks/iagan_trace.py`` says why).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import iagan_trace
from inversion.methods import restore

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gan_face_generate") is None,
    reason="dcgan-faces-64 needs PyPI's gan-face-generate==1.1.1 (make setup installs it)",
)

TRACE = torch.load(iagan_trace.TRACE_PATH, weights_only=True)
ROOT = Path(__file__).parents[2]
CSGM_FIGURES = 7  # the first rows of iagan_trace.figures are CSGM's, the rest IA's


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("iagan") / "replay.pt"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.iagan_trace", "--save", str(out)],
        cwd=ROOT, env=env, check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", iagan_trace.CASES)
def test_csgm_replays_iagans_csgm(replayed, name):
    """Three starts x 40 steps from the trace's z_init, each start's final z, the start picked by its last
    forward's residual: the objective at every step, z_hat, G(z_hat) and its back-projection (main.py's
    A-dagger). For CS_fft also IAGAN's rand_mask, drawn as it draws it."""
    got = replayed[name]
    if got["mask"] is not None:
        assert torch.equal(got["mask"].to(torch.uint8), TRACE[name]["mask"])
    for figure, value, bound in iagan_trace.figures(TRACE[name], got)[:CSGM_FIGURES]:
        assert value < bound, f"{name}: {figure} = {value:.2e} (bound {bound:.0e})"


@pytest.mark.parametrize("name", iagan_trace.CASES)
def test_iagan_joint_phase_replays_iagans_ia(replayed, name):
    """``IA`` with T = 20 iterations: 19 joint updates (lrs 1e-3 / 1e-4) from z_hat returning the G(z) of its
    last forward; the objective before every update and at the result; the generator's walk (main.N names);
    BatchNorm's running statistics never move (eval mode); the back-projected image."""
    case, got = TRACE[name], replayed[name]
    assert got["ia_history"].shape == (case["config"]["IA_iterations"], 1)
    for figure, value, bound in iagan_trace.figures(case, got)[CSGM_FIGURES:]:
        assert value < bound, f"{name}: {figure} = {value:.2e} (bound {bound:.0e})"
    assert case["buffers_unchanged"]
    for key, value in got["G0"].items():
        if "running" in key:
            assert torch.equal(got["G"][key], value), key


def test_the_unit_range_objective_departs_from_the_code():
    """``variant="paper"`` minimises the MSE of [0, 1] images, a quarter of the code's: Adam (eps 1e-8) is not
    scale-invariant, so the same 40 steps from the same start end elsewhere (why the code's scale is the
    default)."""
    from lcm import load_prior

    case = TRACE["SR4_noisy"]
    op, y = iagan_trace.measurements(case, TRACE["x01"])
    k = int(case["z_hat_index"])
    z = case["z_init"].flatten(1)[k : k + 1].unsqueeze(1)
    prior = load_prior("dcgan-faces-64")
    opts = {"init_latent": z, "restarts": 1, "csgm_steps": 40, "keep": "last"}
    unit = restore(y, op, prior, "csgm", variant="paper", **opts)
    code = restore(y, op, prior, "csgm", **opts)
    assert abs(float(code.history[0, 0] / (4 * unit.history[0, 0])) - 1) < 1e-6  # same start: objective x4
    assert float((code.latent - case["z_hat"].flatten(1)).abs().max()) < 1e-3
    assert float((unit.latent - case["z_hat"].flatten(1)).abs().max()) > 1e-3


def test_init_latent_and_keep_are_checked():
    from lcm.toy import tiny_prior

    prior = tiny_prior(seed=0, channels=1)
    op = iagan_trace.SuperResolution(2, "bicubic")
    y = op.A(torch.rand(2, *prior.image_shape))
    with pytest.raises(ValueError, match="init_latent has shape"):
        restore(y, op, prior, "csgm", init_latent=torch.zeros(2, 3, 5), restarts=2, csgm_steps=2)
    with pytest.raises(ValueError, match="keep must be"):
        restore(y, op, prior, "csgm", keep="first", csgm_steps=2)
    with pytest.raises(ValueError, match="csgm_steps=0"):
        restore(y, op, prior, "iagan", init_latent=torch.zeros(1, *prior.latent_shape), csgm_steps=0)
