"""Held-out samples of a prior: its own images as an in-range test set (IAGAN's "in-range" images).

Sample ``i`` is ``prior(z_i)``, ``z_i`` drawn by ``prior.sample_latent`` from a CPU generator whose
Mersenne-Twister state is filled from SHA-256 of a domain tag and ``i`` (:func:`held_out_generator`), not
seeded. Every method start is drawn from a *seeded* generator (``manual_seed(seed + key)``), and torch's
CPU generator keeps only the low 32 bits of a seed (``manual_seed(2**40 + i)`` is ``manual_seed(i)``: the
old held-out seed ``2**40 + i`` made CSGM start at the truth). A seeded state is one of 2**32; a state
derived from a hash is, but for a 2**-19905 chance, none of them, so no seed a run can take reproduces a
held-out latent.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from lcm.prior import Prior

__all__ = ["HELD_OUT_TAG", "held_out_generator", "held_out_latents", "held_out_samples"]

HELD_OUT_TAG = b"genprior/held-out-samples/v2"
_MT_WORDS = 624  # at::mt19937's state: 624 32-bit words
_STATE_BYTES = 5056  # CPUGeneratorImplState: seed (8), left (4), seeded (4), next (8), state (624 x 8), ...
_WORDS_AT = 24


def held_out_generator(i: int) -> torch.Generator:
    """The CPU generator of held-out sample ``i``: its 624 state words from SHA-256(tag, i, counter)."""
    g = torch.Generator().manual_seed(0)  # left = 1, next = 0: the state is twisted before its first draw
    state = g.get_state().clone()
    if state.numel() != _STATE_BYTES:
        raise RuntimeError(
            f"torch {torch.__version__}'s CPU generator state has {state.numel()} bytes, not {_STATE_BYTES}: "
            "inversion.cli.samples cannot derive the held-out stream; update inversion/cli/samples.py"
        )
    stream = b"".join(
        hashlib.sha256(
            HELD_OUT_TAG + int(i).to_bytes(8, "little", signed=True) + k.to_bytes(4, "little")
        ).digest()
        for k in range(_MT_WORDS * 4 // 32)
    )
    words = np.frombuffer(stream, dtype="<u4").astype("<u8")
    state[_WORDS_AT : _WORDS_AT + _MT_WORDS * 8] = torch.from_numpy(
        np.frombuffer(words.tobytes(), np.uint8).copy()
    )
    g.set_state(state)
    return g


@torch.no_grad()
def held_out_latents(prior: Prior, n: int, start: int = 0) -> torch.Tensor:
    """The latents of held-out samples ``start .. start + n - 1``, ``(n, *latent_shape)``."""
    if prior.num_classes:
        raise ValueError("held-out samples are drawn from unconditional priors only")
    out = [prior.sample_latent(1, generator=held_out_generator(i)) for i in range(start, start + int(n))]
    return torch.cat(out) if out else torch.zeros(0, *prior.latent_shape)


@torch.no_grad()
def held_out_samples(prior: Prior, n: int, start: int = 0) -> torch.Tensor:
    """Samples ``start .. start + n - 1`` of ``prior`` (unconditional priors), ``(n, C, H, W)`` in [0, 1].

    Each sample depends on its index only (not on ``n``), on any device.
    """
    z = held_out_latents(prior, n, start)
    if not len(z):
        return torch.zeros(0, *prior.image_shape)
    return torch.cat([prior(z[k : k + 1]).clamp(0, 1).cpu() for k in range(len(z))])
