"""``python -m benchmarks.biggan``: DGP on a full-size BigGAN-128 (random weights), CPU.

Measures, each phase in a fresh subprocess (so each peak RSS is its own), with the same threads:

* ``ours``: seconds per DGP step of :func:`inversion.run_stages` with progressive unfreezing
  (frozen groups ``requires_grad=False``: no weight gradients, no optimizer state for them);
* ``published``: a loop written the way DGP's code (XingangPan/deep-generative-prior,
  ``models/dgp.py``) runs it: every generator parameter requires grad, one Adam group per DGP
  parameter group with the frozen groups at learning rate 0, a separate Adam on z; same loss
  (critic features L1 + MSE + w_nll);
* ``batched`` / ``single``: best-of-N candidate selection (DGP appendix B) with ``candidate_batch``
  candidates per generator / critic call vs one at a time (DGP's loop).

Memory: ``peak_rss_mb`` is the process peak; ``fit_peak_mb`` the peak RSS during the timed part above
the RSS just before it (sampled every 10 ms), i.e. what the fit itself adds to the loaded networks.
Prints one JSON object with every number and the ratios (published / ours, single / batched).
Example (a few minutes on one core)::

    python -m benchmarks.biggan --steps 4 --candidates 16 --blocks 2
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from lcm.runtime import tune_allocator

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]  # the checkout: phases run as ``python -m benchmarks.biggan``


class _PeakRSS:
    """Peak resident memory (MB) above the level at ``__enter__``, sampled from /proc every 10 ms."""

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.added = self.peak - self.base


def _setup(threads: int, seed: int = 0, ch: int = 96):
    from lcm.architectures.biggan import RELEASED, BigGANDiscriminator, BigGANGenerator, biggan_prior

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = {**RELEASED[128], "ch": ch}
    g = BigGANGenerator(**cfg)
    d = BigGANDiscriminator(cfg["ch"], cfg["n_classes"], 128, cfg["attention"])
    prior = biggan_prior(g, d)
    from inversion.operators import SuperResolution

    op = SuperResolution(factor=4, kernel="box")
    gen = torch.Generator().manual_seed(seed + 1)
    labels = torch.tensor([207])
    with torch.no_grad():
        x = prior(prior.sample_latent(1, generator=gen), labels)
    y = op.A((0.9 * x + 0.05).clamp(0, 1))
    return prior, op, y, labels


def _stage(args) -> dict:
    return {
        "blocks": args.blocks,
        "iterations": args.steps,
        "latent_lr": 2e-3,
        "generator_lr": 5e-5,
        "weights": {"critic": 1.0, "mse": 1.0},
    }


def _phase_ours(args) -> dict:
    import pytorch_lightning as pl

    from callbacks import ProgressiveUnfreezing
    from inversion import run_stages
    from inversion.dgp import CriticFeatureLoss, schedule_to_stages

    prior, op, y, labels = _setup(args.threads, ch=args.ch)
    z0 = prior.sample_latent(1, generator=torch.Generator().manual_seed(3))
    blocks, stages = schedule_to_stages([_stage(args)])
    stages[0].weights["latent_prior"] = 0.01  # DGP w_nll 0.02 * mean(z^2 / 2)
    times: list[float] = []

    class Clock(pl.Callback):
        def on_train_batch_start(self, *a):
            self.t = time.perf_counter()

        def on_train_batch_end(self, *a):
            times.append(time.perf_counter() - self.t)

    t0 = time.perf_counter()
    with _PeakRSS() as mem:
        run_stages(
            prior, op, y, z0, stages, labels=labels,
            loss_terms={"critic": CriticFeatureLoss(prior.critic, prior.image_shape)},
            callbacks=[ProgressiveUnfreezing(blocks), Clock()],
        )  # fmt: skip
    return {"step_s": times, "total_s": time.perf_counter() - t0, "fit_peak_mb": mem.added}


def _phase_published(args) -> dict:
    from inversion.dgp import CriticFeatureLoss

    prior, op, y, labels = _setup(args.threads, ch=args.ch)
    z = prior.sample_latent(1, generator=torch.Generator().manual_seed(3)).clone().requires_grad_(True)
    t0 = time.perf_counter()
    mem = _PeakRSS().__enter__()
    g = copy.deepcopy(prior.generator).eval()
    g.requires_grad_(True)  # DGP: every parameter requires grad
    # DGP's G.optim: one group per get_params(i) for i in range(len(G.blocks) + 1) (the output layer is
    # in no group); progressive unfreezing = lr 0 for groups >= ft_num (utils.LRScheduler.update)
    groups = [{"params": list(b.parameters())} for b in g.blocks[:-1]]
    g_opt = torch.optim.Adam(groups, lr=5e-5, betas=(0.0, 0.999), eps=1e-8)
    z_opt = torch.optim.Adam([z], lr=2e-3, betas=(0.0, 0.999), eps=1e-8)
    for i, group in enumerate(g_opt.param_groups):
        group["lr"] = 5e-5 if i < args.blocks else 0.0
    crit = CriticFeatureLoss(prior.critic, prior.image_shape)
    prior.critic.requires_grad_(False)  # D is not optimised (its grads are never stepped in DGP either)
    target = crit.target_features(y, op)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        z_opt.zero_grad()
        g_opt.zero_grad()
        x = (g(z, labels) + 1) / 2
        ax = op.A(x)
        loss = crit.distance(crit.features(ax, op), target).sum()
        loss = loss + (ax - y).pow(2).mean() + 0.02 * (z**2 / 2).mean()
        loss.backward()
        z_opt.step()
        g_opt.step()
        times.append(time.perf_counter() - t)
    mem.__exit__(None, None, None)
    return {"step_s": times, "total_s": time.perf_counter() - t0, "fit_peak_mb": mem.added}


def _phase_candidates(args, batch: int) -> dict:
    from inversion.dgp import CriticFeatureLoss, select_latents

    prior, op, y, _ = _setup(args.threads, ch=args.ch)
    crit = CriticFeatureLoss(prior.critic, prior.image_shape)
    t0 = time.perf_counter()
    with _PeakRSS() as mem:
        init = select_latents(prior, op, y, crit, [0], None, args.candidates, batch)
    s = time.perf_counter() - t0
    out = {"seconds": s, "per_candidate_s": s / args.candidates, "index": int(init.index[0])}
    return {**out, "fit_peak_mb": mem.added}


def _run_phase(args) -> None:
    if args.phase == "ours":
        out = _phase_ours(args)
    elif args.phase == "published":
        out = _phase_published(args)
    elif args.phase == "batched":
        out = _phase_candidates(args, args.candidate_batch)
    else:
        out = _phase_candidates(args, 1)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def _median(v: list[float]) -> float:
    v = sorted(v[1:] if len(v) > 1 else v)  # the first step pays one-off allocation
    return v[len(v) // 2]


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.biggan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--steps", type=int, default=4, help="DGP steps per fit")
    p.add_argument("--output", default=None, help="folder for results.json and report.html")
    p.add_argument("--blocks", type=int, default=2, help="DGP groups fine-tuned (DGP's ft_num)")
    p.add_argument("--candidates", type=int, default=16, help="candidates of the best-of-N start (DGP: 500)")
    p.add_argument("--candidate-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ch", type=int, default=96, help="width multiplier (96: the released BigGAN-128)")
    p.add_argument("--phase", choices=["ours", "published", "batched", "single"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        _run_phase(args)
        return {}
    res = {"config": {k: v for k, v in vars(args).items() if k != "phase"}}
    base = [sys.executable, "-m", "benchmarks.biggan"]
    opts = ["--steps", str(args.steps), "--blocks", str(args.blocks), "--candidates", str(args.candidates)]
    opts += [
        "--candidate-batch",
        str(args.candidate_batch),
        "--threads",
        str(args.threads),
        "--ch",
        str(args.ch),
    ]
    for phase in ("ours", "published", "batched", "single"):
        proc = subprocess.run(
            [*base, *opts, "--phase", phase], capture_output=True, text=True, check=False, cwd=REPO
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"benchmark phase {phase} failed:\n{proc.stderr[-3000:]}")
        res[phase] = json.loads(line[-1][len("RESULT ") :])
    ours, pub = _median(res["ours"]["step_s"]), _median(res["published"]["step_s"])
    res["summary"] = {
        "dgp_step_s_ours": ours,
        "dgp_step_s_published": pub,
        "step_ratio_published_over_ours": pub / ours,
        "peak_rss_mb_ours": res["ours"]["peak_rss_mb"],
        "peak_rss_mb_published": res["published"]["peak_rss_mb"],
        "fit_peak_mb_ours": res["ours"]["fit_peak_mb"],
        "fit_peak_mb_published": res["published"]["fit_peak_mb"],
        "fit_peak_mb_candidates_batched": res["batched"]["fit_peak_mb"],
        "fit_peak_mb_candidates_single": res["single"]["fit_peak_mb"],
        "candidate_s_batched": res["batched"]["per_candidate_s"],
        "candidate_s_single": res["single"]["per_candidate_s"],
        "candidates_ratio_single_over_batched": res["single"]["seconds"] / res["batched"]["seconds"],
        "best_of_500_s_batched_projected": 500 * res["batched"]["per_candidate_s"],
        "same_candidate_chosen": res["batched"]["index"] == res["single"]["index"],
    }
    print(json.dumps(res, indent=1))
    if args.output:
        from datamodules.io.atomic import atomic_write_bytes
        from datamodules.io.html import json_report

        out = Path(args.output)
        atomic_write_bytes(out / "results.json", json.dumps(res, indent=1).encode())
        json_report(out, "BigGAN-128 DGP benchmark", res)
    return res


if __name__ == "__main__":
    main()
