"""The method runs behind every claim row: per claim key, label -> per-image values of its metric."""

from __future__ import annotations

import torch

from benchmarks.claims.papers import CLAIMS
from benchmarks.claims.runner import Runner
from lcm.configs import config_dir, load_options

__all__ = ["ROW_GROUPS", "defence", "eglass", "measure"]


def _scaled_stages(stages: list[dict], runner: Runner) -> list[dict]:
    return [{**s, "iterations": runner.steps(s["iterations"])} for s in stages]


def _csgm_opts(r: Runner) -> dict:  # IAGAN's code's rules (issue 29's defaults), named: they key the cache
    return {"csgm_steps": r.steps(500), "restarts": 5, "variant": "code"}


def _iagan_opts(r: Runner) -> dict:
    return {**_csgm_opts(r), "iagan_steps": r.steps(300), "iagan_latent_lr": 1e-4, "iagan_generator_lr": 1e-3}


def _dgp_preset(r: Runner, name: str) -> dict:
    from inversion.dgp import load_preset

    opts = load_preset(name)
    opts["stages"] = _scaled_stages(opts["stages"], r)
    opts["n_candidates"] = max(8, round(opts.get("n_candidates", 500) * r.scale))
    return opts


def measure(r: Runner, rows: list[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """Per claim key: label -> per-image values of the claim's metric; ``rows``: only these claim keys
    (and the runs behind them), default every claim."""
    keys = [c.key for c in CLAIMS]
    wanted = set(keys if rows is None else rows)
    if not wanted or wanted - set(keys):
        raise ValueError(f"unknown claim rows {sorted(wanted - set(keys))}; choose from {keys}")
    res: dict[str, dict[str, list[float]]] = {}
    inp: dict[str, dict] = {}  # the one inpainting task shared by DGP Table 2, TV and LCM Sec. 3
    # in the full table's order: the priors that finish training last (LCM Sec. 3) are measured last
    for measured, run_group in ROW_GROUPS.values():
        if wanted & set(measured):
            res.update(run_group(r, inp, wanted))
    return {k: v for k, v in res.items() if k in wanted}


def _iagan_rows(r: Runner, inp: dict, wanted: set) -> dict:
    from inversion.operators import SuperResolution

    sr_bic = SuperResolution(factor=4, kernel="bicubic", padding="zeros")  # IAGAN's downsample_bicubic
    fm = "fashion_mnist"
    cs = r.restore_run("sr4_csgm", "wgangp", fm, sr_bic, "csgm", _csgm_opts(r), bp_label="BP")
    ia = r.restore_run("sr4_iagan", "wgangp", fm, sr_bic, "iagan", _iagan_opts(r), bp_label="BP")
    return {
        "iagan_t2": {
            "CSGM": cs["psnr"],
            "CSGM-BP": cs["BP:psnr"],
            "IAGAN": ia["psnr"],
            "IAGAN-BP": ia["BP:psnr"],
        },
        "iagan_bp": {"CSGM": cs["psnr"], "CSGM-BP": cs["BP:psnr"]},
    }


def _dgp_t4_rows(r: Runner, inp: dict, wanted: set) -> dict:
    """DGP Table 4: the variants as in benchmarks.dgp, plus the perceptual loss."""
    from inversion.dgp.losses import PerceptualLoss
    from inversion.operators import SuperResolution

    sr_lan = SuperResolution(factor=4, kernel="lanczos")
    base = _dgp_preset(r, "sr_critic")
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
    out: dict[str, list[float]] = {}
    for label, (stages, init, extra) in variants.items():
        opts = {**base, "stages": stages, "init_metric": init}  # the preset's other options (w_nll, ...)
        if extra:
            shape = r.prior("wgangp").image_shape
            opts["loss_terms"] = {"perceptual": PerceptualLoss(shape)}
        key = "sr4_dgp_" + label.replace(" + ", "_").lower()
        out[label] = r.restore_run(key, "wgangp", "fashion_mnist", sr_lan, "dgp", opts)["psnr"]
    return {"dgp_t4": out}


def _inpainting_runs(r: Runner) -> dict:
    """The one centre-hole inpainting task of DGP Table 2, TV and LCM Sec. 3: label -> (prior, method,
    opts)."""
    return {
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


def _inpaint(r: Runner, inp: dict, labels) -> None:
    from inversion.operators import Inpainting

    hole = Inpainting("center", box_size=50 / 128)
    runs = _inpainting_runs(r)
    for label in labels:
        if label not in inp:
            prior, method, opts = runs[label]
            key = "inpaint_" + label.split(" ")[0].lower() + ("_hd" if "1024" in label else "")
            inp[label] = r.restore_run(key, prior, "fashion_mnist", hole, method, opts)


def _inpainting_rows(r: Runner, inp: dict, wanted: set) -> dict:
    rows = {"dgp_t2": ("DGP", "IAGAN", "CSGM", "DIP", "TV"), "tv": ("TV", "IAGAN", "CSGM")}
    rows = {k: v for k, v in rows.items() if k in wanted}
    _inpaint(r, inp, dict.fromkeys(label for labels in rows.values() for label in labels))
    metric = {"dgp_t2": "masked_psnr", "tv": "psnr"}
    return {key: {k: inp[k][metric[key]] for k in labels} for key, labels in rows.items()}


def _lcm_rows(r: Runner, inp: dict, wanted: set) -> dict:
    _inpaint(r, inp, ("CSGM", "DIP", "LCM", "GLO (1024-d)", "GLO (64-d)", "AE"))
    rows = {"WGAN-GP": inp["CSGM"]["feature"]}  # eq. 5 on the GAN's z (CSGM, no Gaussian prior)
    rows.update({k: inp[k]["feature"] for k in ("LCM", "GLO (1024-d)", "GLO (64-d)", "AE", "DIP")})
    return {
        "lcm_s3": rows,
        "lcm_s3_ae": {k: rows[k] for k in ("GLO (1024-d)", "AE")},
        "lcm_s3_dip": {k: rows[k] for k in ("GLO (1024-d)", "DIP")},
    }


def _cri_rows(r: Runner, inp: dict, wanted: set) -> dict:
    """CRI Fig. 5 / Table 4: emoji colorization with the colorization preset's weights, steps scaled."""
    from inversion.operators import Colorization

    color = Colorization()
    preset = load_options(config_dir() / "inversion" / "cri" / "colorize.yaml")
    cri = {
        **{k: v for k, v in preset.items() if k.startswith("lambda_")},
        "n_samples": max(64, round(10_000 * r.scale)),
        "offset_steps": r.steps(200),
        "tune_steps": r.steps(100),
        "cache_dir": str(r.out / "cache" / "cri"),
    }
    f5: dict[str, list[float]] = {}
    t4: dict[str, list[float]] = {}
    for k in (1, 5, 10):
        opts = {**cri, "n_clusters": k, "regularizer": "l2"}
        out = r.restore_run(f"color_cri_k{k}", "wgangp_emoji", "emoji", color, "cri", opts)
        f5[f"{k} cluster" + ("s" if k > 1 else "")] = out["perceptual"]
    for reg, label in (("l2", "L2"), ("l1", "L1"), ("none", "none")):
        opts = {**cri, "n_clusters": 10, "regularizer": reg}
        key = f"color_cri_k10{'' if reg == 'l2' else '_' + reg}"
        t4[label] = r.restore_run(key, "wgangp_emoji", "emoji", color, "cri", opts)["perceptual"]
    return {"cri_f5": f5, "cri_t4": t4}


def _dgp_t5_rows(r: Runner, inp: dict, wanted: set) -> dict:
    return {"dgp_t5": defence(r)}


def _eglass_rows(r: Runner, inp: dict, wanted: set) -> dict:
    from inversion.operators import SuperResolution

    speed, div = eglass(r, SuperResolution(factor=4, kernel="bicubic"))
    return {"eglass": speed, "eglass_div": div}


#: each group of method runs: the claim rows it measures (it runs when one of them is asked for) and the
#: function that measures them; in the full table's order
ROW_GROUPS = {
    "iagan": (("iagan_t2", "iagan_bp"), _iagan_rows),
    "dgp_t4": (("dgp_t4",), _dgp_t4_rows),
    "inpainting": (("dgp_t2", "tv"), _inpainting_rows),
    "cri": (("cri_f5", "cri_t4"), _cri_rows),
    "dgp_t5": (("dgp_t5",), _dgp_t5_rows),
    "eglass": (("eglass", "eglass_div"), _eglass_rows),
    "lcm": (("lcm_s3", "lcm_s3_ae", "lcm_s3_dip"), _lcm_rows),
}


def defence(r: Runner) -> dict[str, list[float]]:
    from inversion.cri.classifier import load_classifier, save_classifier
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
        save_classifier(train_classifier(x, lab, 10, steps=steps, batch_size=128, seed=r.seed, **kw), path)
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

    vals = r.cached("defence", spec, r.n, compute, ("wgangp",))
    return {k: vals[k] for k in ("clean", "attacked", "DGP", "CSGM", "smoothing")}


def eglass(r: Runner, op) -> tuple[dict, dict]:
    """e-GLASS from its IAGAN-style start against PULSE-style restarts, both to ``k`` distinct feasible
    solutions under one criterion and one distinctness rule, timed as the e-GLASS benchmark times them
    (:func:`benchmarks.eglass.race`: the start's fit is on e-GLASS's clock)."""
    from benchmarks.eglass import race
    from inversion.exploration import Distinctness, Feasibility

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

    vals = r.cached("eglass", {"k": k, "scale": r.scale, "api": 3, "fit": fit_kw}, n, compute, ("wgangp",))
    speed = {"e-GLASS": vals["eglass_sps"], "restarts": vals["restarts_sps"]}
    div = {"e-GLASS": vals["eglass_div"], "restarts": vals["restarts_div"]}
    return speed, div


def _diversity(r: Runner, imgs: torch.Tensor) -> float:
    if imgs.shape[0] < 2:
        return 0.0
    i, j = torch.triu_indices(imgs.shape[0], imgs.shape[0], 1)
    with torch.no_grad():
        return float(r.perceptual()(imgs[i], imgs[j]).mean())
