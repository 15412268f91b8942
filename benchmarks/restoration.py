"""``python -m benchmarks.restoration``: speed and quality of CSGM / IAGAN (+ back-projection).

1. Speed: images/s of CSGM one image at a time against all images (x restarts) in one batch, and
   of IAGAN with sequential private generator copies against ``vmap``-batched copies.
2. Quality (layout of IAGAN Tables 1-3): PSNR / SSIM of the pseudo-inverse ``A^dagger y``, CSGM,
   CSGM-BP, IAGAN and IAGAN-BP for SR x4 and compressed sensing 0.3 / 0.5 (subsampled Fourier), each
   noiseless and with noise 10/255, on Fashion-MNIST test images.

``--prior`` is a checkpoint of ``python -m lcm fit`` (or a registered prior factory); ``--prior toy`` fits
the toy blob prior of :mod:`lcm.toy` and uses held-out blob images instead (a smoke run).
Writes ``results.md`` and ``results.json`` under ``--output``::

    python -m benchmarks.restoration --prior runs/wgangp/checkpoints/last.ckpt --n-images 8
    python -m benchmarks.restoration --prior toy --n-images 2 --csgm-steps 20 --iagan-steps 10   # smoke
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import torch

from datamodules.io.atomic import atomic_write_bytes
from inversion import get_method, restore
from inversion.operators import CompressedSensing, SuperResolution, back_project
from lcm.runtime import tune_allocator

__all__ = ["main", "run"]

NOISE = 10 / 255


def _tasks(names: list[str], sigma: float) -> dict:
    out = {}
    for n in names:
        if n == "sr4":
            out[n] = SuperResolution(factor=4, kernel="bicubic", sigma=sigma)
        elif n.startswith("cs_"):
            out[n] = CompressedSensing(ratio=float(n[3:]), kind="fourier", sigma=sigma)
        else:
            raise ValueError(f"unknown task {n!r}: use sr4, cs_0.3, cs_0.5 (cs_<ratio>)")
    return out


def _data(prior_spec: str, n: int, seed: int):
    if prior_spec == "toy":
        from lcm.toy import blob_images, fit_toy_prior

        prior, _ = fit_toy_prior(steps=400, seed=seed)
        return (
            prior,
            blob_images(n, generator=torch.Generator().manual_seed(10_000 + seed)),
            "toy blobs 16x16",
        )
    from datamodules import FashionMNISTDataset
    from inversion.cli import load_prior_spec

    prior = load_prior_spec(prior_spec)
    c, h, _ = prior.image_shape
    if c != 1:
        raise ValueError(
            f"the Fashion-MNIST benchmark needs a 1-channel prior, got image_shape {prior.image_shape}"
        )
    ds = FashionMNISTDataset("test", resolution=h, resize_mode="pad" if h >= 28 else "resize", limit=n)
    return prior, torch.stack([ds[i]["image"] for i in range(len(ds))]), f"Fashion-MNIST test {h}x{h}"


def _options(method: str, opts: dict) -> dict:
    """The benchmark's CSGM / IAGAN options that ``method``'s config has (CSGM's are IAGAN's first phase;
    IAGAN's joint-phase options are not CSGM's)."""
    names = {f.name for f in fields(get_method(method).config)}
    return {k: v for k, v in opts.items() if k in names}


def _speed(prior, x, opts: dict, n_speed: int) -> list[dict]:
    op = SuperResolution(factor=4, kernel="bicubic")
    x = x[:n_speed]
    y = op.A(x)
    rows = []
    t = time.perf_counter()
    for i in range(len(x)):
        restore(y[i : i + 1], op, prior, "csgm", seed=[i], **_options("csgm", opts))
    rows.append(
        {
            "method": "csgm",
            "variant": "one image at a time",
            "images_per_s": len(x) / (time.perf_counter() - t),
        }
    )
    t = time.perf_counter()
    restore(y, op, prior, "csgm", seed=list(range(len(x))), **_options("csgm", opts))
    rows.append(
        {
            "method": "csgm",
            "variant": "batched (images x restarts)",
            "images_per_s": len(x) / (time.perf_counter() - t),
        }
    )
    for batching in ("sequential", "vmap"):
        t = time.perf_counter()
        restore(y, op, prior, "iagan", seed=list(range(len(x))), batching=batching, **opts)
        rows.append(
            {
                "method": "iagan",
                "variant": f"{batching} private copies",
                "images_per_s": len(x) / (time.perf_counter() - t),
            }
        )
    return rows


def _quality(prior, x, task_names: list[str], opts: dict) -> list[dict]:
    from inversion import metrics as M

    rows = []
    for sigma in (0.0, NOISE):
        for name, op in _tasks(task_names, sigma).items():
            y = op(x, generator=torch.Generator().manual_seed(0))
            seeds = list(range(len(x)))
            res = {"pseudo-inverse": op.A_dagger(y).clamp(0, 1)}
            for meth in ("csgm", "iagan"):
                r = restore(y, op, prior, meth, seed=seeds, **_options(meth, opts))
                res[meth.upper()] = r.images
                res[f"{meth.upper()}-BP"] = back_project(r.raw, y, op, "paper").clamp(0, 1)
            for meth, img in res.items():
                rows.append(
                    {
                        "task": name,
                        "noise": "10/255" if sigma else "0",
                        "method": meth,
                        "psnr": float(M.psnr(img, x).mean()),
                        "ssim": float(M.ssim(img, x).mean()),
                    }
                )
    return rows


def _markdown(speed: list[dict], quality: list[dict], meta: dict) -> str:
    lines = [f"# Inversion benchmark ({meta['data']}, {meta['n_images']} images, {meta['device']})", ""]
    lines += [f"Options: `{json.dumps(meta['options'])}`", "", "## Speed (SR x4)", ""]
    lines += ["| method | variant | images/s |", "|---|---|---|"]
    lines += [f"| {r['method']} | {r['variant']} | {r['images_per_s']:.3f} |" for r in speed]
    lines += ["", "## Quality: PSNR (dB) / SSIM, mean over images (IAGAN Tables 1-3 layout)", ""]
    cols = sorted({(r["task"], r["noise"]) for r in quality}, key=lambda c: (c[0], c[1] != "0"))
    lines.append("| method | " + " | ".join(f"{t}, noise {s}" for t, s in cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    for meth in dict.fromkeys(r["method"] for r in quality):
        cells = []
        for t, s in cols:
            r = next(r for r in quality if r["method"] == meth and r["task"] == t and r["noise"] == s)
            cells.append(f"{r['psnr']:.2f} / {r['ssim']:.3f}")
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(
    prior: str = "toy",
    n_images: int = 8,
    n_speed: int = 4,
    tasks: list[str] | None = None,
    csgm_steps: int = 500,
    restarts: int = 5,
    iagan_steps: int = 300,
    iagan_latent_lr: float = 1e-4,
    iagan_generator_lr: float = 1e-4,
    output: str = "outputs/inversion_benchmark",
    seed: int = 0,
    num_threads: int | None = None,
    skip_speed: bool = False,
) -> dict:
    """Run the speed and quality benchmarks and write ``results.md`` / ``results.json``.

    Args:
        prior: checkpoint path, a registered prior factory, or ``toy`` (toy blob prior and images).
        n_images: test images in the quality table.
        n_speed: images in the speed measurement.
        tasks: subset of ``sr4``, ``cs_0.3``, ``cs_0.5``.
        csgm_steps, restarts, iagan_steps, iagan_latent_lr, iagan_generator_lr: method options
            (see :class:`inversion.MethodConfig`).
        output: output folder.
        seed: seed of the toy prior / images.
        num_threads: torch intra-op threads.
        skip_speed: only the quality table.
    """
    if num_threads:
        torch.set_num_threads(num_threads)
    tasks = tasks or ["sr4", "cs_0.3", "cs_0.5"]
    pri, x, data = _data(prior, n_images, seed)
    opts = {
        "csgm_steps": csgm_steps,
        "restarts": restarts,
        "iagan_steps": iagan_steps,
        "iagan_latent_lr": iagan_latent_lr,
        "iagan_generator_lr": iagan_generator_lr,
    }
    speed = [] if skip_speed else _speed(pri, x, opts, n_speed)
    quality = _quality(pri, x, tasks, opts)
    meta = {
        "data": data,
        "n_images": len(x),
        "device": f"CPU, {torch.get_num_threads()} thread(s)",
        "options": opts,
        "prior": prior,
    }
    out = Path(output)
    md = _markdown(speed, quality, meta)
    atomic_write_bytes(out / "results.md", md.encode())
    atomic_write_bytes(
        out / "results.json",
        json.dumps({"meta": meta, "speed": speed, "quality": quality}, indent=1).encode(),
    )
    print(md)
    from inversion.cli.report import markdown_report

    print(f"report: {markdown_report(out, title='CSGM / IAGAN benchmark')}")
    return {"speed": speed, "quality": quality}


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.restoration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--prior", default="toy", help="checkpoint path, a registered prior factory, or toy")
    p.add_argument("--n-images", type=int, default=8, help="test images in the quality table")
    p.add_argument("--n-speed", type=int, default=4, help="images in the speed measurement")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of sr4, cs_0.3, cs_0.5 (cs_<ratio>)")
    p.add_argument("--csgm-steps", type=int, default=500)
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--iagan-steps", type=int, default=300)
    p.add_argument("--iagan-latent-lr", type=float, default=1e-4)
    p.add_argument("--iagan-generator-lr", type=float, default=1e-4)
    p.add_argument("--output", default="outputs/inversion_benchmark", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the toy prior / images")
    p.add_argument("--num-threads", type=int, default=None, help="torch intra-op threads")
    p.add_argument("--skip-speed", action="store_true", help="only the quality table")
    return run(**vars(p.parse_args(argv)))


if __name__ == "__main__":  # pragma: no cover
    main()
