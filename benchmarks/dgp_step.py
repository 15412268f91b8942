"""Seconds per DGP step on a full-size BigGAN-128 (G + D, random weights): the faithful variant (DGP's
``run()``), the fast variant (no gradients for frozen groups, a fresh Adam per stage) and a plain loop
written as DGP's ``run()`` is (one Adam pair, G, degradation, critic loss, backward, step; no framework).

    python -m benchmarks.dgp_step --threads 1 --steps 3 --ft-num 2

Wall-clock and process CPU seconds are both reported (with one thread the CPU time is the work done, steadier
than the wall clock on a shared machine). The faithful and fast numbers come from ``restore(..., method="dgp",
init_latent=z)`` runs of ``1`` and ``1 + steps`` steps (their difference over ``steps``: per-image setup
excluded); the plain loop is timed per step after one warm-up step. The stage is the first of DGP's
``SR/D_biased`` script (``ft_num`` 2, ``ftr_num`` 8, ``w_mse`` 1, ``w_D_loss`` 1) unless ``--ft-num`` says
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inversion import restore
from inversion.dgp import dgp_operator, script_stages
from lcm.architectures.biggan import RELEASED, BigGANDiscriminator, BigGANGenerator, biggan_prior
from lcm.prior import to_unit
from lcm.runtime import tune_allocator


def build(resolution: int, seed: int):
    torch.manual_seed(seed)
    cfg = RELEASED[resolution]
    gen = BigGANGenerator(**cfg).eval()
    disc = BigGANDiscriminator(
        ch=cfg["ch"], n_classes=cfg["n_classes"], resolution=resolution, attention=cfg["attention"]
    ).eval()
    return biggan_prior(gen, disc)


def options(ft_num: int, steps: int) -> dict:
    return script_stages(
        ft_num=[ft_num],
        ftr_num=[8],
        lr_ratio=[1.0],
        w_D_loss=[1.0],
        w_mse=[1.0],
        w_nll=0.02,
        G_lrs=[5e-5],
        z_lrs=[2e-3],
        use_in=[False],
        iterations=[steps],
        sample_std=0.3,
    )


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    t1 = _clocks()
    return t1[0] - t0[0], t1[1] - t0[1]


def time_restore(prior, op, y, z, label, ft_num: int, steps: int, variant: str) -> tuple[float, float]:
    def run(n: int) -> tuple[float, float]:
        t = _clocks()
        opts = {**options(ft_num, n), "variant": variant}
        restore(y, op, prior, method="dgp", labels=label, init_latent=z, **opts)
        return _since(t)

    long, short = run(1 + steps), run(1)
    return (long[0] - short[0]) / steps, (long[1] - short[1]) / steps


def time_plain(prior, op, y, z, label, ft_num: int, steps: int) -> tuple[float, float]:
    """DGP's ``run()`` loop, written out (models/dgp.py): one Adam pair, all groups in the optimizer."""
    import copy

    gen = copy.deepcopy(prior.generator)
    critic = prior.critic.net
    groups = [list(b.parameters()) for b in list(gen.blocks)[: gen.dgp_optimized_groups]]
    for g in groups:
        for p in g:
            p.requires_grad_(True)
    g_opt = torch.optim.Adam([{"params": g} for g in groups], lr=0.0, betas=(0.0, 0.999), eps=1e-8)
    zz = z.clone().requires_grad_(True)
    z_opt = torch.optim.Adam([zz], lr=2e-3, betas=(0.0, 0.999), eps=1e-8)
    for i, pg in enumerate(g_opt.param_groups):
        pg["lr"] = 5e-5 if i < ft_num else 0.0
    with torch.no_grad():
        target = op.lift(y)
        real = critic.dgp_features(target)
    times = []
    for _ in range(1 + steps):
        t = _clocks()
        z_opt.zero_grad()
        g_opt.zero_grad()
        x = gen(zz, label)
        x_map = op.lift(op.A(to_unit(x)))
        fake = critic.dgp_features(x_map)
        ftr = sum(F.l1_loss(a, b) for a, b in zip(fake, real, strict=True))
        loss = ftr + F.mse_loss(x_map, target) + 0.02 * (zz**2 / 2).mean()
        loss.backward()
        z_opt.step()
        g_opt.step()
        times.append(_since(t))
    return sum(w for w, _ in times[1:]) / steps, sum(c for _, c in times[1:]) / steps


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    ap.add_argument("--ft-num", type=int, default=2, help="DGP's ft_num of the timed stage")
    ap.add_argument("--resolution", type=int, default=128, choices=sorted(RELEASED))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = build(args.resolution, args.seed)
    prior.critic.requires_grad_(False)
    op = dgp_operator("SR", args.resolution)
    label = torch.tensor([3])
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        x = prior(0.3 * torch.randn(1, *prior.latent_shape, generator=g), label)
    y = op(x)
    z = 0.3 * torch.randn(1, *prior.latent_shape, generator=g)
    out = {
        "device": "cpu",
        "threads": args.threads,
        "resolution": args.resolution,
        "ft_num": args.ft_num,
        "steps": args.steps,
        "G_params_M": sum(p.numel() for p in prior.generator.parameters()) / 1e6,
        "D_params_M": sum(p.numel() for p in prior.critic.parameters()) / 1e6,
    }
    # wall-clock and process CPU seconds (one thread: the CPU time is the work, steadier on a shared machine)
    for name, (wall, cpu) in (
        ("plain", time_plain(prior, op, y, z, label, args.ft_num, args.steps)),
        ("faithful", time_restore(prior, op, y, z, label, args.ft_num, args.steps, "faithful")),
        ("fast", time_restore(prior, op, y, z, label, args.ft_num, args.steps, "fast")),
    ):
        out[f"{name}_s_per_step"] = wall
        out[f"{name}_cpu_s_per_step"] = cpu
    print(json.dumps(out, indent=2))
    if args.json:  # atomically: a temporary file renamed over the target
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, args.json)
    return out


if __name__ == "__main__":
    main()
