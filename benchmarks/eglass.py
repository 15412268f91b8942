"""``python -m benchmarks.eglass``: time to N distinct feasible solutions, e-GLASS vs PULSE-style restarts
(e-GLASS Table 1).

    python -m benchmarks.eglass --prior /path/wgangp/last.ckpt --data fashion-mnist --task sr
    python -m benchmarks.eglass --prior /path/wgangp_emoji/last.ckpt --data emoji --task inpaint
    python -m benchmarks.eglass --prior G_ema.pth --data photos/ --task sr --label 0
    python -m benchmarks.eglass --tiny-prior        # no checkpoint: fits a tiny VAE stand-in

``--data``: ``fashion-mnist`` / ``emoji`` (their test splits), a folder of image files (any photos,
loaded at the prior's resolution), or ``samples``: the prior's own images from latents drawn with a seed
no start uses -- for a network with random weights (the tiny BigGAN of the tests), which has no held-out
data and cannot fit a photo. ``--label``: the class of a class-conditional prior, the same for both methods.

Same prior, same held-out test images, same operator, one run, one process, and for both methods the same
:class:`Feasibility` criterion object (``--rel-tol``), the same :class:`Distinctness` rule and the same
solver (:func:`fit_solutions`, IAGAN-style: z, then z and a private generator copy):

* e-GLASS: the clock includes the initial fit (one random start, stopped at ``--margin`` x the tolerance;
  a start that ends infeasible is refitted from the next seed, up to ``--init-tries``, all timed),
  the Hessians at its latent with its fine-tuned generator, and Algorithm 1 over the directions until
  ``--num-solutions`` distinct feasible solutions exist (the raw ``v^K`` steps measured for Fig. 2's
  comparison are a diagnostic, not part of the method: their time is left out);
* restarts: rounds of ``--restart-batch`` batched fits from random starts, each stopped as soon as it is
  feasible under the same criterion, until ``--num-solutions`` of them are distinct.

Reported per method and image: seconds to N, whether N was reached, the residual range, the diversity of
the N solutions (mean pairwise pixel RMS, split into the part the measurements constrain and the free
part: the hole / the high frequencies), and for e-GLASS the raw ``v^K`` residual at the same steps (Fig. 2:
raw steps infeasible, searched directions feasible). Outputs under ``--out``: ``summary.json`` and grids.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from datamodules.io.atomic import atomic_write, atomic_write_bytes
from inversion.cli.report import exploration_report
from inversion.exploration import (
    Distinctness,
    Feasibility,
    diversity,
    explore,
    fit_solutions,
    fit_start,
    restart_solutions,
    save_tile_grid,
)
from lcm.runtime import tune_allocator

Tensor = torch.Tensor


# -- a tiny prior when no checkpoint exists --------------------------------------------------------
class _Encoder(nn.Module):
    def __init__(self, latent_dim: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(4 * width * 16, 2 * latent_dim),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net(x * 2 - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 4)


def fit_tiny_prior(
    latent_dim: int = 16,
    steps: int = 1500,
    batch_size: int = 64,
    width: int = 16,
    limit: int = 12000,
    seed: int = 0,
    cache: Path | None = None,
):
    """A small VAE (Kingma & Welling 2014) on Fashion-MNIST 32x32; its decoder as an ``lcm.Prior``
    (Gaussian latent). For the benchmark only: a stand-in when no trained prior checkpoint exists."""
    from datamodules import FashionMNISTDataset
    from lcm import Generator, Prior

    torch.manual_seed(seed)
    gen = Generator(latent_shape=(latent_dim,), out_channels=1, resolution=32, width=width)
    prior = Prior(gen, "gaussian", (latent_dim,), (1, 32, 32), kind="tiny-vae")
    if cache is not None and cache.is_file():
        prior.load_state_dict(torch.load(cache, map_location="cpu", weights_only=True), strict=True)
        return prior.eval(), {"cached": str(cache)}
    data = FashionMNISTDataset("train", resolution=32, limit=limit, seed=seed)
    images = torch.stack([data[i]["image"] for i in range(len(data))])
    enc = _Encoder(latent_dim, width)
    opt = torch.optim.Adam([*enc.parameters(), *gen.parameters()], lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    prior.train()
    for step in range(steps):
        x = images[torch.randint(len(images), (batch_size,), generator=g)]
        mu, logvar = enc(x)
        z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
        rec = prior(z)
        nll = (rec - x).pow(2).sum(dim=(1, 2, 3)) / (2 * 0.05**2) / (32 * 32)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1) / (32 * 32)
        loss = (nll + kl).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0:
            print(f"  tiny VAE step {step}: loss {loss.item():.4f}", flush=True)
    prior.eval()
    info = {"steps": steps, "train_images": len(images), "seconds": time.perf_counter() - t0}
    if cache is not None:
        atomic_write(cache, lambda f: torch.save(prior.state_dict(), f))
    return prior, info


# -- helpers ---------------------------------------------------------------------------------------
def _operator(task: str):
    from inversion.operators import Inpainting, SuperResolution

    if task == "sr":
        return SuperResolution(factor=4, kernel="box")
    if task == "inpaint":
        return Inpainting("center", box_size=0.5)
    raise ValueError(f"--task must be 'sr' or 'inpaint', got {task!r}")


def _held_out(data: str, n: int, resolution: int, channels: int, seed: int) -> Tensor:
    if Path(data).is_dir():
        from datamodules.io.images import list_image_files, load_image

        files = sorted(list_image_files(data))[:n]
        if not files:
            raise ValueError(f"--data {data!r} holds no image files")
        return torch.stack([load_image(f, resolution, channels) for f in files])
    if data == "fashion-mnist":
        from datamodules import FashionMNISTDataset

        ds = FashionMNISTDataset("test", resolution=resolution, limit=n, seed=seed)
    elif data == "emoji":
        from datamodules import EmojiDataset

        ds = EmojiDataset("test", resolution=resolution, split_limit=n, seed=seed)
    else:
        raise ValueError(f"--data must be 'fashion-mnist', 'emoji' or a folder of images, got {data!r}")
    x = torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])
    if x.shape[1] != channels:
        raise ValueError(
            f"--data {data} has {x.shape[1]} channels, the prior {channels}: pick the matching prior"
        )
    return x


def _range(values: Tensor) -> list[float] | None:
    return [float(values.min()), float(values.max())] if values.numel() else None


def race(
    prior,
    op,
    y: Tensor,
    criterion: Feasibility,
    distinct: Distinctness,
    num_solutions: int = 10,
    seed: int = 0,
    restart_seed: int = 1,
    margin: float = 0.5,
    init_tries: int = 3,
    restart_batch: int = 10,
    max_rounds: int = 5,
    labels: Tensor | None = None,
    fit_kw: dict | None = None,
    eg_kw: dict | None = None,
):
    """One image, both methods, one clock each: e-GLASS (its IAGAN-style start fit, refitted from the next
    seed while infeasible, up to ``init_tries``; Hessians; search) and the restarts, to ``num_solutions``
    distinct feasible solutions under the same ``criterion`` and ``distinct``.

    Returns:
        ``(row, exploration_result, restart_result)``: ``row`` holds both methods' seconds, counts,
        residual ranges and diversity, and ``ratio`` = restart seconds / e-GLASS seconds.
    """
    fit_kw = dict(fit_kw or {})
    eg_kw = {**(eg_kw or {}), "criterion": criterion, "distinct": distinct, "num_solutions": num_solutions}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        t0 = time.perf_counter()
        for tries in range(1, init_tries + 1):  # an infeasible start: refit from the next seed
            start_seed = seed + 104723 * (tries - 1)
            start = fit_start(
                prior, op, y, criterion, margin=margin, seed=start_seed, labels=labels, **fit_kw
            )
            with torch.no_grad():
                start_res = float(criterion.residual(op, start.raw, y)[0])
            if start_res <= criterion.tolerance(op, y):
                break
        t_mid = time.perf_counter()
        res = explore(start, op, y, prior=prior, labels=labels, **eg_kw)
        t_eg = time.perf_counter() - t0 - res.timings["raw_diagnostic"]  # Fig. 2's raw steps: untimed
        t1 = time.perf_counter()
        rs = restart_solutions(
            prior,
            op,
            y,
            num_solutions=num_solutions,
            criterion=criterion,
            distinct=distinct,
            batch=restart_batch,
            max_rounds=max_rounds,
            seed=restart_seed,
            labels=labels,
            **fit_kw,
        )
        t_rs = time.perf_counter() - t1
    sel = torch.tensor(res.selected, dtype=torch.long)
    raw_sel = res.raw_residuals[sel] if sel.numel() else res.raw_residuals[:0]
    row = {
        "tolerance": res.tolerance,
        "eglass": {
            "seconds": t_eg,
            "seconds_initial_fit": t_mid - t0,
            "seconds_geometry": res.timings["geometry"],
            "seconds_search": res.timings["search"],
            "initial_fit_steps": int(start.config.get("steps", 0)),
            "initial_fit_tries": tries,
            "initial_finetuned": start.generators is not None,
            "initial_residual": res.x0_residual,
            "solutions": res.num_solutions,
            "reached": res.num_solutions >= num_solutions,
            "candidates": int(res.latents.shape[0]),
            "feasible_candidates": res.num_feasible,
            "directions_skipped": len(res.skipped),
            "top_y": res.top_y,
            "residual_range": _range(res.residuals[sel]) if sel.numel() else None,
            "raw_vK_residual_range": _range(raw_sel),
            "raw_vK_infeasible": int((raw_sel > res.tolerance).sum()),
            **res.diversity(op),
        },
        "restarts": {
            "seconds": t_rs,
            "restarts": int(rs.latents.shape[0]),
            "feasible": rs.num_feasible,
            "solutions": len(rs.selected),
            "reached": len(rs.selected) >= num_solutions,
            "finetuned": int(rs.finetuned.sum()),
            "mean_steps": float(rs.steps.float().mean()),
            "residual_range": _range(rs.residuals[rs.selected]) if rs.selected else None,
            **diversity(rs.solutions, op),
        },
        "warnings": sorted({str(w.message)[:200] for w in caught if "e-GLASS" in str(w.message)}),
    }
    row["ratio"] = t_rs / max(t_eg, 1e-12)
    return row, res, rs


def run_benchmark(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.prior:
        from lcm import load_prior

        prior = load_prior(args.prior)
        prior_info = {"checkpoint": str(args.prior), "kind": prior.kind}
    else:
        print("no --prior given: fitting a tiny VAE prior on Fashion-MNIST (stand-in, not a trained GAN)")
        prior, prior_info = fit_tiny_prior(
            latent_dim=args.tiny_latent, steps=args.tiny_steps, cache=out / f"tiny_vae_{args.tiny_latent}.pt"
        )
        prior_info["kind"] = "tiny-vae (benchmark stand-in)"
    prior.requires_grad_(False)
    ncls = int(getattr(prior, "num_classes", 0) or 0)
    if ncls and not 0 <= args.label < ncls:
        raise ValueError(f"--label {args.label} outside the prior's {ncls} classes")
    labels = torch.tensor([args.label]) if ncls else None
    prior_info["label"] = args.label if ncls else None
    c, h, _ = prior.image_shape
    op = _operator(args.task)
    if args.data == "samples":
        g = torch.Generator().manual_seed(10_000_019 + args.seed)  # no start of either method uses it
        with torch.no_grad():
            lab = None if labels is None else labels.expand(args.num_images)
            truths = prior(prior.sample_latent(args.num_images, generator=g), lab)
    else:
        truths = _held_out(args.data, args.num_images, h, c, args.seed)
    tag = Path(args.data).name if Path(args.data).is_dir() else args.data  # in the output file names
    criterion = Feasibility(rel_tol=args.rel_tol)
    distinct = Distinctness(min_image_distance=args.min_image_distance, min_angle=args.min_angle)
    fit_kw = {"z_steps": args.z_steps, "finetune_steps": args.finetune_steps}
    eg_kw = {
        "ks": tuple(range(args.k_first, args.k_first + args.num_k)),
        "etas": tuple(args.etas),
        "threshold": args.corr_threshold,
    }  # race() adds the criterion, the distinctness rule and num_solutions
    # warm-up (first-call overheads out of the timings)
    with torch.no_grad():
        y_warm = op.A(truths[:1])
    warm = fit_solutions(
        prior, op, y_warm, prior.sample_latent(2), criterion, z_steps=3, finetune_steps=3, labels=labels
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = fit_start(prior, op, y_warm, criterion, z_steps=3, finetune_steps=3, labels=labels)
        explore(start, op, y_warm, prior=prior, labels=labels, criterion=criterion, num_solutions=1, **eg_kw)
    del warm

    rows = []
    for i in range(truths.shape[0]):
        x_true = truths[i : i + 1]
        with torch.no_grad():
            y = op.A(x_true)
        row, res, rs = race(
            prior,
            op,
            y,
            criterion,
            distinct,
            num_solutions=args.num_solutions,
            seed=args.seed + 7919 * i,
            restart_seed=args.seed + 104729 * (i + 1),
            margin=args.margin,
            init_tries=args.init_tries,
            restart_batch=args.restart_batch,
            max_rounds=args.max_rounds,
            labels=labels,
            fit_kw=fit_kw,
            eg_kw=eg_kw,
        )
        row = {"image": i, **row}
        t_eg, t_rs = row["eglass"]["seconds"], row["restarts"]["seconds"]
        rows.append(row)
        e, r = row["eglass"], row["restarts"]
        print(
            f"image {i}: e-GLASS {t_eg:.2f}s (fit {e['seconds_initial_fit']:.2f}s) {e['solutions']} sol, "
            f"div {e['pairwise_rms']:.4f} (free {e['free']:.4f}), raw v^K infeasible "
            f"{e['raw_vK_infeasible']}/{e['solutions']} | restarts {t_rs:.2f}s {r['solutions']} sol "
            f"({r['restarts']} fits), div {r['pairwise_rms']:.4f} (free {r['free']:.4f}) "
            f"| ratio {row['ratio']:.2f}",
            flush=True,
        )
        if res.num_solutions:
            res.save_grid(out / f"eglass_{tag}_{args.task}_{i}.png", nrow=11)
        if rs.selected:
            save_tile_grid(
                torch.cat([x_true, rs.solutions]), out / f"restarts_{tag}_{args.task}_{i}.png", nrow=11
            )

    def mean(method: str, key: str) -> float:
        vals = [float(r[method][key]) for r in rows if r[method][key] is not None]
        vals = [v for v in vals if not math.isnan(v)]
        return sum(vals) / len(vals) if vals else float("nan")

    both = [r for r in rows if r["eglass"]["reached"] and r["restarts"]["reached"]]
    summary = {
        "prior": prior_info,
        "data": args.data,
        "task": args.task,
        "num_images": len(rows),
        "num_solutions": args.num_solutions,
        "criterion": {"rel_tol": criterion.rel_tol, "noise_factor": criterion.noise_factor},
        "distinct": {"min_image_distance": distinct.min_image_distance, "min_angle": distinct.min_angle},
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "prior"},
        "mean": {
            m: {k: mean(m, k) for k in ("seconds", "solutions", "pairwise_rms", "free", "constrained")}
            for m in ("eglass", "restarts")
        },
        "reached": {m: sum(bool(r[m]["reached"]) for r in rows) for m in ("eglass", "restarts")},
        "ratio_of_mean_seconds": mean("restarts", "seconds") / max(mean("eglass", "seconds"), 1e-12),
        "median_ratio": statistics.median(r["ratio"] for r in rows) if rows else float("nan"),
        "ratio_both_reached": (
            sum(r["restarts"]["seconds"] for r in both)
            / max(sum(r["eglass"]["seconds"] for r in both), 1e-12)
            if both
            else float("nan")
        ),
        "images": rows,
    }
    atomic_write_bytes(out / f"summary_{tag}_{args.task}.json", json.dumps(summary, indent=2).encode())
    print(f"report: {exploration_report(out, f'summary_{tag}_{args.task}.json')}")
    me, mr = summary["mean"]["eglass"], summary["mean"]["restarts"]
    print(
        f"| {tag} | {args.task} | {me['seconds']:.2f} ({summary['reached']['eglass']}/{len(rows)}) | "
        f"{mr['seconds']:.2f} ({summary['reached']['restarts']}/{len(rows)}) | "
        f"{summary['ratio_of_mean_seconds']:.2f}x | {me['pairwise_rms']:.3f} / {me['free']:.3f} | "
        f"{mr['pairwise_rms']:.3f} / {mr['free']:.3f} |"
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.eglass",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--prior", help="prior checkpoint (lcm.load_prior); omitted: --tiny-prior")
    p.add_argument(
        "--tiny-prior", action="store_true", help="fit a tiny VAE stand-in prior (default w/o --prior)"
    )
    p.add_argument("--tiny-latent", type=int, default=16)
    p.add_argument("--tiny-steps", type=int, default=1500)
    p.add_argument("--task", choices=("sr", "inpaint"), default="sr")
    p.add_argument(
        "--data",
        default="fashion-mnist",
        help="fashion-mnist, emoji (test splits), a folder of images, or samples",
    )
    p.add_argument("--label", type=int, default=0, help="class of a class-conditional prior (both methods)")
    p.add_argument("--num-images", type=int, default=3)
    p.add_argument("--num-solutions", type=int, default=10)
    p.add_argument(
        "--rel-tol", type=float, default=Feasibility.rel_tol, help="feasibility: ||A x - y|| / ||y||"
    )
    p.add_argument("--min-image-distance", type=float, default=Distinctness.min_image_distance)
    p.add_argument("--min-angle", type=float, default=Distinctness.min_angle, help="degrees")
    p.add_argument(
        "--margin", type=float, default=0.5, help="e-GLASS's initial fit stops at margin x rel-tol"
    )
    p.add_argument("--init-tries", type=int, default=3, help="e-GLASS start fits until one is feasible")
    p.add_argument("--z-steps", type=int, default=100, help="z-only Adam steps per fit (both methods)")
    p.add_argument("--finetune-steps", type=int, default=300, help="joint z + generator steps (both methods)")
    p.add_argument("--restart-batch", type=int, default=10)
    p.add_argument("--max-rounds", type=int, default=5)
    p.add_argument("--k-first", type=int, default=2, help="first K (1-based)")
    p.add_argument("--num-k", type=int, default=24)
    p.add_argument("--etas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    p.add_argument("--corr-threshold", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="outputs/eglass_benchmark")
    args = p.parse_args(argv)
    if args.prior and args.tiny_prior:
        raise ValueError("give either --prior PATH or --tiny-prior, not both")
    if args.prior and not Path(args.prior).is_file():
        raise FileNotFoundError(f"--prior {args.prior!r} does not exist; omit it to use --tiny-prior")
    return run_benchmark(args)


if __name__ == "__main__":
    main()
