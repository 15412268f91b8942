"""Clustering the prior's code space into centroids (CRI Sec. "Start from a Centroid", eqs. 2-3).

``w_j = mapping(z_j, c)`` for ``M`` Gaussian samples of the prior's latent, then scikit-learn KMeans
into ``N`` centroids. Centroids are cached per (prior weights, class, N, M, seed): in memory, and
optionally on disk (``torch.save`` to a temporary file + ``os.replace``, read back with
``weights_only=True``), keyed by a SHA-256 of the prior's weights so that a retrained prior never
reuses stale centroids.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from datamodules.io.atomic import atomic_write
from lcm.prior import Prior

__all__ = ["cluster_centroids", "clear_memory_cache", "prior_fingerprint", "sample_codes"]

_MEMORY: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_MEMORY_SIZE = 64


def clear_memory_cache() -> None:
    """Forget every centroid set held in memory (the disk cache is left alone)."""
    _MEMORY.clear()


def prior_fingerprint(prior: Prior) -> str:
    """SHA-256 (hex, 16 chars) of the weights that decide the codes and images: generator + mapping
    (+ latent ConvNet noise), parameters and buffers, by name."""
    h = hashlib.sha256()
    for part, module in (("g", prior.generator), ("m", prior.mapping)):
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{part}.{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    if prior.noise is not None:
        h.update(prior.noise.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    h.update(f"{prior.latent_kind}:{prior.latent_shape}".encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def sample_codes(prior: Prior, n: int, label: int | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` codes ``w = prior.code(z, c)`` for latents ``z`` drawn with ``seed`` (CRI eq. 2).

    Identity for priors without a mapping network (then ``w = z``).

    Shape:
        - output: ``(n, *code_shape)`` on the prior's device.
    """
    _check_label(prior, label)
    device = next(prior.generator.parameters()).device
    g = torch.Generator(device=device).manual_seed(int(seed))
    out = []
    for start in range(0, n, 4096):
        z = prior.sample_latent(min(4096, n - start), generator=g)
        labels = None if label is None else torch.full((z.shape[0],), int(label), device=device)
        out.append(prior.code(z, labels))
    return torch.cat(out)


def _check_label(prior: Prior, label: int | None) -> None:
    if prior.num_classes:
        if label is None or not 0 <= int(label) < prior.num_classes:
            raise ValueError(
                f"this prior is class-conditional ({prior.num_classes} classes): pass a class label in "
                f"[0, {prior.num_classes}), got {label!r}"
            )
    elif label is not None:
        raise ValueError(f"this prior is unconditional: pass label=None, got {label!r}")


def _kmeans(codes: torch.Tensor, n_clusters: int, seed: int) -> np.ndarray:
    import contextlib

    from sklearn.cluster import KMeans

    try:  # scikit-learn's own dependency: keep KMeans to torch's thread budget on a shared CPU
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=max(1, torch.get_num_threads()))
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    flat = codes.flatten(1).double().cpu().numpy()
    with limit:
        km = KMeans(n_clusters=n_clusters, n_init=3, random_state=int(seed)).fit(flat)
    return km.cluster_centers_


def cluster_centroids(
    prior: Prior,
    n_clusters: int = 10,
    n_samples: int = 10_000,
    label: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> torch.Tensor:
    """KMeans centroids of ``n_samples`` codes of the prior (CRI eqs. 2-3, Algorithm 1), cached.

    The same ``seed`` draws the same codes whatever ``n_clusters`` is (CRI's Fig. 5 protocol
    clusters one sample set into N = 1, 5, 10, 15 clusters).

    Args:
        prior: the prior; ``prior.code`` maps its latent to the generator input (its mapping network).
        n_clusters: N (CRI: 10).
        n_samples: M codes to cluster (must be >= n_clusters).
        label: class index for a class-conditional prior, None otherwise.
        seed: seed of the latent samples and of KMeans.
        cache_dir: folder of the on-disk cache (None: memory only).

    Returns:
        ``(n_clusters, *code_shape)`` centroids on the prior's device and dtype.

    Shape:
        - output: ``(n_clusters, *code_shape)``.
    """
    if int(n_clusters) < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if int(n_samples) < int(n_clusters):
        raise ValueError(f"n_samples ({n_samples}) must be >= n_clusters ({n_clusters}): sample more codes")
    _check_label(prior, label)
    ref = next(prior.generator.parameters())
    key = (prior_fingerprint(prior), label, int(n_clusters), int(n_samples), int(seed))
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key].to(device=ref.device, dtype=ref.dtype).clone()
    path = None
    if cache_dir is not None:
        fp, lab, n, m, s = key
        path = Path(cache_dir) / f"centroids_{fp}_c{'none' if lab is None else lab}_n{n}_m{m}_s{s}.pt"
        if path.is_file():
            cen = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(cen, torch.Tensor) or cen.shape[0] != n:
                raise ValueError(f"centroid cache {str(path)!r} is corrupt: delete it and rerun")
            _remember(key, cen)
            return cen.to(device=ref.device, dtype=ref.dtype).clone()
    codes = sample_codes(prior, int(n_samples), label, seed)
    cen = torch.from_numpy(_kmeans(codes, int(n_clusters), seed)).to(torch.float32)
    cen = cen.view(int(n_clusters), *codes.shape[1:])
    if path is not None:
        atomic_write(path, lambda f: torch.save(cen, f))
    _remember(key, cen)
    return cen.to(device=ref.device, dtype=ref.dtype).clone()


def _remember(key: tuple, cen: torch.Tensor) -> None:
    _MEMORY[key] = cen.detach().cpu().clone()
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
