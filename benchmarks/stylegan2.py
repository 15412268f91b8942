"""``python -m benchmarks.stylegan2``: CRI on a full-size StyleGAN2-ADA (random weights), s/step and memory.

Builds the released FFHQ configuration (256 px: ``channel_base = 16384``, 8 mapping layers, 14 ws;
or 1024 px) with random weights and runs CRI (``inversion.cri``) on one 4x super-resolution
measurement: ``--steps`` offset steps (CRI eq. 6) and ``--steps`` pivotal-tuning steps (eqs. 7-8).
Step times are the wall time between consecutive optimisation steps of a phase (the first step of
each phase, which builds the optimiser / generator copy, is left out). Each (space, phase) runs in its
own process so that the peak resident memory (``ru_maxrss``) belongs to that phase alone: ``offset``
runs CRI with ``tune_steps = 0``, ``tune`` the whole method.

    python -m benchmarks.stylegan2 --steps 3 --output outputs/bench_sg2.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from lcm.runtime import tune_allocator

REPO = Path(__file__).resolve().parents[1]  # workers run as ``python -m benchmarks.stylegan2``
CONFIGS = {
    256: dict(channel_base=16384, num_ws=14),
    1024: dict(channel_base=32768, num_ws=18),
}


def build_prior(resolution: int, seed: int = 0):
    """A :class:`lcm.Prior` over a released-size StyleGAN2-ADA (FFHQ config) with random weights."""
    from lcm.architectures.stylegan2 import Discriminator, Generator
    from lcm.architectures.stylegan2_prior import stylegan2_prior

    torch.manual_seed(seed)
    syn = dict(
        channel_base=CONFIGS[resolution]["channel_base"], channel_max=512, num_fp16_res=4, conv_clamp=256
    )
    g = Generator(512, 0, 512, resolution, 3, mapping_kwargs={"num_layers": 8}, synthesis_kwargs=syn)
    d = Discriminator(0, resolution, 3, **syn)
    return stylegan2_prior(g.eval().requires_grad_(False), d.eval().requires_grad_(False))


class StepTimer(pl.Callback):
    """Lightning callback: wall time of every optimisation step, by stage name."""

    def __init__(self):
        super().__init__()
        self.times: dict[str, list[float]] = {}
        self._last = None

    def on_train_start(self, trainer, module):
        self._last = time.perf_counter()
        self._first = True

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if not self._first:  # the first step of a fit builds the optimiser and the generator copies
            self.times.setdefault(module.stage.name, []).append(now - self._last)
        self._first = False
        self._last = now


def worker(resolution: int, space: str, phase: str, steps: int, distance: str) -> dict:
    from inversion import restore
    from inversion.operators import SuperResolution

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    prior = build_prior(resolution)
    t_build = time.perf_counter() - t0
    with torch.no_grad():
        x = prior(prior.sample_latent(1, torch.Generator().manual_seed(1))).clamp(0, 1)
    op = SuperResolution(factor=4, kernel="box")
    y = op(x)

    timer = StepTimer()
    t0 = time.perf_counter()
    restore(
        y, op, prior, method="cri", space=space, n_clusters=2, n_samples=4, distance=distance,
        offset_steps=steps + 1, tune_steps=0 if phase == "offset" else steps + 1, callbacks=[timer],
    )  # fmt: skip
    total = time.perf_counter() - t0
    stage = "cri_offset" if phase == "offset" else "cri_tune"
    ts = timer.times.get(stage, [])
    return {
        "resolution": resolution,
        "space": space,
        "phase": phase,
        "distance": distance,
        "steps_timed": len(ts),
        "seconds_per_step": sum(ts) / max(len(ts), 1),
        "step_seconds": ts,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "build_seconds": t_build,
        "restore_seconds": total,
        "threads": torch.get_num_threads(),
        "g_params_m": sum(p.numel() for p in prior.generator.parameters()) / 1e6,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.stylegan2",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--resolution", type=int, default=256, choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=3, help="timed steps per phase")
    ap.add_argument("--spaces", nargs="+", default=["w", "w+"])
    ap.add_argument("--distance", default="critic", choices=["critic", "mse", "offline"])
    ap.add_argument("--output", default=None, help="JSON file for the results")
    ap.add_argument("--worker", nargs=2, metavar=("SPACE", "PHASE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a.resolution, a.worker[0], a.worker[1], a.steps, a.distance)))
        return []
    rows = []
    for space in a.spaces:
        for phase in ("offset", "tune"):
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.stylegan2",
                "--resolution",
                str(a.resolution),
                "--steps",
                str(a.steps),
                "--distance",
                a.distance,
                "--worker",
                space,
                phase,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{a.resolution}px {space:>2} {phase:>6}: {row['seconds_per_step']:.2f} s/step "
                f"({row['steps_timed']} steps), peak RSS {row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    if a.output:
        from datamodules.io.atomic import atomic_write_bytes

        atomic_write_bytes(a.output, json.dumps(rows, indent=2).encode())
        from datamodules.io.html import json_report

        json_report(Path(a.output).parent, "StyleGAN2-ADA benchmark", rows)
    return rows


if __name__ == "__main__":  # pragma: no cover
    main()
