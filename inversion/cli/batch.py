"""``--batch_size auto``: the images restored together, picked from the model's size and the free memory of
the device (CPU RAM from ``/proc/meminfo``, CUDA from ``torch.cuda.mem_get_info``; :mod:`lcm.runtime`).

Per image a fit holds the activations of one generator (and critic) forward kept for the backward, with
their gradients (x 3 of the forward's outputs, measured on one probe image), and -- for the methods that
fine-tune a private copy of the generator per image (IAGAN, DGP, DIP) -- that copy with its gradients and
Adam's two moments (x 4 of the generator's parameters; ~1.1 GB per image at BigGAN-128). The batch is
what fits half the free memory, at most ``MAX_BATCH`` (beyond it a CPU gains nothing, a GPU little).
"""

from __future__ import annotations

import sys

import torch

from lcm.prior import Prior

__all__ = ["AUTO", "MAX_BATCH", "auto_batch_size", "resolve_batch_size"]

AUTO = "auto"
MAX_BATCH = 64
MEMORY_FRACTION = 0.5
FINE_TUNING = {"iagan", "dgp", "dip"}  # methods with a private generator copy per image (base names)


def _bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def per_image_bytes(prior: Prior, method: str) -> int:
    """Memory one image of a batched fit takes: activations (+ a generator copy where it is fine-tuned)."""
    from lcm.runtime import activation_bytes

    ref = next(prior.generator.parameters())
    z = prior.sample_latent(1, generator=torch.Generator(device=ref.device).manual_seed(0))
    labels = torch.zeros(1, dtype=torch.long, device=ref.device) if prior.num_classes else None
    modules = [prior.generator] + ([prior.critic] if isinstance(prior.critic, torch.nn.Module) else [])

    def probe():
        with torch.no_grad():
            x = prior(z, labels)
            if prior.critic is not None and hasattr(prior.critic, "features"):
                prior.critic.features(x)

    need = 3 * activation_bytes(modules, probe)
    if method.removesuffix("_bp") in FINE_TUNING:
        need += 4 * _bytes(prior.generator.parameters())
    return max(1, need)


def auto_batch_size(prior: Prior, method: str, device, free: int | None = None) -> tuple[int, str]:
    """``(batch, why)``: the batch that fits ``MEMORY_FRACTION`` of ``free`` bytes (None: the device's free
    memory now), between 1 and ``MAX_BATCH``, and a sentence saying how it was picked."""
    from lcm.runtime import free_memory

    free = free_memory(device) if free is None else int(free)
    per = per_image_bytes(prior, method)
    batch = int(max(1, min(MAX_BATCH, MEMORY_FRACTION * free // per)))
    why = (
        f"--batch_size auto: {batch} (free memory on {device}: {free / 2**30:.1f} GiB, "
        f"~{per / 2**20:.0f} MiB per image for {method}; at most {MAX_BATCH})"
    )
    return batch, why


def resolve_batch_size(batch_size: int | str, prior: Prior, method: str, device) -> int:
    """``batch_size`` itself, or for ``auto`` :func:`auto_batch_size`'s pick (said on stderr)."""
    if batch_size != AUTO:
        return int(batch_size)
    batch, why = auto_batch_size(prior, method, device)
    print(f"[inversion] {why}", file=sys.stderr, flush=True)
    return batch
