"""Two-class morphing as DGP's example.py does it: weights, latents and the class embeddings
``G_A.shared(y_A)``, ``G_B.shared(y_B)`` interpolated."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from inversion.dgp import manipulation as M
from lcm.architectures.biggan import biggan_prior, build_generator
from lcm.prior import to_unit

DATA = Path(__file__).resolve().parents[1] / "data"


def test_two_class_morph_interpolates_weights_latents_and_class_embeddings():
    torch.manual_seed(0)
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    prior = biggan_prior(build_generator(ref["G"]))
    ga, gb = copy.deepcopy(prior.generator), copy.deepcopy(prior.generator)
    with torch.no_grad():
        for p in gb.parameters():  # a differently "fine-tuned" generator B (its embedding included)
            p.add_(0.01 * torch.randn_like(p))
    za, zb = torch.randn(120), torch.randn(120)
    out = M.morph(prior, ga, za, gb, zb, [1.0, 0.5, 0.0], label=2, label_b=7)
    with torch.no_grad():
        a = to_unit(ga(za[None], torch.tensor([2])))
        b = to_unit(gb(zb[None], torch.tensor([7])))
        mid = copy.deepcopy(ga)
        for pm, pa, pb in zip(mid.parameters(), ga.parameters(), gb.parameters(), strict=True):
            pm.copy_(0.5 * pa + 0.5 * pb)
        emb = 0.5 * ga.embedding(torch.tensor([2])) + 0.5 * gb.embedding(torch.tensor([7]))
        m = to_unit(mid.synthesize_embedded(0.5 * (za + zb)[None], emb))
    assert torch.allclose(out[0], a[0], atol=1e-5) and torch.allclose(out[2], b[0], atol=1e-5)
    assert torch.allclose(out[1], m[0], atol=1e-5)
    same_class = M.morph(prior, ga, za, gb, zb, [0.0], label=2)  # B rendered in A's class: differs
    assert not torch.allclose(same_class[0], out[2], atol=1e-3)


def test_two_class_morph_needs_embedding_generators():
    from tests.inversion.test_dgp import tiny

    prior = tiny(num_classes=3)
    z = torch.zeros(8)
    with pytest.raises(ValueError, match="synthesize_embedded"):
        M.morph(prior, prior.generator, z, prior.generator, z, [0.5], label=0, label_b=1)
