"""Forward-only bulk scoring of DGP's starts (``inversion.dgp.init``): chunks sized to a memory budget, and
bf16 autocast scoring, which must keep the decisions: the same class pick here, the same pick on the
candidates of DGP's own trace in tests/inversion/test_dgp_trace.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inversion import restore
from inversion.dgp import dgp_operator, sample_labels
from inversion.dgp.init import candidate_batch_for, select_latents
from inversion.dgp.losses import CriticFeatureLoss
from lcm.architectures.biggan import biggan_prior, build_discriminator, build_generator
from lcm.prior import to_unit

DATA = Path(__file__).resolve().parents[1] / "data"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    """The tiny BigGAN of the reference fixture and the image of DGP's trace on it, SR-degraded."""
    nets = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    image = torch.load(DATA / "dgp_trace_128_tiny.pt", weights_only=True)["image_origin"]
    op = dgp_operator("SR", 128)
    return biggan_prior(build_generator(nets["G"]), build_discriminator(nets["D"])), op, op(to_unit(image))


def test_bf16_class_pick_is_the_fp32_pick(tiny):
    prior, op, y = tiny
    y = y.expand(3, -1, -1, -1)
    seeds = [0, 1, 2]
    fp32 = sample_labels(prior, op, y, seeds, n_candidates=12, batch_size=4)
    bf16 = sample_labels(prior, op, y, seeds, n_candidates=12, batch_size=4, bf16=True)
    assert torch.equal(fp32, bf16)


def test_candidate_chunks_fit_the_memory_budget(tiny, monkeypatch):
    prior, op, _ = tiny
    metric = CriticFeatureLoss(prior.critic, prior.image_shape)
    per = candidate_batch_for(prior, op, metric, 500, budget=1)  # at least one, whatever the budget
    assert per == 1
    big = 10**15
    assert candidate_batch_for(prior, op, metric, 500, budget=big) == 500  # at most n_candidates
    one = big // candidate_batch_for(prior, op, metric, 10**12, budget=big)  # bytes of one candidate
    assert candidate_batch_for(prior, op, metric, 500, budget=3 * one + 1) == 3
    # "auto": a quarter of the free memory, read from lcm.runtime.free_memory (a fake figure here)
    monkeypatch.setattr("lcm.runtime.free_memory", lambda device="cpu": 4 * (5 * one + 1))
    assert candidate_batch_for(prior, op, metric, 500) == 5


def test_auto_chunks_pick_what_fixed_chunks_pick(tiny, monkeypatch):
    prior, op, y = tiny
    metric = CriticFeatureLoss(prior.critic, prior.image_shape)
    one = 10**15 // candidate_batch_for(prior, op, metric, 10**12, budget=10**15)
    monkeypatch.setattr("lcm.runtime.free_memory", lambda device="cpu": 4 * (3 * one + 1))
    auto = select_latents(prior, op, y, metric, [5], n_candidates=8, batch_size="auto")
    fixed = select_latents(prior, op, y, metric, [5], n_candidates=8, batch_size=8)
    assert int(auto.index) == int(fixed.index) and torch.equal(auto.latent, fixed.latent)
    with pytest.raises(ValueError, match="'auto'"):
        select_latents(prior, op, y, metric, [5], n_candidates=8, batch_size="all")


def _chunks_of(monkeypatch, rows: int) -> list[int]:
    """Every memory-budget chunk (``lcm.runtime.budget_rows``) ``rows`` rows (a fake free memory)."""
    monkeypatch.setattr("lcm.runtime.activation_bytes", lambda modules, run: 1000)
    monkeypatch.setattr("lcm.runtime.free_memory", lambda device="cpu": 4 * rows * 1000 + 3)


def _batches(module, sizes: list[int]):
    return module.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))


@pytest.mark.parametrize("metric", ["critic", "mse"])
def test_dgp_start_and_class_pick_use_budget_chunks_by_default(tiny, monkeypatch, metric):
    """``restore(method="dgp")``'s start (DGPConfig.candidate_batch "auto") and the class pick of the other
    methods score their candidates in memory-budget chunks, and pick what one unchunked call picks."""
    prior, op, y = tiny
    _chunks_of(monkeypatch, 3)
    stage = [{"blocks": 1, "iterations": 1, "generator_lr": 0.0, "latent_lr": 0.0}]
    opts = {"n_candidates": 8, "stages": stage, "init_metric": metric, "colorize_output": False}
    sizes: list[int] = []
    hook = _batches(prior.generator, sizes)
    try:
        chunked = restore(y, op, prior, method="dgp", labels=torch.tensor([-1]), **opts)
        start = sizes[:3]
        del sizes[:]
        whole = restore(y, op, prior, method="dgp", labels=torch.tensor([-1]), candidate_batch=8, **opts)
        assert sizes[0] == 8
        del sizes[:]
        picked = sample_labels(prior, op, y, [0], n_candidates=8)
        assert sizes == [3, 3, 2]
    finally:
        hook.remove()
    assert start == [3, 3, 2]
    assert torch.equal(chunked.labels, whole.labels)
    assert torch.equal(chunked.latent, whole.latent)  # learning rates 0: the starts
    assert torch.equal(picked, sample_labels(prior, op, y, [0], n_candidates=8, batch_size=8))
