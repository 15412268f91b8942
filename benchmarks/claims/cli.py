"""``python -m benchmarks.claims``: measure every claim and write ``claims.md`` / ``claims.json``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.claims.measure import measure
from benchmarks.claims.papers import CLAIMS
from benchmarks.claims.runner import Runner
from benchmarks.claims.table import judge, markdown
from datamodules.io.atomic import atomic_write_bytes
from lcm.runtime import tune_allocator

__all__ = ["main", "run"]


def run(
    output: str = "outputs/claims",
    images: int = 64,
    smoke: bool = False,
    priors: list[str] | None = None,
    scale: float | None = None,
    seed: int = 0,
    wait: bool = False,
    eglass_images: int = 8,
    rows: list[str] | None = None,
) -> dict:
    """Measure every claim (or only the claim keys ``rows``) and write ``claims.md`` / ``claims.json`` under
    ``output``; a run of some rows writes ``claims-<key>+<key>.md`` / ``.json`` instead, so that it never
    overwrites the full table (the method runs' caches are shared)."""
    torch.manual_seed(seed)
    if smoke:
        images, scale = min(images, 2), 0.01 if scale is None else scale
    scale = 1.0 if scale is None else scale
    if images < 1 or not scale > 0:
        raise ValueError(f"images must be >= 1 and scale > 0, got {images}, {scale}")
    r = Runner(Path(output), images, smoke, priors or [], scale, seed, wait, 2 if smoke else eglass_images)
    t0 = time.perf_counter()
    values = measure(r, rows)
    summary = {c.key: judge(c, values[c.key]) for c in CLAIMS if c.key in values}
    meta = {
        "images": images,
        "eglass_images": min(images, r.eglass_images),
        "scale": scale,
        "smoke": smoke,
        "feature_metric": r.feature_metric()[0],
        "seconds": time.perf_counter() - t0,
        "priors": r.used_priors(),
        "rows": list(summary),
    }
    md = markdown(summary, meta)
    out = Path(output)
    stem = "claims" if rows is None else "claims-" + "+".join(summary)
    atomic_write_bytes(out / f"{stem}.json", json.dumps({"meta": meta, "claims": summary}, indent=1).encode())
    atomic_write_bytes(out / f"{stem}.md", md.encode())
    if rows is None:  # report.html is the full table's
        from inversion.cli.report import markdown_report

        markdown_report(out, "claims.md", title="The papers' claims, measured")
    print(md, flush=True)
    return {"meta": meta, "claims": summary}


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    import benchmarks.claims

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.claims",
        description=benchmarks.claims.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--output", default="outputs/claims", help="folder for claims.md / claims.json and the caches"
    )
    p.add_argument("--images", type=int, default=64, help="held-out test images per task (smoke: 2)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny priors trained on the fly, 2 images, steps x0.01"
    )
    p.add_argument(
        "--priors", nargs="*", default=[], help="folders holding <name>/last.ckpt (e.g. /work/priors)"
    )
    p.add_argument(
        "--scale", type=float, default=None, help="multiply every step count (default 1; smoke 0.01)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for priors still training in a --priors folder (DIR/<name>/ without DIR/DONE-<name> "
        "or a training.json that says done)",
    )
    p.add_argument("--eglass-images", type=int, default=8, help="images of the e-GLASS rows (each is slow)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument(
        "--rows",
        nargs="+",
        choices=[c.key for c in CLAIMS],
        default=None,
        metavar="KEY",
        help="measure only these claim rows (and the method runs behind them); written to "
        "claims-<KEY>+<KEY>.md / .json. Keys: " + ", ".join(c.key for c in CLAIMS),
    )
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    return run(a.output, a.images, a.smoke, a.priors, a.scale, a.seed, a.wait, a.eglass_images, a.rows)
