"""``python -m benchmarks.cri``: CRI's ablations (Fig. 5, Table 4) and CRI vs IAGAN / CSGM
(/ DGP when ``inversion.dgp`` is importable) on the same Fashion-MNIST test images and tasks.

1. Clusters (CRI Fig. 5): N = 1, 5, 10, 15 KMeans centroids of ONE sample set (same seed), full CRI;
   also the quality of the chosen start image alone.
2. Offset regulariser (CRI Table 4): ``||w_off||_2`` vs ``||w_off||_1`` vs none (N = 10).
3. Methods: CSGM, IAGAN, CRI (+ DGP) per task (``inpaint``: centre hole 50/128 of the side;
   ``sr4``: bicubic x4). Colorization needs an RGB prior; the Fashion-MNIST priors are gray.

Metrics per method (mean over images): PSNR, SSIM, the offline perceptual distance
(:class:`inversion.metrics.OfflinePerceptualDistance`, EfficientNet-Lite0; NOT LPIPS; CRI's loss
uses the same network when ``distance="offline"``, a bias in CRI's favour on that column only),
masked PSNR inside the hole (inpainting), seconds. Class-conditional priors get the true test labels,
or, with ``--classifier``, labels inferred from the degraded input (its accuracy is reported).
Writes ``results.md`` and ``results.json`` under ``--output`` (atomically, after every row)::

    python -m benchmarks.cri --prior runs/wgangp_cond/checkpoints/last.ckpt --n-images 8
    python -m benchmarks.cri --sections variants --variants '{tune_steps: 0}' '{distance: critic}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from datamodules.io.atomic import atomic_write_bytes
from inversion import restore
from inversion.operators import Inpainting, SuperResolution
from lcm.runtime import tune_allocator

__all__ = ["main", "run"]

#: DGP's own presets per task (configs/inversion/dgp/); SR uses DGP's default schedule (its Table 9)
DGP_PRESETS = {"inpaint": {"preset": "inpainting"}}


def _task(name: str):
    if name == "inpaint":
        return Inpainting(mask_kind="center", box_size=50 / 128)
    if name == "sr4":
        return SuperResolution(factor=4, kernel="bicubic")
    raise ValueError(f"unknown task {name!r}: use inpaint or sr4 (colorization needs an RGB prior)")


def _data(prior_spec: str, n: int):
    from datamodules import FashionMNISTDataset
    from inversion.cli import load_prior_spec

    prior = load_prior_spec(prior_spec)
    c, h, _ = prior.image_shape
    if c != 1:
        raise ValueError(f"the Fashion-MNIST benchmark needs a 1-channel prior, got {prior.image_shape}")
    ds = FashionMNISTDataset("test", resolution=h, resize_mode="pad" if h >= 28 else "resize", limit=n)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    labels = torch.stack([ds[i]["label"] for i in range(len(ds))]) if prior.num_classes else None
    return prior, x, labels


class _Bench:
    def __init__(self, prior, x, labels, out: Path, meta: dict):
        from inversion.metrics import OfflinePerceptualDistance

        self.prior, self.x, self.labels, self.out, self.meta = prior, x, labels, out, meta
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.perc = OfflinePerceptualDistance()

    def score(self, images: torch.Tensor, op) -> dict:
        from inversion import metrics as M

        with torch.no_grad():
            out = {
                "psnr": float(M.psnr(images, self.x).mean()),
                "ssim": float(M.ssim(images, self.x).mean()),
                "perceptual": float(self.perc(images, self.x).mean()),
            }
            mask = op.mask_for(self.x) if hasattr(op, "mask_for") else None
            if mask is not None:
                hole = (1 - mask).expand_as(self.x)
                out["masked_psnr"] = float(M.masked_psnr(images, self.x, hole).mean())
        return out

    def add(self, section: str, task: str, variant: str, images, op, seconds: float, **extra) -> None:
        row = {"section": section, "task": task, "variant": variant, **self.score(images, op)}
        row.update(seconds=seconds, **extra)
        self.rows.append(row)
        cols = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        print(f"[cri-bench] {cols}", flush=True)
        self.write()

    def restore(self, section, task, variant, op, y, method, labels=None, **opts):
        t = time.perf_counter()
        try:
            r = restore(y, op, self.prior, method, seed=0, labels=labels, **opts)
        except Exception as e:  # a method that cannot run here (e.g. DGP not built yet) is reported
            self.notes.append(f"{variant} on {task}: not run ({type(e).__name__}: {e})")
            print(f"[cri-bench] {self.notes[-1]}", flush=True)
            self.write()
            return None
        self.add(section, task, variant, r.images, op, time.perf_counter() - t)
        return r

    def write(self) -> None:
        md = _markdown(self.rows, self.notes, self.meta)
        atomic_write_bytes(self.out / "results.md", md.encode())
        blob = {"meta": self.meta, "rows": self.rows, "notes": self.notes}
        atomic_write_bytes(self.out / "results.json", json.dumps(blob, indent=1).encode())
        from inversion.cli.report import markdown_report

        markdown_report(self.out, title="CRI benchmark")


def _markdown(rows: list[dict], notes: list[str], meta: dict) -> str:
    lines = [f"# CRI benchmark ({meta['data']}, {meta['n_images']} images, {meta['device']})", ""]
    lines += [f"Prior `{meta['prior']}`. CRI options: `{json.dumps(meta['cri'])}`", ""]
    titles = {
        "clusters": "Clusters N (CRI Fig. 5)",
        "regularizer": "Offset regulariser (CRI Table 4)",
        "methods": "Methods",
        "labels": "Class inference",
        "variants": "CRI variants (diagnostics)",
    }
    for section, title in titles.items():
        sec = [r for r in rows if r["section"] == section]
        if not sec:
            continue
        lines += [
            f"## {title}",
            "",
            "| task | variant | PSNR | SSIM | perceptual (offline) | hole PSNR | s |",
        ]
        lines.append("|---|---|---|---|---|---|---|")
        for r in sec:
            hole = f"{r['masked_psnr']:.2f}" if "masked_psnr" in r else "-"
            lines.append(
                f"| {r['task']} | {r['variant']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                f"{r['perceptual']:.4f} | {hole} | {r['seconds']:.1f} |"
            )
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def run(
    prior: str = "runs/wgangp_cond/checkpoints/last.ckpt",
    n_images: int = 8,
    tasks: list[str] | None = None,
    ablation_task: str = "inpaint",
    clusters: list[int] | None = None,
    regularizers: list[str] | None = None,
    offset_steps: int = 200,
    tune_steps: int = 100,
    lambda_l2: float = 10.0,
    lambda_reg: float = 0.03,
    distance: str = "offline",
    csgm_steps: int = 300,
    restarts: int = 3,
    iagan_steps: int = 150,
    dgp: bool = True,
    classifier: str | None = None,
    cache_dir: str | None = "outputs/cri_cache",
    output: str = "outputs/cri_benchmark",
    num_threads: int | None = 1,
    sections: list[str] | None = None,
    variants: list[dict] | None = None,
) -> dict:
    """Run the ablations and the method comparison; write ``results.md`` / ``results.json``.

    Args:
        prior: checkpoint of ``python -m lcm fit`` (1-channel) or a registered prior factory.
        n_images: Fashion-MNIST test images (the first ``n_images``).
        tasks: tasks of the method comparison (``inpaint``, ``sr4``).
        ablation_task: the task of the cluster and regulariser ablations.
        clusters: N values (CRI Fig. 5: 1, 5, 10, 15).
        regularizers: offset regularisers (CRI Table 4: l2, l1, none).
        offset_steps, tune_steps, lambda_l2, lambda_reg, distance: CRI options
            (:class:`inversion.cri.CRIConfig`).
        csgm_steps, restarts, iagan_steps: CSGM / IAGAN options (:class:`inversion.MethodConfig`).
        dgp: also run ``restore(method="dgp")`` (reported as not run when it fails).
        classifier: a CRI classifier checkpoint: adds CRI with inferred labels and its accuracy.
        cache_dir: centroid cache folder.
        output: output folder.
        num_threads: torch intra-op threads.
        sections: subset of ``clusters``, ``regularizer``, ``methods``, ``labels``, ``variants``
            (default: all but ``variants``).
        variants: CRI option overrides run on ``ablation_task`` in the ``variants`` section
            (default: no pivotal tuning, no locality term, tuning lr 1e-3, critic distance).
    """
    if num_threads:
        torch.set_num_threads(num_threads)
    tasks = tasks or ["inpaint", "sr4"]
    clusters = clusters or [1, 5, 10, 15]
    regularizers = regularizers or ["l2", "l1", "none"]
    sections = sections or ["clusters", "regularizer", "methods", "labels"]
    variants = variants or [
        {"tune_steps": 0},
        {"lambda_locality": 0.0},
        {"tune_lr": 1e-3},
        {"distance": "critic"},
    ]
    pri, x, labels = _data(prior, n_images)
    cri = {
        "offset_steps": offset_steps,
        "tune_steps": tune_steps,
        "lambda_l2": lambda_l2,
        "lambda_reg": lambda_reg,
        "distance": distance,
        "cache_dir": cache_dir,
    }
    base = {"csgm_steps": csgm_steps, "restarts": restarts}
    meta = {
        "data": f"Fashion-MNIST test {pri.image_shape[-1]}px",
        "n_images": len(x),
        "device": f"CPU, {torch.get_num_threads()} thread(s)",
        "prior": prior,
        "cri": cri,
        "baselines": {**base, "iagan_steps": iagan_steps},
    }
    bench = _Bench(pri, x, labels, Path(output), meta)
    from inversion.cri import cluster_centroids, make_distance, select_centroids

    done: dict[tuple, object] = {}
    if "clusters" in sections:
        op = _task(ablation_task)
        y = op.A(x)
        dist = make_distance(distance, pri)
        for n in clusters:
            keys = [None] if labels is None else sorted(set(labels.tolist()))
            cents = {k: cluster_centroids(pri, n, 10_000, k, 0, cache_dir) for k in keys}
            start, _, _ = select_centroids(pri, op, y, cents, labels, dist)
            with torch.no_grad():
                bench.add(
                    "clusters",
                    ablation_task,
                    f"start image only, N={n}",
                    pri.synthesize(start, labels),
                    op,
                    0.0,
                )
            r = bench.restore(
                "clusters", ablation_task, f"CRI, N={n}", op, y, "cri", labels, n_clusters=n, **cri
            )
            if r is not None:
                done[(ablation_task, n, "l2")] = r
    if "regularizer" in sections:
        op = _task(ablation_task)
        y = op.A(x)
        for reg in regularizers:
            if (ablation_task, 10, reg) in done:  # the N = 10, L2 run of the cluster ablation
                row = next(r for r in bench.rows if r["variant"] == "CRI, N=10")
                bench.rows.append({**row, "section": "regularizer", "variant": f"CRI, {reg}"})
                bench.write()
                continue
            bench.restore(
                "regularizer", ablation_task, f"CRI, {reg}", op, y, "cri", labels, regularizer=reg, **cri
            )
    if "methods" in sections:
        for task in tasks:
            op = _task(task)
            y = op.A(x)
            bench.restore("methods", task, "CSGM", op, y, "csgm", labels, **base)
            bench.restore("methods", task, "IAGAN", op, y, "iagan", labels, iagan_steps=iagan_steps, **base)
            if dgp:
                bench.restore("methods", task, "DGP", op, y, "dgp", labels, **DGP_PRESETS.get(task, {}))
            if (task, 10, "l2") in done:
                row = next(r for r in bench.rows if r["variant"] == "CRI, N=10" and r["task"] == task)
                bench.rows.append({**row, "section": "methods", "variant": "CRI"})
                bench.write()
            else:
                bench.restore("methods", task, "CRI", op, y, "cri", labels, **cri)
    if "labels" in sections and classifier is not None and pri.num_classes:
        from inversion.cri import measurement_view
        from inversion.cri.classifier import infer_labels

        for task in tasks:
            op = _task(task)
            y = op.A(x)
            pred = infer_labels(classifier, measurement_view(y, pri.image_shape[-2:]), pri.num_classes)
            acc = float((pred == labels).float().mean())
            bench.notes.append(f"classifier accuracy on degraded {task} inputs: {acc:.3f} ({len(x)} images)")
            bench.restore(
                "labels",
                task,
                f"CRI, inferred labels (acc {acc:.2f})",
                op,
                y,
                "cri",
                None,
                classifier=classifier,
                **cri,
            )
    if "variants" in sections:
        op = _task(ablation_task)
        y = op.A(x)
        for v in variants:
            name = "CRI, " + ", ".join(f"{k}={val}" for k, val in v.items())
            bench.restore("variants", ablation_task, name, op, y, "cri", labels, **{**cri, **v})
    bench.write()
    print((Path(output) / "results.md").read_text())
    return {"rows": bench.rows, "notes": bench.notes}


def _options(text: str) -> dict:
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{tune_steps: 0}}', got {text!r}")
    return value


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.cri",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--prior", default="runs/wgangp_cond/checkpoints/last.ckpt", help="1-channel checkpoint")
    p.add_argument("--n-images", type=int, default=8, help="Fashion-MNIST test images (the first N)")
    p.add_argument("--tasks", nargs="+", default=None, help="method comparison tasks: inpaint, sr4")
    p.add_argument("--ablation-task", default="inpaint", help="task of the cluster / regulariser ablations")
    p.add_argument("--clusters", type=int, nargs="+", default=None, help="N values (Fig. 5: 1 5 10 15)")
    p.add_argument("--regularizers", nargs="+", default=None, help="Table 4: l2 l1 none")
    p.add_argument("--offset-steps", type=int, default=200)
    p.add_argument("--tune-steps", type=int, default=100)
    p.add_argument("--lambda-l2", type=float, default=10.0)
    p.add_argument("--lambda-reg", type=float, default=0.03)
    p.add_argument("--distance", default="offline", help="CRI's distance: offline, critic, mse")
    p.add_argument("--csgm-steps", type=int, default=300)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--iagan-steps", type=int, default=150)
    p.add_argument("--no-dgp", dest="dgp", action="store_false", help="leave DGP out of the comparison")
    p.add_argument("--classifier", default=None, help="CRI classifier checkpoint: adds inferred labels")
    p.add_argument("--cache-dir", default="outputs/cri_cache", help="centroid cache folder")
    p.add_argument("--output", default="outputs/cri_benchmark")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument("--sections", nargs="+", default=None, help="clusters regularizer methods labels variants")
    p.add_argument(
        "--variants", type=_options, nargs="+", default=None, help="CRI overrides, each a YAML mapping"
    )
    return run(**vars(p.parse_args(argv)))


if __name__ == "__main__":  # pragma: no cover
    main()
