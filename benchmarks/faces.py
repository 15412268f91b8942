"""Restoration with a pretrained generator someone else trained: the 64x64 face DCGAN (``dcgan-faces-64``)
on real face photos (:mod:`datamodules.faces`) and on its own held-out samples (the in-range set,
:func:`inversion.cli.samples.held_out_samples`), with the IAGAN claims rows.

    python -m benchmarks.faces --scale 0.25 --samples 3 --out outputs/bench_faces   # 1 thread

For each set (``real``, ``in-range``), task and method: PSNR / SSIM (mean over the images; inpainting
also PSNR inside the hole) and seconds per image. Methods: CSGM, IAGAN (their ``-BP``: IAGAN eq. 10 on
the same fit, ``inversion.operators.back_project`` with ``--bp``, which is what
``restore(..., "<method>_bp", bp=...)`` applies after the same fit), DGP (DGP Table 4's MSE variant,
preset ``mse``: this prior has no critic), TV and DIP.
Step counts are the project's presets times ``--scale`` (CSGM 500 steps x 5 restarts, IAGAN + 300
joint steps, DGP 5 x 40 steps after 500 candidates, TV 2000, DIP 500).

``--variants code before`` runs CSGM and IAGAN (and their -BP rows) under both rule sets at the same
step counts, images and threads: ``code`` (IAGAN's code, the default since issue 29: the [-1, 1] MSE, the
last iterate and the code's restart pick, generator lr 1e-3, ``bp`` code, SR's A on a zero-padded image)
and ``before`` (the rules before issue 29: [0, 1] MSE, best iterate, both lrs 1e-4, ``bp`` paper, SR
reflect-padded); ``before`` rows are labelled ``<method>@before``. Task ``cs_iagan`` is IAGAN's own
Fourier sampling (:class:`inversion.operators.IAGANFourier`, ``rand_mask(64, 8.5)``: 30%).

The claims (IAGAN, Abu Hussein et al. 2020), separately for each set:

* ``IAGAN > CSGM`` on every task (Fig. 2, Tables 1-3);
* ``BP helps at low noise`` (IAGAN eq. 10 and Sec. 5): CSGM-BP > CSGM and IAGAN-BP > IAGAN on the
  noiseless tasks, BP helps IAGAN less than CSGM ("the BP step is less effective"), and BP gains less
  at noise 10/255 than without noise (A^+ amplifies the noise);
* ``CS over m/n``: IAGAN > CSGM at every ratio, and IAGAN's gain over CSGM grows with m/n (Fig. 2:
  CSGM reaches a plateau, IAGAN keeps improving). Subsampled Fourier CS (IAGAN Table 1's operator): a
  Gaussian matrix at 64x64x3 would hold 12288 x m entries.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from datamodules.faces import FacesDataset
from inversion import restore
from inversion.cli.samples import held_out_samples
from inversion.dgp import load_preset
from inversion.metrics import masked_psnr, psnr, ssim
from inversion.operators import CompressedSensing, IAGANFourier, Inpainting, SuperResolution, back_project
from lcm import load_prior
from lcm.runtime import tune_allocator

NOISE = 10 / 255
ALL_METHODS = ("csgm", "csgm_bp", "iagan", "iagan_bp", "dgp", "tv", "dip")


VARIANTS = {  # rule set -> (SR padding, restore options of CSGM / IAGAN, bp of the -BP rows)
    "code": ("zeros", {"variant": "code"}, {"iagan_generator_lr": 1e-3}, "code"),
    "before": ("reflect", {"variant": "paper"}, {"iagan_generator_lr": 1e-4}, "paper"),
}


def tasks(main: list[str], ratios: list[float]) -> dict[str, tuple]:
    """name -> (operator factory of an SR padding, methods run on it)."""
    out = {
        "sr4": (lambda pad: SuperResolution(4, kernel="bicubic", padding=pad), ALL_METHODS),
        "inpaint_center": (lambda pad: Inpainting("center", box_size=0.390625), ALL_METHODS),
        "sr4_noisy": (
            lambda pad: SuperResolution(4, kernel="bicubic", sigma=NOISE, padding=pad),
            ("csgm", "csgm_bp", "iagan", "iagan_bp"),
        ),
        "cs_iagan": (lambda pad: IAGANFourier(8.5, seed=2), ("csgm", "csgm_bp", "iagan", "iagan_bp")),
    }
    for r in ratios:
        methods = ALL_METHODS if math.isclose(r, 0.1) else ("csgm", "csgm_bp", "iagan", "iagan_bp")
        out[f"cs_{r:g}"] = (lambda pad, r=r: CompressedSensing(ratio=r, kind="fourier"), methods)
    return {k: v for k, v in out.items() if k in main or (k.startswith("cs_") and k != "cs_iagan")}


def options(method: str, scale: float, variant: str = "code") -> dict:
    s = lambda n: max(1, round(n * scale))  # noqa: E731
    _, rules, iagan_lrs, _ = VARIANTS[variant]
    csgm = {"csgm_steps": s(500), "restarts": 5 if scale >= 0.5 else 2, "csgm_lr": 0.1, **rules}
    return {
        "csgm": csgm,
        "iagan": {**csgm, "iagan_steps": s(300), "iagan_latent_lr": 1e-4, **iagan_lrs},
        "dgp": {  # preset mse (DGP Table 4's MSE variant) with its iterations scaled
            "preset": "mse",
            "n_candidates": 500,
            "stages": [{**st, "iterations": s(st["iterations"])} for st in load_preset("mse")["stages"]],
        },
        "tv": {"tv_steps": s(2000)},
        "dip": {"dip_steps": s(500)},
    }[method]


def scores(img: torch.Tensor, x: torch.Tensor, op) -> dict:
    out = {"psnr": psnr(img, x).tolist(), "ssim": ssim(img, x).tolist()}
    if isinstance(op, Inpainting):
        out["hole_psnr"] = masked_psnr(img, x, 1.0 - op.mask_for(x)).tolist()
    return out


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    prior = load_prior(args.prior)
    real = torch.stack([d["image"] for d in FacesDataset(resolution=prior.image_shape[-1])])
    sets = {"real": real, "in-range": held_out_samples(prior, args.samples)}
    rows = []
    variants = getattr(args, "variants", None) or ["code"]
    for task, (make_op, methods) in tasks(args.tasks, args.ratios).items():
        for set_name, x in sets.items():
            for method in [m for m in methods if not m.endswith("_bp") and m in args.methods]:
                for variant in variants if method in ("csgm", "iagan") else ["code"]:
                    pad, _, _, bp = VARIANTS[variant]
                    op = make_op(pad)
                    y = op(x, generator=torch.Generator().manual_seed(0)) if op.sigma else op.A(x)
                    suffix = "" if variant == "code" else f"@{variant}"
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        res = restore(y, op, prior, method, seed=0, **options(method, args.scale, variant))
                    sec = (time.perf_counter() - t) / len(x)
                    raw = res.raw.detach()
                    out = {method + suffix: raw.clamp(0, 1)}
                    if f"{method}_bp" in methods and f"{method}_bp" in args.methods:
                        out[f"{method}_bp{suffix}"] = back_project(raw, y, op, args.bp or bp).clamp(0, 1)
                    for name, img in out.items():
                        row = {
                            "set": set_name,
                            "task": task,
                            "method": name,
                            "seconds": sec,
                            **scores(img, x, op),
                        }
                        rows.append(row)
                        print(
                            f"[faces] {set_name:8s} {task:14s} {name:16s} PSNR {mean(row['psnr']):6.2f} "
                            f"SSIM {mean(row['ssim']):.3f}  {sec:6.1f} s/image",
                            flush=True,
                        )
                    _save(rows, args)
    return rows


def mean(v) -> float:
    return sum(v) / len(v)


def _save(rows, args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    os.replace(tmp, out / "results.json")


def _get(rows, s, task, method, key="psnr"):
    for r in rows:
        if (r["set"], r["task"], r["method"]) == (s, task, method):
            return r[key]
    return None


def claims(rows: list[dict]) -> list[dict]:
    """The IAGAN claim rows, per set: what the paper says, what we measured, holds or not."""
    out = []
    sets = sorted({r["set"] for r in rows}, key=["real", "in-range"].index)
    all_tasks = list(dict.fromkeys(r["task"] for r in rows))
    for s in sets:
        for task in all_tasks:
            a, b = _get(rows, s, task, "iagan"), _get(rows, s, task, "csgm")
            if a and b:
                d = [p - q for p, q in zip(a, b, strict=True)]
                out.append(_claim(s, "IAGAN > CSGM", task, d))
        for task in [t for t in all_tasks if not t.endswith("_noisy")]:
            gain = {}
            for m in ("csgm", "iagan"):
                a, b = _get(rows, s, task, f"{m}_bp"), _get(rows, s, task, m)
                if a and b:
                    gain[m] = [p - q for p, q in zip(a, b, strict=True)]
                    out.append(
                        _claim(s, f"BP helps at low noise: {m.upper()}-BP > {m.upper()}", task, gain[m])
                    )
            if len(gain) == 2:  # "for IAGAN, the BP step is less effective"
                d = [p - q for p, q in zip(gain["csgm"], gain["iagan"], strict=True)]
                out.append(_claim(s, "BP helps IAGAN less than CSGM (CSGM's BP gain - IAGAN's)", task, d))
            noisy = f"{task}_noisy"
            for m in ("csgm", "iagan"):  # A^+ amplifies the noise: "BP is useful as long as the noise is low"
                a, b = _get(rows, s, noisy, f"{m}_bp"), _get(rows, s, noisy, m)
                if a and b and m in gain:
                    d = [g - (p - q) for g, p, q in zip(gain[m], a, b, strict=True)]
                    what = f"BP helps at low noise: {m.upper()}'s BP gain noiseless - at 10/255"
                    out.append(_claim(s, what, task, d))
        ratios = sorted(float(t[3:]) for t in all_tasks if t.startswith("cs_"))
        gains = []
        for r in ratios:
            a, b = _get(rows, s, f"cs_{r:g}", "iagan"), _get(rows, s, f"cs_{r:g}", "csgm")
            if a and b:
                gains.append((r, mean(a) - mean(b)))
        if len(gains) >= 2:
            grows = all(g2 >= g1 for (_, g1), (_, g2) in itertools.pairwise(gains))
            txt = ", ".join(f"{r:g}: {g:+.2f}" for r, g in gains)
            out.append({"set": s, "claim": "CS over m/n: IAGAN's gain over CSGM grows with m/n", "task": "cs",
                        "measured": txt, "holds": grows})  # fmt: skip
    return out


def _claim(s, claim, task, d) -> dict:
    """A claim that the paired differences ``d`` are positive on average."""
    wins = sum(x > 0 for x in d)
    measured = f"{mean(d):+.2f} dB (> 0 on {wins} of {len(d)})"
    return {"set": s, "claim": claim, "task": task, "measured": measured, "holds": mean(d) > 0}


def table(rows: list[dict]) -> str:
    lines = [
        "| set | task | method | PSNR dB | SSIM | hole PSNR dB | s/image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        hole = f"{mean(r['hole_psnr']):.2f}" if "hole_psnr" in r else ""
        lines.append(
            f"| {r['set']} | {r['task']} | {r['method']} | {mean(r['psnr']):.2f} | {mean(r['ssim']):.3f} | "
            f"{hole} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def claims_table(rows: list[dict]) -> str:
    lines = ["| set | claim | task | measured | holds |", "|---|---|---|---|---|"]
    for c in claims(rows):
        lines.append(
            f"| {c['set']} | {c['claim']} | {c['task']} | {c['measured']} | {'yes' if c['holds'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(prog="python -m benchmarks.faces", description=__doc__.split("\n\n")[0])
    p.add_argument("--prior", default="dcgan-faces-64", help="a named prior or a generator file")
    p.add_argument("--samples", type=int, default=3, help="held-out samples of the prior (in-range set)")
    p.add_argument("--tasks", nargs="+", default=["sr4", "inpaint_center", "sr4_noisy"])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.3, 0.5], help="CS ratios m/n")
    p.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every step count")
    p.add_argument(
        "--bp",
        choices=("code", "paper", "exact"),
        default=None,
        help="A-dagger of the -BP rows (default: the variant's: code, IAGAN main.py's; before, the paper's)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=["code"],
        choices=sorted(VARIANTS),
        help="rule sets of the CSGM / IAGAN rows (code: IAGAN's code; before: before issue 29)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="outputs/bench_faces")
    p.add_argument("--table", action="store_true", help="print the tables of an existing results.json")
    args = p.parse_args(argv)
    t = time.perf_counter()
    if args.table:
        saved = json.loads((Path(args.out) / "results.json").read_text())
        rows, args = saved["rows"], argparse.Namespace(**saved["args"])
    else:
        rows = run(args)
    print(table(rows), claims_table(rows), sep="\n\n")
    bp = getattr(args, "bp", "exact") or "the variant's"  # (runs before --bp: the exact A-dagger)
    variants = " / ".join(getattr(args, "variants", None) or ["before"])
    what = (
        f"{args.threads} thread(s), scale {args.scale}, {args.samples} in-range samples, bp {bp}, {variants}"
    )
    print(f"\n[faces] {time.perf_counter() - t:.0f} s; {what}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
