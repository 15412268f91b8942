"""Process-wide run-time settings that change speed, never results (the C allocator), and the free memory
that sizes batches (:func:`free_memory`).

With glibc's default ``malloc`` every training or inversion step hands its large activation buffers back to
the system (each buffer above the mmap threshold is its own ``mmap``; the heap top is trimmed) and the
next step faults them back in page by page; on a BigGAN-128 step that is millions of minor page faults.
:func:`tune_allocator` keeps freed memory in the process instead (``mallopt``: no ``mmap`` for large
blocks, no trimming), which changes no arithmetic. The project's entry points (``python -m inversion``,
``python -m lcm``, ``python -m benchmarks.*``) call it at start; from Python call it once yourself::

    from lcm.runtime import tune_allocator
    tune_allocator()

or start Python with the same settings through glibc's environment variables (read at start-up only)::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=18446744073709551615 python my_script.py

``GENPRIOR_ALLOCATOR=system`` makes the entry points leave the system's allocator as it is. The price is
that a process keeps its peak heap until it exits (the memory is reused, not returned to the system).

Imports no torch (``python -m inversion --help`` calls it too).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = [
    "ENV",
    "FORWARD_FRACTION",
    "activation_bytes",
    "allocator_settings",
    "budget_rows",
    "free_memory",
    "tune_allocator",
]

ENV = "GENPRIOR_ALLOCATOR"  # "system": the entry points leave the allocator alone
FORWARD_FRACTION = 0.25  # of the free memory: what one chunk of a forward-only bulk computation may take
# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_applied: dict | None = None


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        return None


def tune_allocator(respect_env: bool = True) -> dict | None:
    """Keep freed memory in the process (glibc ``mallopt``: ``M_MMAP_MAX`` 0, ``M_TRIM_THRESHOLD`` never).

    Returns the settings applied (also :func:`allocator_settings` afterwards), or None where nothing was
    changed: not glibc (musl, macOS, Windows: their allocators are left alone), or ``respect_env`` and
    ``GENPRIOR_ALLOCATOR=system``. Safe to call more than once; results are bit-identical either way.
    """
    global _applied
    if _applied is not None:
        return _applied
    if respect_env and os.environ.get(ENV, "").strip().lower() == "system":
        return None
    libc = _libc()
    if libc is None:
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # M_TRIM_THRESHOLD is an int argument: the largest int (2 GiB - 1) is far above any step's free top
    ok_trim = libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok_mmap = libc.mallopt(_M_MMAP_MAX, 0) == 1
    if not (ok_trim and ok_mmap):
        return None
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    _applied = {
        "allocator": f"glibc {libc.gnu_get_libc_version().decode()}",
        "M_MMAP_MAX": 0,
        "M_TRIM_THRESHOLD": 2**31 - 1,
    }
    return _applied


def allocator_settings() -> dict | None:
    """What :func:`tune_allocator` applied in this process (None: the system's defaults)."""
    return _applied


def free_memory(device="cpu") -> int:
    """Bytes free for tensors on ``device``: ``torch.cuda.mem_get_info`` on CUDA; on CPU ``MemAvailable``
    of ``/proc/meminfo`` (psutil's ``available`` where there is no ``/proc``)."""
    kind = str(device).split(":")[0]
    if kind == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # not on Linux: psutil (pip install psutil) knows the platform's figure

    return int(psutil.virtual_memory().available)


def activation_bytes(modules, run) -> int:
    """Bytes of every tensor that the leaf modules of ``modules`` output while ``run()`` runs: an upper bound
    of what a forward keeps alive at once (and about what its backward keeps, with gradients enabled)."""
    import torch

    total = [0]

    def hook(_m, _inp, out):
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                total[0] += t.numel() * t.element_size()

    leaves = [m for mod in modules for m in mod.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def budget_rows(modules, probe, n: int, budget: int | None = None, device="cpu") -> int:
    """Rows of a forward-only bulk computation (scoring candidates, evaluating steps, metrics) that one chunk
    may hold: ``budget`` bytes (None: :data:`FORWARD_FRACTION` of :func:`free_memory` of ``device``) over the
    activations :func:`activation_bytes` measures while ``probe()`` runs one row through ``modules``; between
    1 and ``n``."""
    if budget is None:
        budget = int(FORWARD_FRACTION * free_memory(device))
    per = max(1, activation_bytes(modules, probe))
    return int(max(1, min(int(n), int(budget) // per)))
