"""``python -m benchmarks.priors``: held-out reconstruction by latent optimisation and LCM step throughput.

1. Reconstruction: on Fashion-MNIST *test* images (never seen in training), the best PSNR that latent
   optimisation alone reaches (LCM paper eqs. 4-5 with E = MSE to the clean image) for each given
   prior. The LCM paper's claim: LCM >= GLO > GAN.
2. Throughput of LCM training steps with the batched latent ConvNets (grouped convolutions) against
   a per-image Python loop over the same ConvNets.

    python -m benchmarks.priors --wgangp runs/wgangp/checkpoints/last.ckpt \
        --glo runs/glo/checkpoints/last.ckpt --lcm runs/lcm/checkpoints/last.ckpt --num-images 64 --steps 300

Results are printed and written to ``outputs/lcm_benchmark.json`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from datamodules.io.atomic import atomic_write_bytes
from inversion.metrics import psnr
from lcm import Prior, lap_l1, load_prior
from lcm.runtime import tune_allocator

# Adam step sizes for latent optimisation, per latent kind (the box of LCM is [-0.01, 0.01])
DEFAULT_LR = {"gaussian": 0.15, "sphere": 0.05, "convnet": 0.001}


def best_reconstruction_psnr(
    prior: Prior,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    steps: int = 300,
    lr: float | None = None,
    restarts: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Best PSNR over ``steps`` of Adam on the latent alone (projected after each step), per image.

    Shape:
        - images: ``(B, C, H, W)`` in [0, 1]; labels ``(B,)`` or None. Output ``(B,)``.
    """
    prior.check_image_shape(images.shape)
    prior.eval().requires_grad_(False)
    lr = DEFAULT_LR[prior.latent_kind] if lr is None else lr
    g = torch.Generator().manual_seed(seed)
    best = torch.full((images.shape[0],), -math.inf)
    for _ in range(restarts):
        latent = prior.sample_latent(images.shape[0], generator=g).requires_grad_(True)
        opt = torch.optim.Adam([latent], lr=lr)
        for _ in range(steps):
            out = prior(latent, labels)
            # sum of per-image losses: each latent sees only its own image
            loss = F.mse_loss(out, images, reduction="sum")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                latent.copy_(prior.project_latent(latent))
                best = torch.maximum(best, psnr(prior(latent, labels), images))
    return best


def lcm_step_throughput(prior: Prior, batch: int = 32, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Images/s of an LCM training step (latent ConvNets -> generator -> Lap-L1 + MSE -> backward to
    phi and theta) with the batched latent ConvNets, and with a per-image Python loop over them."""
    if prior.latent_kind != "convnet":
        raise ValueError(f"throughput needs an LCM prior (latent_kind 'convnet'), got {prior.latent_kind!r}")
    net, gen = prior.latent_net, prior.generator
    gen.train().requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    phi = prior.sample_latent(batch, generator=g)
    x = torch.rand(batch, *prior.image_shape, generator=g) * 2 - 1

    def step(batched: bool) -> None:
        p = phi.clone().requires_grad_(True)
        if batched:
            z = net(p, prior.noise)
        else:
            z = torch.stack([net.forward_single(p[i], prior.noise) for i in range(batch)])
        out = gen(z)
        loss = lap_l1(out, x) + F.mse_loss(out, x)
        loss.backward()

    def latent_only(batched: bool) -> None:
        p = phi.clone().requires_grad_(True)
        z = net(p, prior.noise) if batched else torch.stack([net.forward_single(q, prior.noise) for q in p])
        z.square().sum().backward()

    result = {}
    for name, fn in (("train_step", step), ("latent_convnets_only", latent_only)):
        for batched in (True, False):
            fn(batched)  # warm-up
            t = time.perf_counter()
            for _ in range(repeats):
                fn(batched)
            result[f"{name}_{'batched' if batched else 'loop'}_images_per_s"] = (
                batch * repeats / (time.perf_counter() - t)
            )
        result[f"{name}_speedup"] = (
            result[f"{name}_batched_images_per_s"] / result[f"{name}_loop_images_per_s"]
        )
    gen.eval().requires_grad_(False)
    return result


def _test_images(n: int, resolution: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from datamodules import FashionMNISTDataset

    data = FashionMNISTDataset(split="test", resolution=resolution)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    items = [data[int(i)] for i in idx]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.priors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wgangp", help="WGAN-GP checkpoint")
    parser.add_argument("--glo", help="GLO checkpoint")
    parser.add_argument("--lcm", help="LCM checkpoint (also used for the throughput part)")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument(
        "--lr-multipliers",
        default="0.3,1,3",
        help="Adam step sizes tried per prior, as multiples of its default (best per image is kept)",
    )
    parser.add_argument("--batch", type=int, default=32, help="batch size of the throughput measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default="outputs/lcm_benchmark.json")
    args = parser.parse_args(argv)
    ckpts = {k: getattr(args, k) for k in ("wgangp", "glo", "lcm") if getattr(args, k)}
    if not ckpts:
        parser.error("give at least one of --wgangp, --glo, --lcm")
    results: dict = {"num_images": args.num_images, "steps": args.steps, "threads": torch.get_num_threads()}
    for name, path in ckpts.items():
        prior = load_prior(path)
        images, labels = _test_images(args.num_images, prior.image_shape[-1], args.seed)
        if prior.image_shape[0] != images.shape[1]:
            raise ValueError(f"{name} prior has {prior.image_shape[0]} channels; Fashion-MNIST has 1")
        t = time.perf_counter()
        best = torch.full((images.shape[0],), -math.inf)
        per_lr = {}
        for mult in (float(m) for m in args.lr_multipliers.split(",")):
            lr = DEFAULT_LR[prior.latent_kind] * mult
            got = best_reconstruction_psnr(
                prior, images, labels if prior.num_classes else None, args.steps, lr, args.restarts, args.seed
            )
            per_lr[f"{lr:g}"] = round(float(got.mean()), 2)
            best = torch.maximum(best, got)
        results[name] = {
            "checkpoint": str(path),
            "latent_kind": prior.latent_kind,
            "latent_dim": math.prod(prior.latent_shape),
            "psnr_mean": float(best.mean()),
            "psnr_std": float(best.std()),
            "psnr_mean_per_lr": per_lr,
            "seconds": time.perf_counter() - t,
        }
        print(
            f"{name:7s} latent {prior.latent_kind:8s} dim {math.prod(prior.latent_shape):6d}: best PSNR "
            f"{best.mean():.2f} +- {best.std():.2f} dB over {args.num_images} test images "
            f"({results[name]['seconds']:.0f} s; mean per Adam lr {per_lr})",
            flush=True,
        )
    if not args.skip_throughput:
        if "lcm" in ckpts:
            prior = load_prior(ckpts["lcm"])
        else:
            from lcm import LCM

            prior = LCM(num_images=None).to_prior()
        tp = lcm_step_throughput(prior, args.batch)
        results["throughput"] = {"batch": args.batch, **tp}
        print(
            f"LCM train step, batch {args.batch}: batched {tp['train_step_batched_images_per_s']:.1f} img/s, "
            f"per-image loop {tp['train_step_loop_images_per_s']:.1f} img/s, "
            f"ratio {tp['train_step_speedup']:.2f}x; "
            f"latent ConvNets alone: ratio {tp['latent_convnets_only_speedup']:.2f}x",
            flush=True,
        )
    atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())
    from datamodules.io.html import json_report

    print(f"report: {json_report(Path(args.out).parent, 'Prior benchmark (benchmarks.priors)', results)}")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
