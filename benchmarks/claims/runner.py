"""One claims run's state: its priors, held-out images, metrics, and the per-image cache of every method run
(``OUTPUT/cache/<key>-<digest>.json``, filled chunk by chunk, so that a rerun resumes)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.claims.priors import shared_checkpoint, train_prior, wait_for
from datamodules.io.atomic import atomic_write_bytes

__all__ = ["CACHE_VERSION", "Runner"]

CACHE_VERSION = 2  # part of every cache key: 1 = the README's table (before DGP/CRI/e-GLASS fixes merged)


class Runner:
    """Priors, data, operators, metrics and the per-run cache of one claims run."""

    def __init__(
        self,
        output: Path,
        n: int,
        smoke: bool,
        priors: list[str],
        scale: float,
        seed: int = 0,
        wait: bool = False,
        eglass_images: int = 8,
    ):
        self.out = Path(output)
        self.wait = bool(wait)
        self.n, self.smoke, self.scale, self.seed = int(n), bool(smoke), float(scale), int(seed)
        self.eglass_images = int(eglass_images)
        self.prior_dirs = [Path(p) for p in priors]
        self._priors: dict[str, object] = {}
        self._used: dict[str, None] = {}  # insertion-ordered set of the priors the measured rows use
        self._data: dict[str, tuple] = {}
        self._metrics: dict[str, object] = {}
        self.chunk = 8

    # steps scaled (smoke / budget), never below 2
    def steps(self, n: int) -> int:
        return max(2, round(n * self.scale))

    # -- priors ----------------------------------------------------------------------------------
    def prior_path(self, name: str) -> Path:
        """A shared checkpoint of ``name`` (waited for with ``wait``), else one trained in OUTPUT/priors."""
        if self.wait:
            wait_for(self.prior_dirs, name)
        found = shared_checkpoint(self.prior_dirs, name)
        return found if found is not None else train_prior(name, self.out / "priors" / name, self.smoke)

    def used_priors(self) -> dict[str, str]:
        """The priors behind the rows measured so far -> their checkpoints (none is trained for this)."""
        found = {n: shared_checkpoint(self.prior_dirs, n) for n in self._used}
        return {n: str(p or self.out / "priors" / n / "last.ckpt") for n, p in found.items()}

    def prior(self, name: str):
        if name not in self._priors:
            from lcm import load_prior

            self._priors[name] = load_prior(self.prior_path(name)).eval()
        return self._priors[name]

    # -- data ------------------------------------------------------------------------------------
    def images(self, dataset: str, split: str = "test", n: int | None = None):
        n = self.n if n is None else n
        key = f"{dataset}/{split}/{n}"
        if key not in self._data:
            from datamodules import EmojiDataset, FashionMNISTDataset

            if dataset == "fashion_mnist":
                ds = FashionMNISTDataset(split, resolution=32, resize_mode="pad", limit=n)
            else:
                ds = EmojiDataset(split, resolution=32, split_limit=n)
            if len(ds) < n:
                raise ValueError(f"{dataset} {split} has {len(ds)} images, fewer than the {n} asked for")
            x = torch.stack([ds[i]["image"] for i in range(n)])
            labels = torch.stack([torch.as_tensor(ds[i].get("label", -1)) for i in range(n)])
            self._data[key] = (x, labels)
        return self._data[key]

    # -- metrics ---------------------------------------------------------------------------------
    def feature_metric(self):
        if "feature" not in self._metrics:
            from inversion.metrics import feature_metric

            self._metrics["feature"] = feature_metric("auto")
        return self._metrics["feature"]

    def perceptual(self):
        if "perceptual" not in self._metrics:
            from inversion.metrics import EfficientNetLite0Features, OfflinePerceptualDistance

            self._metrics["perceptual"] = OfflinePerceptualDistance(
                EfficientNetLite0Features(resize=64)
            ).eval()
        return self._metrics["perceptual"]

    @torch.no_grad()
    def score(self, img: torch.Tensor, x: torch.Tensor, op) -> dict[str, list[float]]:
        from inversion import metrics as M

        out = {"psnr": M.psnr(img, x), "ssim": M.ssim(img, x), "perceptual": self.perceptual()(img, x)}
        mask_for = getattr(op, "mask_for", None)
        hole = None
        if mask_for is not None:
            hole = 1.0 - mask_for(x).to(x.dtype).expand_as(x)
            out["masked_psnr"] = M.masked_psnr(img, x, hole)
            out["masked_ssim"] = M.masked_ssim(img, x, hole)
        out["feature"] = self.feature_metric()[1](img, x, None if hole is None else hole[:, :1])
        return {k: [float(v) for v in t.flatten()] for k, t in out.items()}

    # -- cached runs -----------------------------------------------------------------------------
    def cached(
        self,
        key: str,
        spec: dict,
        n: int,
        compute: Callable[[int, int], dict[str, list[float]]],
        priors: tuple[str, ...] = (),
    ):
        """Per-image metrics of one run over images ``[0, n)``, computed chunk by chunk and cached; the
        ``priors`` it needs are loaded (waited for, trained) before the clock of ``seconds_per_image``
        starts, and only when some chunk is left to compute."""
        self._used.update(dict.fromkeys(priors))  # named in the run's meta even when all comes from the cache
        spec = {**spec, "code": CACHE_VERSION}  # bump CACHE_VERSION when a method's code changes
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
        path = self.out / "cache" / f"{key}-{digest}.json"
        state = json.loads(path.read_text()) if path.is_file() else {"spec": spec, "values": {}, "done": 0}
        if state["done"] < n:
            for name in priors:
                self.prior(name)
        while state["done"] < n:
            lo = state["done"]
            hi = min(n, lo + self.chunk)
            t0 = time.perf_counter()
            vals = compute(lo, hi)
            secs = time.perf_counter() - t0
            for k, v in vals.items():
                state["values"].setdefault(k, []).extend(v)
            state["values"].setdefault("seconds_per_image", []).extend([secs / (hi - lo)] * (hi - lo))
            state["done"] = hi
            atomic_write_bytes(path, json.dumps(state, indent=1).encode())
            print(f"[claims] {key}: {hi}/{n} images ({secs:.1f} s)", flush=True)
        return {k: v[:n] for k, v in state["values"].items()}

    def restore_run(self, key, prior_name, dataset, op, method, opts, bp_label=None, bp="code"):
        """Metrics of ``restore(method, **opts)`` (and of its back-projection with A-dagger ``bp`` under
        ``bp_label``)."""
        from inversion import restore
        from inversion.operators import back_project

        terms = opts.get("loss_terms") or {}
        plain = {k: v for k, v in opts.items() if k != "loss_terms"}
        spec = {"prior": prior_name, "op": repr(op), "method": method, "opts": plain, "bp": bp_label}
        if bp_label:  # (results cached before issue 29 used the paper's A-dagger and name no bp_mode)
            spec["bp_mode"] = bp
        spec["loss_terms"] = sorted(terms)

        def compute(lo, hi):
            x, _ = self.images(dataset)
            x = x[lo:hi]
            prior = self.prior(prior_name) if prior_name else None
            o = op
            y = o.A(x)
            seeds = list(range(self.seed + lo, self.seed + hi))
            res = restore(y, o, prior, method, seed=seeds, **opts)
            vals = self.score(res.images, x, o)
            if bp_label:
                with torch.no_grad():
                    x_bp = back_project(res.raw, y, o, bp).clamp(0, 1)
                vals.update({f"{bp_label}:{k}": v for k, v in self.score(x_bp, x, o).items()})
            return vals

        return self.cached(key, spec, self.n, compute, (prior_name,) if prior_name else ())
