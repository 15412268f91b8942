"""DGP reproduces DGP's own code step by step: ``tests/data/dgp_trace_128_tiny.pt`` is DGP's ``run()`` and
``select_z`` (XingangPan/deep-generative-prior ``models/dgp.py``, unchanged, on CPU) on the tiny BigGAN of
``biggan_dgp_128_tiny.pt`` with the four 128-px benchmark scripts, 4 iterations per stage, 8 candidates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inversion import restore
from inversion.dgp import dgp_operator, score_candidates, script_stages
from inversion.dgp.init import scoring_precision
from lcm.architectures.biggan import biggan_prior, build_discriminator, build_generator
from lcm.prior import to_unit

DATA = Path(__file__).resolve().parents[1] / "data"
SCRIPTS = ["SR_D", "SR_MSE", "inpainting", "colorization"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trace():
    return torch.load(DATA / "dgp_trace_128_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def prior(trace):
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    return biggan_prior(build_generator(ref["G"]), build_discriminator(ref["D"]))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(scope="module")
def runs(trace, prior):
    """One DGP run per script from the trace's z0 (shared by the assertions below)."""
    out = {}
    g0 = {k: v.clone() for k, v in prior.generator.state_dict().items()}
    for name in SCRIPTS:
        t = trace[name]
        op = dgp_operator(t["mode"], 128)
        y = op(to_unit(trace["image_origin"]))
        labels = torch.tensor([int(trace["class"])])
        opts = script_stages(**t["script"], iterations=[int(trace["iterations_per_stage"])] * 5)
        res = restore(
            y, op, prior, method="dgp", labels=labels, init_latent=t["z0"], colorize_output=False, **opts
        )
        scores = score_candidates(prior, op, y, t["candidates"], labels)
        out[name] = (res, scores)
    # the shared prior is untouched by the runs
    assert all(torch.equal(v, g0[k]) for k, v in prior.generator.state_dict().items())
    return out


def _check_scores(trace, runs, name):
    t = trace[name]
    scores = runs[name][1]
    rel = ((scores - t["candidate_scores"]).abs() / t["candidate_scores"].abs()).max()
    assert rel <= 1e-4, f"{name}: candidate scores off by {float(rel):.2e} relative"
    assert int(scores.argmin()) == int(t["pick"])


def _in_cancelled(name: str, script: dict) -> bool:
    """A GBlock's ``conv1.bias`` feeds ``in2`` when a stage uses IN: IN subtracts each channel's mean, so the
    bias's gradient is zero in exact arithmetic and what DGP records is float rounding noise that Adam
    (beta1 = 0) turns into learning-rate-sized steps of random sign: no implementation can reproduce that
    walk, only its size."""
    return any(script["use_in"]) and name.endswith(".0.conv1.bias")


def _check_run(trace, prior, runs, name):
    t = trace[name]
    res = runs[name][0]
    assert res.generators is not None and len(res.generators) == 1
    assert res.history.shape == (4 * 5, 1)
    assert (res.latent - t["z_final"]).abs().max() <= 1e-4
    g = res.generators[0].state_dict()  # DGP's key names
    g0 = prior.generator.state_dict()
    ref = t["G_final"]
    assert set(g) == set(ref)
    for k, v in ref.items():
        err = float((g[k] - v).abs().max())
        change = v - g0[k]
        if _in_cancelled(k, t["script"]):
            # both walks stay within Adam's step budget: 20 steps at <= 2e-4 (SR_MSE / inpainting G_lrs)
            assert float((g[k] - g0[k]).abs().max()) <= 20 * 2e-4 and float(change.abs().max()) <= 20 * 2e-4
            continue
        assert err <= 1e-3, f"{name}: {k} off by {err:.2e}"
        if change.abs().max() > 0:
            rel = _rel(g[k] - g0[k], change)
            assert rel <= 1e-2, f"{name}: change of {k} off by {rel:.2e} relative"
        else:
            assert torch.equal(g[k], g0[k]), f"{name}: {k} moved, DGP's did not"
    with torch.no_grad():
        x = res.generators[0](res.latent, torch.tensor([int(trace["class"])]))
    assert (x - t["x_final"]).abs().max() <= 1e-3
    assert (res.raw * 2 - 1 - t["x_final"]).abs().max() <= 1e-3


@pytest.mark.parametrize("name", SCRIPTS)
def test_candidate_scores_match_dgp_select_z(trace, runs, name):
    _check_scores(trace, runs, name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_run_matches_dgp_trace(trace, prior, runs, name):
    _check_run(trace, prior, runs, name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_bf16_scoring_keeps_the_traces_pick(trace, prior, name):
    t = trace[name]
    op = dgp_operator(t["mode"], 128)
    y = op(to_unit(trace["image_origin"]))
    labels = torch.tensor([int(trace["class"])])
    with scoring_precision(True, "cpu"):  # bf16 autocast (inversion.dgp.init): a named option
        scores = score_candidates(prior, op, y, t["candidates"], labels)
    assert int(scores.float().argmin()) == int(t["pick"])
    # and it did run in bf16: the scores moved by more than fp32 rounding
    rel = ((scores.float() - t["candidate_scores"]).abs() / t["candidate_scores"].abs()).max()
    assert rel > 1e-4


def _chunks_of(monkeypatch, rows: int) -> None:
    """Make every memory-budget chunk (``lcm.runtime.budget_rows``) ``rows`` rows: a fake free memory of
    ``4 * rows`` fake rows' bytes (a quarter of it is the budget)."""
    monkeypatch.setattr("lcm.runtime.activation_bytes", lambda modules, run: 1000)
    monkeypatch.setattr("lcm.runtime.free_memory", lambda device="cpu": 4 * rows * 1000 + 3)


@pytest.mark.parametrize("name", SCRIPTS)
def test_budget_chunked_scoring_keeps_the_traces_pick(trace, prior, name, monkeypatch):
    """The default (``batch_size="auto"``, memory-budget chunks: 3 + 3 + 2 of the trace's 8 here) scores as
    one call over all candidates and as DGP's one-at-a-time loop do, and picks the trace's candidate."""
    t = trace[name]
    op = dgp_operator(t["mode"], 128)
    y = op(to_unit(trace["image_origin"]))
    labels = torch.tensor([int(trace["class"])])
    _chunks_of(monkeypatch, 3)
    sizes = []
    hook = prior.generator.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    try:
        chunked = score_candidates(prior, op, y, t["candidates"], labels)
    finally:
        hook.remove()
    assert sizes == [3, 3, 2]
    whole = score_candidates(prior, op, y, t["candidates"], labels, batch_size=len(t["candidates"]))
    single = score_candidates(prior, op, y, t["candidates"], labels, batch_size=1)
    assert int(chunked.argmin()) == int(whole.argmin()) == int(single.argmin()) == int(t["pick"])
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=0)
    torch.testing.assert_close(chunked, single, rtol=1e-5, atol=0)
