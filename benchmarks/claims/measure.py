"""``python -m inversion.claims``: the papers' claims, measured on our priors.

For each claim it prints the paper's figure, our numbers (mean and 95% t-interval over held-out test
images) and whether the claimed ordering holds on our data (each adjacent pair as a paired difference
over the same images; "clear" when its 95% interval excludes zero):

* IAGAN Table 2 - SR x4 (bicubic): IAGAN > CSGM in PSNR, and back-projection's effect (CSGM-BP > CSGM).
* DGP Table 4 - SR x4 (Lanczos): D + progressive > D > MSE > perceptual (PSNR).
* DGP Table 2 - centre-hole inpainting, PSNR inside the hole: DGP > IAGAN, CSGM (and DIP, TV shown).
* DGP Table 5 - adversarial defence: accuracy of a DeiT on clean / I-FGSM / DGP / CSGM / smoothing.
* LCM Sec. 3 (Fig. 3) - inpainting, feature distance inside the hole: LCM <= GLO (1024-d) < WGAN-GP,
  AE, DIP (VGG16 relu1_2..relu5_3 when its weights are on disk, else the offline EfficientNet).
* CRI Fig. 5 / Table 4 - emoji colorization, offline perceptual distance: more clusters better;
  L2 < L1 < no regularizer.
* e-GLASS - seconds per distinct feasible solution from its IAGAN-style start (fit timed) against
  PULSE-style restarts under the same criterion, and diversity.
* TV - the classical baseline (inpainting, PSNR): TV against CSGM and IAGAN.

Priors come from ``--priors DIR ...`` (``DIR/<name>/last.ckpt`` or ``DIR/<name>/checkpoints/last.ckpt``;
a ``DIR/DONE-<name>`` marker, where present, must exist) or are trained into ``OUTPUT/priors`` with
``configs/lcm/<name>.yaml`` (resumed from ``last.ckpt``). Every method run is cached per image chunk
under ``OUTPUT/cache`` (a rerun resumes); the table goes to ``OUTPUT/claims.md`` and ``claims.json``
atomically. ``--smoke``: tiny priors trained on the fly, 2 images per task, all step counts scaled
down -- the same rows, in minutes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inversion.io import atomic_write_bytes
from lcm.configs import config_dir, load_options

__all__ = ["CLAIMS", "Claim", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]
CACHE_VERSION = 2  # part of every cache key: 1 = the README's table (before DGP/CRI/e-GLASS fixes merged)
PRIOR_DATA = {
    "wgangp": "fashion_mnist",
    "glo": "fashion_mnist",
    "glo_highdim": "fashion_mnist",
    "lcm": "fashion_mnist",
    "ae": "fashion_mnist",
    "wgangp_emoji": "emoji",
}


# -- statistics ------------------------------------------------------------------------------------
def interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t-interval (half-width NaN for fewer than 2 values)."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


@dataclass
class Claim:
    """One row group: methods measured under one metric and the ordering the paper claims.

    ``order`` lists labels best first (``>`` chains); ``higher`` says whether larger is better;
    ``paper`` is the paper's figure for each label (text).
    """

    key: str
    title: str
    metric: str
    higher: bool
    order: list[str]
    paper: dict[str, str]
    source: str
    extra: list[str] = field(default_factory=list)  # labels shown but outside the ordering


CLAIMS = [
    Claim(
        "iagan_t2",
        "IAGAN Table 2: SR x4 (bicubic), PSNR dB",
        "psnr",
        True,
        ["IAGAN", "CSGM"],
        {"CSGM": "20.51", "CSGM-BP": "26.44", "IAGAN": "27.16", "IAGAN-BP": "27.14"},
        "IAGAN Table 2, CelebA SR x4",
        ["CSGM-BP", "IAGAN-BP"],
    ),
    Claim(
        "iagan_bp",
        "IAGAN Table 2: back-projection's effect on CSGM, PSNR dB",
        "psnr",
        True,
        ["CSGM-BP", "CSGM"],
        {"CSGM": "20.51", "CSGM-BP": "26.44"},
        "IAGAN Table 2, CelebA SR x4",
    ),
    Claim(
        "dgp_t4",
        "DGP Table 4: loss / fine-tuning ablation, SR x4 (Lanczos), PSNR dB",
        "psnr",
        True,
        ["D + progressive", "D", "MSE", "perceptual"],
        {"MSE": "21.24", "perceptual": "20.30", "D": "21.58", "D + progressive": "22.00"},
        "DGP Table 4, ImageNet SR x4",
    ),
    Claim(
        "dgp_t2",
        "DGP Table 2: centre-hole inpainting, PSNR inside the hole dB",
        "masked_psnr",
        True,
        ["DGP", "IAGAN", "CSGM"],
        {"DGP": "16.97", "DIP": "14.58", "CSGM": "13.70 (Zhu et al.)", "IAGAN": "15.01 (Bau et al.)"},
        "DGP Table 2, ImageNet; GAN-inversion baselines stand in for CSGM / IAGAN",
        ["DIP", "TV"],
    ),
    Claim(
        "dgp_t5",
        "DGP Table 5: adversarial defence, top-1 accuracy %",
        "correct",
        True,
        ["DGP", "CSGM"],
        {"clean": "74.9", "attacked": "1.4", "CSGM": "0.2 (DefenseGAN)", "DGP": "41.3", "DIP": "37.5"},
        "DGP Table 5, ImageNet ResNet50; CSGM = DefenseGAN-style latent-only",
        ["clean", "attacked", "smoothing"],
    ),
    Claim(
        "lcm_s3",
        "LCM Sec. 3 (Fig. 3): inpainting, feature distance inside the hole (lower is better)",
        "feature",
        False,
        ["LCM", "GLO (1024-d)", "WGAN-GP"],
        {
            "LCM": "best (Fig. 3, bars)",
            "GLO (1024-d)": "2nd",
            "WGAN-GP": "worse",
            "AE": "worse",
            "DIP": "worse",
        },
        "LCM Fig. 3, CelebA inpainting (values only as bars)",
        ["AE", "DIP", "GLO (64-d)"],
    ),
    Claim(
        "lcm_s3_ae",
        "LCM Sec. 3: GLO (1024-d) better than AE (feature distance in the hole)",
        "feature",
        False,
        ["GLO (1024-d)", "AE"],
        {"GLO (1024-d)": "better", "AE": "worse"},
        "LCM Sec. 3 text and Fig. 3",
    ),
    Claim(
        "lcm_s3_dip",
        "LCM Sec. 3: GLO (1024-d) better than DIP on CelebA (feature distance in the hole)",
        "feature",
        False,
        ["GLO (1024-d)", "DIP"],
        {"GLO (1024-d)": "better", "DIP": "worse on CelebA"},
        "LCM Sec. 3 text and Fig. 3",
    ),
    Claim(
        "cri_f5",
        "CRI Fig. 5: number of clusters, emoji colorization, offline perceptual distance (lower is better)",
        "perceptual",
        False,
        ["10 clusters", "5 clusters", "1 cluster"],
        {"1 cluster": "worst", "5 clusters": "between", "10 clusters": "best (of 1, 5, 10, 15)"},
        "CRI Fig. 5, ImageNet colorization (values only as a plot)",
    ),
    Claim(
        "cri_t4",
        "CRI Table 4: offset regularizer, emoji colorization, offline perceptual distance (lower is better)",
        "perceptual",
        False,
        ["L2", "L1", "none"],
        {"none": "0.1996", "L1": "0.1694", "L2": "0.1560"},
        "CRI Table 4, CelebA-HQ colorization, LPIPS",
    ),
    Claim(
        "eglass",
        "e-GLASS: seconds per distinct feasible solution (10 asked), SR x4 (lower is better)",
        "seconds_per_solution",
        False,
        ["e-GLASS", "restarts"],
        {"e-GLASS": "370 (3.7e3 s for 10)", "restarts": "3500 (3.5e4 s for 10)"},
        "e-GLASS Table 1, BigGAN SR",
    ),
    Claim(
        "eglass_div",
        "e-GLASS: diversity of the feasible solutions (mean pairwise offline perceptual distance)",
        "diversity",
        True,
        [],
        {"e-GLASS": "significant perceptual change", "restarts": "-"},
        "e-GLASS Sec. 4 (no ordering claimed against restarts)",
        ["e-GLASS", "restarts"],
    ),
    Claim(
        "tv",
        "Classical baseline: TV-regularised reconstruction, centre-hole inpainting, PSNR dB",
        "psnr",
        True,
        ["TV", "IAGAN", "CSGM"],
        {"TV": "22.2", "IAGAN": "19.9", "CSGM": "19.2"},
        "issue 15: 8 Fashion-MNIST images, 1500-step WGAN-GP",
    ),
]


# -- the runner ------------------------------------------------------------------------------------
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
    ):
        self.out = Path(output)
        self.wait = bool(wait)
        self.n, self.smoke, self.scale, self.seed = int(n), bool(smoke), float(scale), int(seed)
        self.prior_dirs = [Path(p) for p in priors]
        self._priors: dict[str, object] = {}
        self._data: dict[str, tuple] = {}
        self._metrics: dict[str, object] = {}
        self.chunk = 8

    # steps scaled (smoke / budget), never below 2
    def steps(self, n: int) -> int:
        return max(2, round(n * self.scale))

    # -- priors ----------------------------------------------------------------------------------
    def prior_path(self, name: str) -> Path:
        if self.wait:
            self.wait_for(name)
        for d in self.prior_dirs:
            for cand in (d / name / "last.ckpt", d / name / "checkpoints" / "last.ckpt"):
                marker = d / f"DONE-{name}"
                others = list(d.glob("DONE-*"))
                if cand.is_file() and (marker.exists() or not others):
                    return cand
        return self.train_prior(name)

    def wait_for(self, name: str, poll: float = 20.0) -> None:
        """Block until ``DIR/DONE-<name>`` exists in a priors folder whose training covers ``name``."""
        for d in self.prior_dirs:
            pattern = re.compile(rf"\b{re.escape(name)}\b")
            if (d / name).is_dir() or any(pattern.search(p.read_text()) for p in d.glob("*.sh")):
                while not (d / f"DONE-{name}").exists():
                    print(f"[claims] waiting for {d / f'DONE-{name}'}", flush=True)
                    time.sleep(poll)
                return

    def train_prior(self, name: str) -> Path:
        from lcm.cli import cli_main

        folder = self.out / "priors" / name
        done = folder / "DONE"
        last = folder / "last.ckpt"
        if done.exists() and last.is_file():
            return last
        args = [
            "fit",
            "-c",
            str(ROOT / "configs" / "lcm" / f"{name}.yaml"),
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={folder}",
            f"--checkpoint.dirpath={folder}",
        ]
        if self.smoke:
            args += [
                "--model.init_args.width=4",
                "--model.init_args.sample_every_n_steps=0",
                "--data.init_args.limit_train=64",
                "--data.init_args.batch_size=16",
                "--trainer.max_steps=20",
                "--checkpoint.every_n_train_steps=10",
            ]
            if name.startswith("wgangp"):
                args += ["--model.init_args.critic_width=4", "--model.init_args.latent_dim=8"]
            if name == "lcm":
                args += ["--model.init_args.hidden=[4,4]"]
        if last.is_file():
            args += ["--ckpt_path", str(last)]
        print(f"[claims] training prior {name} -> {folder}", flush=True)
        cli_main(args)
        done.touch()
        return last

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
    def cached(self, key: str, spec: dict, n: int, compute: Callable[[int, int], dict[str, list[float]]]):
        """Per-image metrics of one run over images ``[0, n)``, computed chunk by chunk and cached."""
        spec = {**spec, "code": CACHE_VERSION}  # bump CACHE_VERSION when a method's code changes
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]
        path = self.out / "cache" / f"{key}-{digest}.json"
        state = json.loads(path.read_text()) if path.is_file() else {"spec": spec, "values": {}, "done": 0}
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

    def restore_run(self, key, prior_name, dataset, op, method, opts, bp_label=None, x_range=None):
        """Metrics of ``restore(method, **opts)`` (and of its back-projection under ``bp_label``)."""
        from inversion.methods import back_projection, restore

        terms = opts.get("loss_terms") or {}
        plain = {k: v for k, v in opts.items() if k != "loss_terms"}
        spec = {"prior": prior_name, "op": repr(op), "method": method, "opts": plain, "bp": bp_label}
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
                    bp = back_projection(res.raw, y, o).clamp(0, 1)
                vals.update({f"{bp_label}:{k}": v for k, v in self.score(bp, x, o).items()})
            return vals

        return self.cached(key, spec, self.n, compute)


# -- the claims' runs ------------------------------------------------------------------------------
def _scaled_stages(stages: list[dict], runner: Runner) -> list[dict]:
    return [{**s, "iterations": runner.steps(s["iterations"])} for s in stages]


def _csgm_opts(r: Runner) -> dict:
    return {"csgm_steps": r.steps(500), "restarts": 5}


def _iagan_opts(r: Runner) -> dict:
    return {**_csgm_opts(r), "iagan_steps": r.steps(300)}


def _dgp_preset(r: Runner, name: str) -> dict:
    from inversion.dgp.method import load_preset

    opts = load_preset(name)
    opts["stages"] = _scaled_stages(opts["stages"], r)
    opts["n_candidates"] = max(8, round(opts.get("n_candidates", 500) * r.scale))
    return opts


def measure(r: Runner) -> dict[str, dict[str, list[float]]]:
    """Per claim key: label -> per-image values of the claim's metric."""
    from inversion.operators import Colorization, Inpainting, SuperResolution

    fm = "fashion_mnist"
    sr_bic = SuperResolution(factor=4, kernel="bicubic")
    sr_lan = SuperResolution(factor=4, kernel="lanczos")
    hole = Inpainting("center", box_size=50 / 128)
    res: dict[str, dict[str, list[float]]] = {c.key: {} for c in CLAIMS}

    # IAGAN Table 2
    cs = r.restore_run("sr4_csgm", "wgangp", fm, sr_bic, "csgm", _csgm_opts(r), bp_label="BP")
    ia = r.restore_run("sr4_iagan", "wgangp", fm, sr_bic, "iagan", _iagan_opts(r), bp_label="BP")
    res["iagan_t2"] = {
        "CSGM": cs["psnr"],
        "CSGM-BP": cs["BP:psnr"],
        "IAGAN": ia["psnr"],
        "IAGAN-BP": ia["BP:psnr"],
    }
    res["iagan_bp"] = {"CSGM": cs["psnr"], "CSGM-BP": cs["BP:psnr"]}

    # DGP Table 4 (variants as in inversion.dgp.benchmark, plus the perceptual loss)
    from inversion.dgp.perceptual import PerceptualLoss

    base = _dgp_preset(r, "sr_critic")
    ncand = base["n_candidates"]
    variants = {
        "MSE": ([{**s, "blocks": "all", "weights": {"mse": 1.0}} for s in base["stages"]], "mse", None),
        "perceptual": (
            [
                {
                    **s,
                    "blocks": "all",
                    "weights": {
                        "perceptual": s["weights"].get("critic", 1.0),
                        "mse": s["weights"].get("mse", 1.0),
                    },
                }
                for s in base["stages"]
            ],
            "mse",
            "perceptual",
        ),
        "D": ([{**s, "blocks": "all"} for s in base["stages"]], "critic", None),
        "D + progressive": (base["stages"], "critic", None),
    }
    for label, (stages, init, extra) in variants.items():
        opts = {"stages": stages, "init_metric": init, "n_candidates": ncand}
        if extra:
            shape = r.prior("wgangp").image_shape
            opts["loss_terms"] = {"perceptual": PerceptualLoss(shape)}
        key = "sr4_dgp_" + label.replace(" + ", "_").lower()
        out = r.restore_run(key, "wgangp", fm, sr_lan, "dgp", opts)
        res["dgp_t4"][label] = out["psnr"]

    # DGP Table 2 + TV + LCM Sec. 3 (one inpainting task)
    runs = {
        "CSGM": ("wgangp", "csgm", _csgm_opts(r)),
        "IAGAN": ("wgangp", "iagan", _iagan_opts(r)),
        "DGP": ("wgangp", "dgp", _dgp_preset(r, "inpainting")),
        "DIP": (None, "dip", {"dip_steps": r.steps(500)}),
        "TV": (None, "tv", {"tv_steps": 200 if r.smoke else 2000}),  # a convex solve: run to convergence
        "LCM": ("lcm", "latent", {"latent_steps": r.steps(500), "restarts": 5}),
        "GLO (1024-d)": ("glo_highdim", "latent", {"latent_steps": r.steps(500), "restarts": 5}),
        "GLO (64-d)": ("glo", "latent", {"latent_steps": r.steps(500), "restarts": 5}),
        "AE": ("ae", "latent", {"latent_steps": r.steps(500), "restarts": 5}),
    }
    late = ("LCM", "GLO (1024-d)", "GLO (64-d)", "AE")  # priors that finish training last: measured last
    inp = {}

    def inpaint(labels):
        for label in labels:
            prior, method, opts = runs[label]
            key = "inpaint_" + label.split(" ")[0].lower() + ("_hd" if "1024" in label else "")
            inp[label] = r.restore_run(key, prior, fm, hole, method, opts)

    inpaint([k for k in runs if k not in late])
    res["dgp_t2"] = {k: inp[k]["masked_psnr"] for k in ("DGP", "IAGAN", "CSGM", "DIP", "TV")}
    res["tv"] = {k: inp[k]["psnr"] for k in ("TV", "IAGAN", "CSGM")}

    # CRI Fig. 5 / Table 4 (emoji colorization)
    color = Colorization()
    preset = load_options(config_dir() / "inversion" / "cri" / "colorize.yaml")
    cri = {  # the colorization preset's weights, steps scaled
        **{k: v for k, v in preset.items() if k.startswith("lambda_")},
        "n_samples": max(64, round(10_000 * r.scale)),
        "offset_steps": r.steps(200),
        "tune_steps": r.steps(100),
        "cache_dir": str(r.out / "cache" / "cri"),
    }
    for k in (1, 5, 10):
        opts = {**cri, "n_clusters": k, "regularizer": "l2"}
        out = r.restore_run(f"color_cri_k{k}", "wgangp_emoji", "emoji", color, "cri", opts)
        res["cri_f5"][f"{k} cluster" + ("s" if k > 1 else "")] = out["perceptual"]
    for reg, label in (("l2", "L2"), ("l1", "L1"), ("none", "none")):
        opts = {**cri, "n_clusters": 10, "regularizer": reg}
        out = r.restore_run(
            f"color_cri_k10{'' if reg == 'l2' else '_' + reg}", "wgangp_emoji", "emoji", color, "cri", opts
        )
        res["cri_t4"][label] = out["perceptual"]

    # DGP Table 5 (defence)
    res["dgp_t5"] = defence(r)

    # e-GLASS (speed, diversity)
    res["eglass"], res["eglass_div"] = eglass(r, sr_bic)

    # LCM Sec. 3 (same inpainting task)
    inpaint(late)
    lcm_rows = {"WGAN-GP": inp["CSGM"]["feature"]}  # eq. 5 on the GAN's z (CSGM, no Gaussian prior)
    lcm_rows.update({k: inp[k]["feature"] for k in ("LCM", "GLO (1024-d)", "GLO (64-d)", "AE", "DIP")})
    res["lcm_s3"] = lcm_rows
    res["lcm_s3_ae"] = {k: lcm_rows[k] for k in ("GLO (1024-d)", "AE")}
    res["lcm_s3_dip"] = {k: lcm_rows[k] for k in ("GLO (1024-d)", "DIP")}
    return res


def defence(r: Runner) -> dict[str, list[float]]:
    from inversion.cri.classifier import load_classifier
    from inversion.dgp.defence import defence_accuracies, train_classifier

    path = r.out / "classifier.ckpt"
    n_train = 256 if r.smoke else 10_000
    steps = 20 if r.smoke else 600
    if not path.is_file():
        x, lab = r.images("fashion_mnist", "train", n_train)
        kw = (
            {"model_kwargs": {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}}
            if r.smoke
            else {}
        )
        clf = train_classifier(x, lab, 10, steps=steps, batch_size=128, seed=r.seed, **kw)
        from inversion.cri.classifier import CHECKPOINT_MARK
        from inversion.io import atomic_write

        ckpt = {"state_dict": clf.state_dict(), "hyper_parameters": dict(clf.hparams), CHECKPOINT_MARK: 1}
        atomic_write(path, lambda f: torch.save(ckpt, f))
    clf = load_classifier(path)
    eps = 16 / 255
    spec = {
        "eps": eps,
        "steps": 10,
        "dgp": _dgp_preset(r, "defence"),
        "csgm": _csgm_opts(r),
        "clf": path.stat().st_mtime,
    }

    def compute(lo, hi):
        x, lab = r.images("fashion_mnist")
        out = defence_accuracies(
            r.prior("wgangp"),
            clf,
            x[lo:hi],
            lab[lo:hi],
            eps=eps,
            attack_steps=10,
            dgp_options=spec["dgp"],
            csgm_options=spec["csgm"],
            seed=r.seed + lo,
        )
        return {k: [100.0 * float(v) for v in t] for k, t in out.items()}

    vals = r.cached("defence", spec, r.n, compute)
    return {k: vals[k] for k in ("clean", "attacked", "DGP", "CSGM", "smoothing")}


def eglass(r: Runner, op) -> tuple[dict, dict]:
    """e-GLASS from its IAGAN-style start against PULSE-style restarts, both to ``k`` distinct feasible
    solutions under one criterion and one distinctness rule, timed as the e-GLASS benchmark times them
    (:func:`inversion.exploration.benchmark.race`: the start's fit is on e-GLASS's clock)."""
    from inversion.exploration import Distinctness, Feasibility
    from inversion.exploration.benchmark import race

    n = min(r.n, r.eglass_images)
    k = 4 if r.smoke else 10
    fit_kw = {"z_steps": 10, "finetune_steps": 20} if r.smoke else {}  # else the benchmark's 100 + 300

    def compute(lo, hi):
        x, _ = r.images("fashion_mnist")
        prior = r.prior("wgangp")
        out = {"eglass_sps": [], "restarts_sps": [], "eglass_div": [], "restarts_div": []}
        for i in range(lo, hi):
            y = op.A(x[i : i + 1])
            row, ex, rs = race(
                prior,
                op,
                y,
                Feasibility(),
                Distinctness(),
                num_solutions=k,
                seed=r.seed + 7919 * i,
                restart_seed=r.seed + 104729 * (i + 1),
                max_rounds=2 if r.smoke else 5,
                fit_kw=fit_kw,
            )
            for name, imgs in (("eglass", ex.solutions), ("restarts", rs.solutions)):
                # seconds per distinct feasible solution: time to k / k where k were reached
                out[f"{name}_sps"].append(row[name]["seconds"] / max(int(imgs.shape[0]), 1))
                out[f"{name}_div"].append(_diversity(r, imgs))
        return out

    vals = r.cached("eglass", {"k": k, "scale": r.scale, "api": 3, "fit": fit_kw}, n, compute)
    speed = {"e-GLASS": vals["eglass_sps"], "restarts": vals["restarts_sps"]}
    div = {"e-GLASS": vals["eglass_div"], "restarts": vals["restarts_div"]}
    return speed, div


def _diversity(r: Runner, imgs: torch.Tensor) -> float:
    if imgs.shape[0] < 2:
        return 0.0
    i, j = torch.triu_indices(imgs.shape[0], imgs.shape[0], 1)
    with torch.no_grad():
        return float(r.perceptual()(imgs[i], imgs[j]).mean())


# -- the table -------------------------------------------------------------------------------------
def _fmt(mean: float, half: float, metric: str) -> str:
    digits = 3 if metric in ("feature", "perceptual", "diversity", "seconds_per_solution") else 2
    if metric == "correct":
        digits = 1
    h = "n/a" if math.isnan(half) else f"{half:.{digits}f}"
    return f"{mean:.{digits}f} ± {h}"


def judge(claim: Claim, values: dict[str, list[float]]) -> dict:
    """The row group's summary: per-label mean / interval, and each adjacent pair of the ordering."""
    stats = {k: interval(v) for k, v in values.items()}
    pairs = []
    for a, b in itertools.pairwise(claim.order):
        if a not in values or b not in values:
            continue
        d = [(u - w) if claim.higher else (w - u) for u, w in zip(values[a], values[b], strict=True)]
        m, h = interval(d)
        pairs.append(
            {
                "pair": f"{a} > {b}",
                "diff": m,
                "half": h,
                "holds": m > 0,
                "clear": not math.isnan(h) and m - h > 0,
            }
        )
    holds = all(p["holds"] for p in pairs) if pairs else None
    return {
        "title": claim.title,
        "metric": claim.metric,
        "higher_is_better": claim.higher,
        "source": claim.source,
        "paper": claim.paper,
        "ours": {k: {"mean": m, "half": h, "n": len(values[k])} for k, (m, h) in stats.items()},
        "pairs": pairs,
        "holds": holds,
    }


def markdown(summary: dict, meta: dict) -> str:
    """The summary table (one line per claim) and, per claim, every method's numbers."""
    verdicts = {True: "holds", False: "does not hold", None: "no ordering claimed"}
    lines = [
        f"{meta['images']} held-out test images per task (e-GLASS: {meta['eglass_images']}); step counts "
        f"x{meta['scale']:g} of our defaults; feature metric: {meta['feature_metric']}; "
        "mean ± 95% t-interval over images.",
        "",
        "| claim | ordering (paper) | ours | holds |",
        "|---|---|---|---|",
    ]
    for s in summary.values():
        names = [p["pair"].split(" > ")[0] for p in s["pairs"]] + [
            p["pair"].split(" > ")[1] for p in s["pairs"][-1:]
        ]
        sep = (" > " if s["higher_is_better"] else " < ") if s["pairs"] else ", "
        names = names or list(s["ours"])
        paper = sep.join(f"{k} {s['paper'].get(k, '-')}" for k in names)
        ours = sep.join(
            f"{k} {_fmt(s['ours'][k]['mean'], float('nan'), s['metric']).split(' ±')[0]}" for k in names
        )
        clear = all(p["clear"] for p in s["pairs"]) and bool(s["pairs"])
        verdict = verdicts[s["holds"]] + (" (clear)" if clear and s["holds"] else "")
        lines.append(f"| {s['title']} | {paper} | {ours} | {verdict} |")
    lines.append("")
    for s in summary.values():
        lines += [f"### {s['title']}", "", f"Paper: {s['source']}. Ordering: {verdicts[s['holds']]}.", ""]
        lines += ["| method | paper | ours |", "|---|---|---|"]
        for label, o in s["ours"].items():
            ours = _fmt(o["mean"], o["half"], s["metric"])
            lines.append(f"| {label} | {s['paper'].get(label, '-')} | {ours} |")
        lines.append("")
        for p in s["pairs"]:
            h = "n/a" if math.isnan(p["half"]) else f"{p['half']:.3f}"
            clear = ", clear" if p["clear"] else ""
            mark = "yes" if p["holds"] else "no"
            lines.append(f"- {p['pair']}: {mark} (paired difference {p['diff']:+.3f} ± {h}{clear})")
        lines.append("")
    return "\n".join(lines) + "\n"


def run(
    output: str = "outputs/claims",
    images: int = 64,
    smoke: bool = False,
    priors: list[str] | None = None,
    scale: float | None = None,
    seed: int = 0,
    wait: bool = False,
    eglass_images: int = 8,
) -> dict:
    """Measure every claim and write ``claims.md`` / ``claims.json`` under ``output``."""
    torch.manual_seed(seed)
    if smoke:
        images, scale = min(images, 2), 0.01 if scale is None else scale
    scale = 1.0 if scale is None else scale
    if images < 1 or not scale > 0:
        raise ValueError(f"images must be >= 1 and scale > 0, got {images}, {scale}")
    r = Runner(Path(output), images, smoke, priors or [], scale, seed, wait)
    r.eglass_images = 2 if smoke else eglass_images
    t0 = time.perf_counter()
    values = measure(r)
    summary = {c.key: judge(c, values[c.key]) for c in CLAIMS}
    meta = {
        "images": images,
        "eglass_images": min(images, r.eglass_images),
        "scale": scale,
        "smoke": smoke,
        "feature_metric": r.feature_metric()[0],
        "seconds": time.perf_counter() - t0,
        "priors": {name: str(r.prior_path(name)) for name in PRIOR_DATA},
    }
    md = markdown(summary, meta)
    out = Path(output)
    atomic_write_bytes(out / "claims.json", json.dumps({"meta": meta, "claims": summary}, indent=1).encode())
    atomic_write_bytes(out / "claims.md", md.encode())
    from inversion.report import markdown_report

    markdown_report(out, "claims.md", title="The papers' claims, measured")
    print(md, flush=True)
    return {"meta": meta, "claims": summary}


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m inversion.claims", description=__doc__.split("\n\n")[0])
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
        "--wait", action="store_true", help="wait for DIR/DONE-<name> of priors still training there"
    )
    p.add_argument("--eglass-images", type=int, default=8, help="images of the e-GLASS rows (each is slow)")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(a.output, a.images, a.smoke, a.priors, a.scale, a.seed, a.wait, a.eglass_images)


if __name__ == "__main__":  # pragma: no cover
    main()
