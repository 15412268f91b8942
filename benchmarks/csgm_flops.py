"""CSGM's arithmetic rate on the real face DCGAN ``dcgan-faces-64`` against this machine's fp32 matmul rate:

    python -m benchmarks.csgm_flops --threads 1 --batch 16

* the work: one CSGM step of ``restore(y, op, prior, "csgm")`` on ``--batch`` images at once (the face
  photos of :mod:`datamodules.faces`, then the prior's held-out samples; SR x4, one start each), counted
  with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, forward and backward)
  around the engine's second step (a Lightning callback: ``on_train_batch_start`` to its end);
* its time: the difference of a ``1 + steps`` and a ``1``-step run's process CPU seconds over ``steps`` (the
  setup excluded; best of ``--repeats``; with one thread the CPU time is the work done, steadier than the
  wall clock on a shared machine);
* the reference: ``torch.mm`` of two fp32 ``--mm-size`` square matrices on the same threads (best of
  ``--repeats``), ``2 n**3`` flops per product.

Printed: CSGM's GFLOP/s, the matmul's GFLOP/s and their ratio (issue 33's target: at least 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from inversion.samples import held_out_samples
from pytorch_lightning import Callback
from torch.utils.flop_counter import FlopCounterMode

from datamodules.faces import FacesDataset
from inversion import restore
from inversion.operators import SuperResolution
from lcm import load_prior
from lcm.runtime import tune_allocator


def matmul_gflops(n: int, repeats: int) -> float:
    """Best-of-``repeats`` fp32 ``torch.mm`` rate of ``n x n`` matrices, GFLOP/s (process CPU time)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.mm(a, b)  # warm-up
    reps = max(1, int(2e10 // (2 * n**3)))  # ~20 GFLOP per timing
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(reps):
            torch.mm(a, b)
        best = min(best, (time.process_time() - t) / reps)
    return 2 * n**3 / best / 1e9


class StepFlops(Callback):
    """Flops of the engine's step ``step`` (0-based): FlopCounterMode from its start to its end."""

    def __init__(self, step: int = 1):
        self.step, self.seen, self.flops, self._mode = step, 0, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.seen == self.step:
            self._mode = FlopCounterMode(display=False)
            self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.flops, self._mode = self._mode.get_total_flops(), None
        self.seen += 1


def csgm_run(prior, op, y, z0):
    """``run(n, callbacks)``: a CSGM restore of ``n`` steps from the starts ``z0`` (one per image)."""

    def run(n: int, callbacks=()):
        return restore(y, op, prior, "csgm", init_latent=z0, restarts=1, csgm_steps=n, callbacks=callbacks)

    return run


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(prog="python -m benchmarks.csgm_flops", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16, help="images restored together")
    p.add_argument("--steps", type=int, default=20, help="timed CSGM steps (beyond the first)")
    p.add_argument("--mm-size", type=int, default=2048, help="side of the reference matmul's matrices")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.repeats < 1 or args.mm_size < 1:
        raise SystemExit("--batch, --steps, --repeats and --mm-size must be >= 1")
    torch.set_num_threads(args.threads)
    prior = load_prior("dcgan-faces-64")
    faces = FacesDataset(resolution=64, limit=args.batch)
    x = torch.stack([faces[i]["image"] for i in range(len(faces))])
    if len(faces) < args.batch:  # the photos, then the prior's held-out samples (the same arithmetic)
        x = torch.cat([x, held_out_samples(prior, args.batch - len(faces))])
    op = SuperResolution(4, "bicubic", padding="zeros")
    y = op.A(x)
    z0 = prior.sample_latent(args.batch, generator=torch.Generator().manual_seed(0))[:, None]
    run = csgm_run(prior, op, y, z0)

    counter = StepFlops(1)
    run(2, [counter])  # also the warm-up
    if not counter.flops:
        raise RuntimeError("no flops were counted in the engine's second step")
    step_flops = counter.flops
    best = float("inf")
    for _ in range(args.repeats):
        t = time.process_time()
        run(1)
        short = time.process_time() - t
        t = time.process_time()
        run(1 + args.steps)
        best = min(best, (time.process_time() - t - short) / args.steps)
    csgm = step_flops / best / 1e9
    mm = matmul_gflops(args.mm_size, args.repeats)
    out = {
        "threads": args.threads,
        "batch": args.batch,
        "steps": args.steps,
        "step_gflop": step_flops / 1e9,
        "step_cpu_s": best,
        "csgm_gflops": csgm,
        "matmul_size": args.mm_size,
        "matmul_fp32_gflops": mm,
        "ratio": csgm / mm,
    }
    print(
        f"CSGM, dcgan-faces-64, SR x4, B={args.batch}, {args.threads} thread(s): "
        f"{out['step_gflop']:.2f} GFLOP per step in {best:.3f} CPU s = {csgm:.1f} GFLOP/s; "
        f"fp32 torch.mm {args.mm_size}^2: {mm:.1f} GFLOP/s; ratio {out['ratio']:.2f} (target >= 0.5)"
    )
    print(json.dumps(out))
    if args.json:  # atomically: a temporary file renamed over the target
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        os.replace(tmp, args.json)
    return out


if __name__ == "__main__":
    main()
