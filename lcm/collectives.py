"""Collectives for the prior modules under DDP (no-ops in a single process).

Rows of different length per rank (a last, shorter batch) are padded to the longest, gathered with
``torch.distributed.all_gather`` and trimmed again, so every rank receives every rank's rows in rank
order.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_rows", "is_distributed"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of every rank along dim 0, in rank order (``x`` itself in one process).

    Shape:
        - x: ``(n_r, *S)`` on rank r (``S`` equal on all ranks); output ``(sum_r n_r, *S)``.
    """
    if not is_distributed():
        return x
    world = dist.get_world_size()
    # gloo and NCCL both gather tensors on the process group's device
    count = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    longest = max(sizes)
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])
