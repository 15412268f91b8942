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

The allocator (``lcm.runtime.tune_allocator``): every number but ``plain_default_*`` runs with the tuned
allocator; ``plain_default_*`` is the same plain loop in a child process with the system's default allocator
(``GENPRIOR_ALLOCATOR=system``), so ``plain_default / faithful`` is what the framework gains over a DGP-style
script run as such. ``gd_*`` time one BigGAN G + D forward + backward (batch 1): ``gd_cpu_s`` as the networks
run, ``gd_weight_sn_cpu_s`` with spectral norm applied to the weights as BigGAN-PyTorch does (the gain of the
output scale) and ``gd_default_cpu_s`` in the child (the gain of the allocator).

``--candidates N`` also times DGP's best-of-N start on the same networks
(:func:`inversion.dgp.score_candidates`, DGP appendix B; candidates at DGP's ``sample_std`` 0.3), each with
its seconds, its chunk and its pick: ``bestof_fixed_*`` in chunks of 100 (before: the old default),
``bestof_auto_*`` in chunks sized to the memory budget (after: ``candidate_batch: auto``, the default,
:func:`lcm.runtime.budget_rows`), both fp32, and with ``--candidates-bf16`` ``bestof_bf16_*``: the budget
chunks under bf16 autocast (``candidate_bf16``; the same pick is its condition). ``--candidates-only``
skips the step timings.

``--device cuda`` runs everything on the GPU (wall seconds after ``torch.cuda.synchronize``; the ``cpu_s``
keys then hold the same wall seconds), ``--tf32`` allows TF32 matmuls and convolutions there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


# on CUDA: synchronize before reading a clock (a step's time includes its kernels), and the wall clock
# stands in for the process CPU time (which does not count the GPU's work)
_SYNC = [lambda: None]
_CPU = [time.process_time]


def _clocks() -> tuple[float, float]:
    _SYNC[0]()
    return time.perf_counter(), _CPU[0]()


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


def time_gd(prior, z, label, steps: int) -> tuple[float, float]:
    """One G + D forward + backward (DGP's networks, batch 1) per step, after a warm-up step."""
    gen, critic = prior.generator, prior.critic.net
    times = []
    for _ in range(1 + steps):
        t = _clocks()
        zz = z.clone().requires_grad_(True)
        feats = critic.dgp_features(gen(zz, label))
        sum(f.abs().mean() for f in feats).backward()
        times.append(_since(t))
    return sum(w for w, _ in times[1:]) / steps, sum(c for _, c in times[1:]) / steps


def time_gd_weight_sn(prior, z, label, steps: int) -> tuple[float, float]:
    """:func:`time_gd` with every spectral norm on the weight (``W / sigma``, BigGAN-PyTorch's way)."""
    layers = [
        m for net in (prior.generator, prior.critic) for m in net.modules() if hasattr(m, "sn_output_scale")
    ]
    for m in layers:
        m.sn_output_scale = False
    try:
        return time_gd(prior, z, label, steps)
    finally:
        for m in layers:
            del m.sn_output_scale  # back to the class default


def time_best_of(prior, op, y, label, n: int, seed: int, bf16: bool = False) -> dict:
    """DGP's best-of-``n`` start (``select_z``): fp32 in chunks of 100 (the old default), fp32 in chunks sized
    to the memory budget (the default now) and, with ``bf16``, those chunks under bf16 autocast."""
    from inversion.dgp import candidate_pool, score_candidates

    z, _ = candidate_pool(prior, n, seed, int(label[0]), std=0.3)
    out = {"bestof_candidates": n}
    runs = [("fixed", False, 100), ("auto", False, "auto")] + ([("bf16", True, "auto")] if bf16 else [])
    for name, half, batch in runs:
        sizes = []  # the batches the generator saw (auto: the 1-candidate probe, then the chunks)
        hook = prior.generator.register_forward_pre_hook(lambda m, a, s=sizes: s.append(a[0].shape[0]))
        try:
            t = _clocks()
            d = score_candidates(prior, op, y, z, label, batch_size=batch, bf16=half)
            wall, cpu = _since(t)
        finally:
            hook.remove()
        out.update({f"bestof_{name}_s": wall, f"bestof_{name}_cpu_s": cpu, f"bestof_{name}_batch": max(sizes),
                    f"bestof_{name}_pick": int(d.float().argmin())})  # fmt: skip
    out["bestof_same_pick"] = len({out[f"bestof_{name}_pick"] for name, _, _ in runs}) == 1
    return out


def _setup(args):
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is visible to torch (torch.cuda.is_available())")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
        _SYNC[0], _CPU[0] = (lambda: torch.cuda.synchronize(dev)), time.perf_counter
    prior = build(args.resolution, args.seed).to(dev)
    prior.critic.requires_grad_(False)
    op = dgp_operator("SR", args.resolution).to(dev)
    label = torch.tensor([3], device=dev)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        x = prior(0.3 * torch.randn(1, *prior.latent_shape, generator=g).to(dev), label)
    y = op(x)
    z = (0.3 * torch.randn(1, *prior.latent_shape, generator=g)).to(dev)
    return prior, op, y, z, label


def _default_allocator_child(args) -> dict:
    """The plain loop and G + D step in a child process with the system's default allocator."""
    argv = [
        sys.executable, "-m", "benchmarks.dgp_step", "--child", "--threads", str(args.threads),
        "--steps", str(args.steps), "--ft-num", str(args.ft_num), "--resolution", str(args.resolution),
        "--seed", str(args.seed), "--device", args.device, *(["--tf32"] if args.tf32 else []),
    ]  # fmt: skip
    env = {**os.environ, "GENPRIOR_ALLOCATOR": "system"}
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"the default-allocator child failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    ap.add_argument("--ft-num", type=int, default=2, help="DGP's ft_num of the timed stage")
    ap.add_argument("--resolution", type=int, default=128, choices=sorted(RELEASED))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:k]")
    ap.add_argument("--tf32", action="store_true", help="CUDA: allow TF32 matmuls and convolutions")
    ap.add_argument("--candidates", type=int, default=0, help="also time DGP's best-of-N start (0: skip)")
    ap.add_argument("--candidates-bf16", action="store_true", help="also the best-of-N under bf16 autocast")
    ap.add_argument("--candidates-only", action="store_true", help="time the best-of-N start only")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # plain loop + G+D step only
    args = ap.parse_args(argv)
    prior, op, y, z, label = _setup(args)
    if args.candidates_only:
        if not args.candidates:
            raise SystemExit("--candidates-only needs --candidates N")
        out = {"device": str(y.device), "threads": args.threads, "resolution": args.resolution}
        out.update(time_best_of(prior, op, y, label, args.candidates, args.seed, args.candidates_bf16))
        return _report(out, args.json)
    if args.child:
        from lcm.runtime import allocator_settings

        plain = time_plain(prior, op, y, z, label, args.ft_num, args.steps)
        gd = time_gd(prior, z, label, args.steps)
        print(json.dumps({"plain": plain, "gd": gd, "allocator": allocator_settings()}))
        return {}
    default = _default_allocator_child(args)
    assert default["allocator"] is None, default  # the child ran with the system's allocator
    from lcm.runtime import allocator_settings

    out = {
        "device": str(y.device) + (" tf32" if args.tf32 and y.is_cuda else ""),
        "allocator": allocator_settings(),
        "threads": args.threads,
        "resolution": args.resolution,
        "ft_num": args.ft_num,
        "steps": args.steps,
        "G_params_M": sum(p.numel() for p in prior.generator.parameters()) / 1e6,
        "D_params_M": sum(p.numel() for p in prior.critic.parameters()) / 1e6,
    }
    # wall-clock and process CPU seconds (one thread: the CPU time is the work, steadier on a shared machine)
    for name, (wall, cpu) in (
        ("plain_default", default["plain"]),
        ("plain", time_plain(prior, op, y, z, label, args.ft_num, args.steps)),
        ("faithful", time_restore(prior, op, y, z, label, args.ft_num, args.steps, "faithful")),
        ("fast", time_restore(prior, op, y, z, label, args.ft_num, args.steps, "fast")),
    ):
        out[f"{name}_s_per_step"] = wall
        out[f"{name}_cpu_s_per_step"] = cpu
    out["gd_default_cpu_s"] = default["gd"][1]
    out["gd_cpu_s"] = time_gd(prior, z, label, args.steps)[1]
    out["gd_weight_sn_cpu_s"] = time_gd_weight_sn(prior, z, label, args.steps)[1]
    base = out["plain_default_cpu_s_per_step"]
    for name in ("plain", "faithful", "fast"):
        out[f"{name}_speedup_vs_plain_default"] = base / out[f"{name}_cpu_s_per_step"]
    out["gd_allocator_speedup"] = out["gd_default_cpu_s"] / out["gd_cpu_s"]
    out["gd_sn_output_scale_speedup"] = out["gd_weight_sn_cpu_s"] / out["gd_cpu_s"]
    if args.candidates:
        out.update(time_best_of(prior, op, y, label, args.candidates, args.seed, args.candidates_bf16))
    return _report(out, args.json)


def _report(out: dict, path: str | None) -> dict:
    print(json.dumps(out, indent=2))
    if path:  # atomically: a temporary file renamed over the target
        tmp = Path(path).with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        os.replace(tmp, path)
    return out


if __name__ == "__main__":
    main()
