"""The allocator setting (``lcm.runtime.tune_allocator``): the entry points apply it (seen in its effect,
freed large blocks are reused without page faults), ``GENPRIOR_ALLOCATOR=system`` leaves it off, and a
small fit gives bit-identical results with and without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MB64 = 64 << 20
PAGES = MB64 // 4096

# run an entry point with --help in this process, then malloc/touch/free 64 MB five times, counting faults
_PROBE = """
import ctypes, json, resource, runpy, sys
module = sys.argv[1]
sys.argv = [module, "--help"]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
from lcm.runtime import allocator_settings
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 64 << 20
def cycle():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
cycle()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    cycle()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"settings": allocator_settings(), "faults": faults}))
"""


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("GENPRIOR_ALLOCATOR", None)
    return {**env, **extra}


def _probe(module: str, **env) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, module], cwd=ROOT, env=_env(**env), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


pytestmark = pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's; other allocators are left alone")


@pytest.mark.parametrize("module", ["inversion", "lcm", "benchmarks.dgp_step", "benchmarks.claims"])
def test_entry_points_keep_freed_memory(module):
    tuned = _probe(module)
    assert tuned["settings"] and tuned["settings"]["M_MMAP_MAX"] == 0
    assert tuned["faults"] < PAGES // 4  # the freed block is reused: no fresh pages


def test_system_allocator_when_asked():
    """The control: with GENPRIOR_ALLOCATOR=system the same probe faults every 64 MB block back in."""
    default = _probe("lcm", GENPRIOR_ALLOCATOR="system")
    assert default["settings"] is None
    assert default["faults"] > 4 * PAGES


_FIT = """
import hashlib, sys, torch
from lcm.runtime import tune_allocator
if sys.argv[1] == "tuned":
    assert tune_allocator(respect_env=False) is not None
torch.set_num_threads(1)
from inversion import restore
from inversion.operators import SuperResolution
from lcm.prior import Prior
from lcm.toy import TinyGenerator, blob_images
torch.manual_seed(0)
prior = Prior(TinyGenerator(latent_dim=8, width=64).eval(), "gaussian", (8,), (1, 16, 16))
x = blob_images(32, generator=torch.Generator().manual_seed(1))
op = SuperResolution(factor=2, kernel="bicubic")
res = restore(op.A(x), op, prior, "iagan", seed=0, csgm_steps=15, restarts=2, iagan_steps=10)
out = torch.cat([res.raw.flatten(), res.latent.flatten()])
print(hashlib.sha256(out.double().numpy().tobytes()).hexdigest())
"""


def test_tuned_allocator_changes_no_result():
    """An IAGAN fit (generator fine-tuned, buffers of ~2 MB: above glibc's mmap threshold) in two fresh
    processes, one with the tuned allocator: bit-identical restorations."""
    out = {}
    for mode in ("tuned", "system"):
        run = subprocess.run(
            [sys.executable, "-c", _FIT, mode], cwd=ROOT, env=_env(GENPRIOR_ALLOCATOR="system"),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        out[mode] = run.stdout.strip().splitlines()[-1]
    assert out["tuned"] == out["system"]
