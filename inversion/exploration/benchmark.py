"""Benchmark: time to N feasible solutions, e-GLASS vs PULSE-style random restarts (e-GLASS Table 1).

    python -m inversion.exploration.benchmark --prior path/to/prior.ckpt --task sr
    python -m inversion.exploration.benchmark --tiny-prior --task inpaint   # no checkpoint: fits a tiny VAE

Same prior, same images, same operator, same feasibility threshold, one run, one process:

* e-GLASS: one latent fit from one random start (to ``--init-stop``), then the geometry at that latent and
  Algorithm 1 over ``--ks`` x ``--etas`` x (+/-) until ``--num-solutions`` candidates are feasible;
* restarts: rounds of ``--restart-batch`` batched latent fits from random starts, each stopping once its
  measurement distance is under ``--restart-stop`` (default: the same ``--init-stop`` as e-GLASS's initial
  fit; PULSE stops at its own tolerance), until ``--num-solutions`` are feasible.

Reported per method: wall time to N feasible solutions, measurement distances, and the spread of the N
solutions (mean pairwise perceptual distance; the offline EfficientNet-Lite0 distance of
``inversion.metrics`` when its weights are installed, and the pixel RMS distance). Outputs under ``--out``:
``summary.json``, per-image grids and the Fig. 1 diagnostic. ``--tiny-prior`` fits a small VAE decoder
(lcm.networks.Generator) on Fashion-MNIST for a minute or two: its numbers are not those of a trained
GAN prior and are labelled as such.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from inversion.exploration.eglass import EGlass
from inversion.exploration.plots import save_image_grid
from inversion.exploration.restarts import RestartResult, fit_latents, restart_solutions
from inversion.io import atomic_write, atomic_write_bytes
from inversion.report import exploration_report

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
    from datamodules.fashion_mnist import FashionMNISTDataset
    from lcm.networks import Generator
    from lcm.prior import Prior

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
def _operator(task: str, resolution: int):
    from inversion.operators import Inpainting, SuperResolution

    if task == "sr":
        return SuperResolution(factor=4, kernel="box")
    if task == "inpaint":
        return Inpainting("center", box_size=0.5)
    raise ValueError(f"--task must be 'sr' or 'inpaint', got {task!r}")


def _perceptual():
    """Offline perceptual distance if its weights are installed, else None."""
    try:
        from inversion.metrics import OfflinePerceptualDistance
        from inversion.metrics.perceptual import EfficientNetLite0Features

        dist = OfflinePerceptualDistance(EfficientNetLite0Features(resize=64)).eval()
        dist(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
        return dist
    except (ImportError, FileNotFoundError) as err:
        print(f"  offline perceptual distance unavailable ({err}); spread in pixel RMS only")
        return None


@torch.no_grad()
def spread(images: Tensor, perceptual) -> dict[str, float]:
    """Mean pairwise distance of a set of images: pixel RMS and (if available) perceptual."""
    n = images.shape[0]
    if n < 2:
        return {"pixel_rms": float("nan"), "perceptual": float("nan")}
    pairs = list(itertools.combinations(range(n), 2))
    a = images[[i for i, _ in pairs]]
    b = images[[j for _, j in pairs]]
    out = {"pixel_rms": float((a - b).flatten(1).pow(2).mean(1).sqrt().mean())}
    out["perceptual"] = (
        float(perceptual(a.float(), b.float()).mean()) if perceptual is not None else float("nan")
    )
    return out


def _first_feasible(images: Tensor, dist: Tensor, feasible: Tensor, n: int) -> tuple[Tensor, Tensor]:
    idx = feasible.nonzero().flatten()[:n]
    return images[idx], dist[idx]


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
    c, h, w = prior.image_shape
    op = _operator(args.task, h)
    if args.data == "fashion-mnist" and c == 1:
        from datamodules.fashion_mnist import FashionMNISTDataset

        test = FashionMNISTDataset("test", resolution=h, limit=args.num_images, seed=args.seed)
        truths = torch.stack([test[i]["image"] for i in range(len(test))])
    else:  # images drawn from the prior itself (in-range by construction)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(args.seed + 1000)
            truths = prior(prior.sample_latent(args.num_images, generator=gen))
    perceptual = _perceptual()
    if args.hx == "offline" and perceptual is None:
        raise ValueError("--hx offline needs the offline perceptual distance (EfficientNet-Lite0 weights)")
    explorer = EGlass(
        perceptual="mse" if args.hx == "mse" else perceptual,
        ks=tuple(range(args.k_first, args.k_first + args.num_k)),
        etas=tuple(args.etas),
        threshold=args.corr_threshold,
        top_y=args.top_y,
        y_energy=args.y_energy,
        feasibility_threshold=args.threshold,
        num_solutions=args.num_solutions,
    )
    fit_kw = {"steps": args.steps, "lr": args.lr, "feasibility_threshold": args.threshold}
    # warm-up (first-call overheads out of the timings)
    with torch.no_grad():
        y_warm = op.A(truths[:1])
    fit_latents(prior, op, y_warm, num_restarts=2, steps=3, lr=args.lr)
    explorer.geometry(prior, op, prior.sample_latent(1))

    rows = []
    for i in range(truths.shape[0]):
        x_true = truths[i : i + 1]
        with torch.no_grad():
            y = op.A(x_true)
        # e-GLASS: one fit from one random start (retry with the next seed if it misses), then explore.
        # Each method runs --repeats times (identical results: seeded); the fastest run is reported.
        t_eg = t_init = t_rs = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            init_tries = 0
            for attempt in range(args.init_tries):
                init_tries += 1
                gen = torch.Generator().manual_seed(args.seed + 7919 * i + attempt)
                init = fit_latents(
                    prior, op, y, num_restarts=1, stop_threshold=args.init_stop, generator=gen, **fit_kw
                )
                if bool(init.feasible[0]):
                    break
            t_mid = time.perf_counter()
            res = explorer.run(prior, op, init.latents, y)
            t_end = time.perf_counter()
            if t_end - t0 < t_eg:
                t_eg, t_init, eg_timings = t_end - t0, t_mid - t0, res.timings
        eg_imgs, eg_dist = _first_feasible(res.images, res.distances, res.feasible, args.num_solutions)
        # PULSE-style restarts
        for _ in range(args.repeats):
            t1 = time.perf_counter()
            rs: RestartResult = restart_solutions(
                prior,
                op,
                y,
                num_solutions=args.num_solutions,
                batch=args.restart_batch,
                max_rounds=args.max_rounds,
                seed=args.seed + 104729 * (i + 1),
                stop_threshold=args.init_stop if args.restart_stop is None else args.restart_stop,
                **fit_kw,
            )
            t_rs = min(t_rs, time.perf_counter() - t1)
        rs_imgs, rs_dist = _first_feasible(rs.images, rs.distances, rs.feasible, args.num_solutions)
        row = {
            "image": i,
            "eglass": {
                "seconds": t_eg,
                "seconds_initial_fit": t_init,
                "seconds_geometry": eg_timings["geometry"],
                "seconds_search": eg_timings["search"],
                "initial_fit_tries": init_tries,
                "initial_distance": float(init.distances[0]),
                "candidates": int(res.latents.shape[0]),
                "feasible": res.num_feasible,
                "reached": res.num_feasible >= args.num_solutions,
                "distance_range": [float(eg_dist.min()), float(eg_dist.max())] if len(eg_dist) else None,
                "raw_vK_feasible": int((res.raw_distances <= args.threshold).sum()),
                "top_y": res.top_y,
                **spread(eg_imgs, perceptual),
            },
            "restarts": {
                "seconds": t_rs,
                "restarts": int(rs.latents.shape[0]),
                "feasible": rs.num_feasible,
                "reached": rs.num_feasible >= args.num_solutions,
                "mean_steps": float(rs.steps.float().mean()),
                "distance_range": [float(rs_dist.min()), float(rs_dist.max())] if len(rs_dist) else None,
                **spread(rs_imgs, perceptual),
            },
        }
        rows.append(row)
        print(
            f"image {i}: e-GLASS {t_eg:.2f}s ({res.num_feasible}/{res.latents.shape[0]} feasible, "
            f"spread px {row['eglass']['pixel_rms']:.4f} perc {row['eglass']['perceptual']:.4f}) | "
            f"restarts {t_rs:.2f}s ({rs.num_feasible}/{rs.latents.shape[0]} feasible, "
            f"spread px {row['restarts']['pixel_rms']:.4f} perc {row['restarts']['perceptual']:.4f})",
            flush=True,
        )
        res.save_grid(out / f"eglass_grid_{i}.png", nrow=11)
        res.save_diagnostic(out / f"eglass_fig1_{i}.png")
        if len(rs_imgs):
            save_image_grid(torch.cat([x_true, rs_imgs]), out / f"restarts_grid_{i}.png", nrow=11)

    def mean(method: str, key: str) -> float:
        vals = [r[method][key] for r in rows if not math.isnan(float(r[method][key]))]
        return sum(vals) / len(vals) if vals else float("nan")

    summary = {
        "prior": prior_info,
        "task": args.task,
        "data": args.data,
        "num_images": len(rows),
        "num_solutions": args.num_solutions,
        "feasibility_threshold": args.threshold,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("prior",)},
        "mean": {
            m: {k: mean(m, k) for k in ("seconds", "feasible", "pixel_rms", "perceptual")}
            for m in ("eglass", "restarts")
        },
        "speedup_restarts_over_eglass": mean("restarts", "seconds") / max(mean("eglass", "seconds"), 1e-12),
        "images": rows,
    }
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    print(f"report: {exploration_report(out)}")
    print(
        json.dumps(
            {k: summary[k] for k in ("prior", "task", "mean", "speedup_restarts_over_eglass")}, indent=2
        )
    )
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", help="prior checkpoint (lcm.load_prior); omitted: --tiny-prior")
    p.add_argument(
        "--tiny-prior", action="store_true", help="fit a tiny VAE stand-in prior (default w/o --prior)"
    )
    p.add_argument("--tiny-latent", type=int, default=16)
    p.add_argument("--tiny-steps", type=int, default=1500)
    p.add_argument("--task", choices=("sr", "inpaint"), default="sr")
    p.add_argument("--data", choices=("fashion-mnist", "samples"), default="fashion-mnist")
    p.add_argument("--num-images", type=int, default=3)
    p.add_argument("--num-solutions", type=int, default=10)
    p.add_argument("--threshold", type=float, default=1e-2, help="feasibility threshold (paper: 1e-2)")
    p.add_argument("--init-stop", type=float, default=1e-3, help="stop distance of e-GLASS's initial fit")
    p.add_argument("--init-tries", type=int, default=5)
    p.add_argument(
        "--restart-stop",
        type=float,
        default=None,
        help="stop distance of each restart (default: --init-stop, the same solve as e-GLASS's initial fit; "
        "PULSE-like loose stopping: the feasibility threshold)",
    )
    p.add_argument("--steps", type=int, default=500, help="max Adam steps per latent fit")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--restart-batch", type=int, default=10)
    p.add_argument("--max-rounds", type=int, default=10)
    p.add_argument("--k-first", type=int, default=2, help="first K (1-based)")
    p.add_argument("--num-k", type=int, default=10)
    p.add_argument("--etas", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0])
    p.add_argument("--corr-threshold", type=float, default=0.1)
    p.add_argument(
        "--hx",
        choices=("mse", "offline"),
        default="mse",
        help="d_X of H_X: pixel MSE or the offline EfficientNet-Lite0 distance (paper: LPIPS; no weights)",
    )
    p.add_argument(
        "--top-y", type=int, default=None, help="size of the eligible H_Y set J (default: --y-energy)"
    )
    p.add_argument("--y-energy", type=float, default=0.99, help="J holds this fraction of trace(H_Y)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument(
        "--repeats", type=int, default=1, help="time each method this many times, report the fastest"
    )
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
