"""``python -m inversion.dgp.manipulation_cli {jitter,morph,transfer}``: fit images with DGP (identity
operator, DGP Table 11 schedule) and write a manipulation grid (PNG) and ``report.html`` (atomic writes).

Example::

    python -m inversion.dgp.manipulation_cli jitter --config configs/inversion/dgp/jitter.yaml \\
        --prior runs/wgangp/checkpoints/last.ckpt --output outputs/dgp_jitter

Grids: ``jitter``: target | reconstruction | n jittered images; ``morph``: target A | lambda = 1 ... 0 |
target B; ``transfer``: target | reconstruction | one image per class. The rendering itself is the
library :mod:`inversion.dgp.manipulation`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from jsonargparse import CLI

from datamodules.io.grid import image_grid
from datamodules.io.html import figure_report
from datamodules.io.images import save_png

__all__ = ["jitter", "main", "morph", "transfer"]


def _check_depth(stages: list, depth: int) -> None:
    """Block counts beyond the generator's depth are an error here (no silent clamping)."""
    for i, st in enumerate(stages):
        b = st.get("blocks") if isinstance(st, dict) else None
        if isinstance(b, int) and not isinstance(b, bool) and b > depth:
            raise ValueError(
                f"stage {i} fine-tunes {b} blocks but this generator has {depth} blocks: "
                f"give blocks <= {depth} or blocks: all"
            )


def _fit(
    prior: str,
    input: str,
    indices: list[int],
    options: dict | None,
    seed: int,
    num_threads,
    command: str = "jitter",
    critic: str | None = None,
    labels_csv: str | None = None,
):
    from inversion.cli.items import list_items
    from inversion.cli.labels import apply_labels, read_labels
    from inversion.cli.prior import load_prior_spec
    from inversion.dgp.fit import DEFAULT_STAGES, DGPConfig, fit_dgp, load_preset, resolve_config
    from inversion.operators import Denoising

    if num_threads:
        torch.set_num_threads(int(num_threads))
    pri = load_prior_spec(prior, critic=critic)
    items = list_items(input, pri.image_shape)  # indices refer to the whole split / folder
    if labels_csv is not None:
        apply_labels(items, read_labels(labels_csv, pri.num_classes))
    if max(indices) >= len(items) or min(indices) < 0:
        raise ValueError(f"image indices {indices} out of range: {input!r} has {len(items)} images")
    x = torch.stack([items[i].load() for i in indices])
    labels = None
    if pri.num_classes:
        labels = torch.tensor([items[i].label for i in indices], dtype=torch.long)
    options = dict(options or {})
    if "stages" not in options and "preset" not in options:
        # DGP Table 11 (the command's preset), not the restoration default (Table 9)
        options["stages"] = load_preset(command)["stages"]
    cfg = resolve_config(DGPConfig().updated(options))
    _check_depth(list(cfg.stages or DEFAULT_STAGES), len(pri.generator.blocks))
    out = fit_dgp(pri, Denoising(sigma=0.0), x, seeds=[seed + i for i in indices], labels=labels, cfg=cfg)
    return pri, x, out


def _write(images: torch.Tensor, nrow: int, output: str, legend: str = "", info: dict | None = None) -> Path:

    path = Path(output) / "grid.png"
    save_png(image_grid(images, nrow, padding=1, min_size=64), path)
    report = figure_report(output, "DGP manipulation", [(legend or "grid", path)], info=info)
    print(f"[dgp] wrote {path} and {report}", file=sys.stderr)
    return path


def jitter(
    prior: str = "runs/wgangp/checkpoints/last.ckpt",
    input: str = "fashion_mnist",
    index: int = 0,
    sigma: float = 0.5,
    n: int = 8,
    output: str = "outputs/dgp_jitter",
    options: dict | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    critic: str | None = None,
    labels: str | None = None,
) -> Path:
    """Fit image ``index`` of ``input`` and write target | reconstruction | ``n`` jittered latents.

    Args:
        prior: checkpoint path or ``module:factory``.
        input: folder or ``fashion_mnist`` / ``emoji``.
        index: image to fit.
        sigma: std of the Gaussian noise added to the fitted latent (DGP Sec. 4.2).
        n: number of jittered images.
        output: folder of ``grid.png``.
        options: :class:`inversion.dgp.DGPConfig` overrides; without ``stages`` the fit uses DGP
            Table 11's schedule (``configs/inversion/dgp/jitter.yaml``). Block counts beyond the
            generator's depth raise ValueError.
        seed: seed of the candidate start and of the noise.
        num_threads: torch intra-op threads.
        critic: a published generator's discriminator file (BigGAN: ``--prior G_ema.pth --critic D.pth``).
        labels: CSV of ``file,class`` rows for a class-conditional prior (unknown: picked as DGP does).
    """
    from inversion.dgp.manipulation import jitter as jitter_fn

    pri, x, out = _fit(prior, input, [index], options, seed, num_threads, "jitter", critic, labels)
    lab = None if out.labels is None else int(out.labels[0])
    imgs = jitter_fn(pri, out.fit.generators[0], out.fit.latent[0], sigma, n, seed, lab)
    legend = f"jitter (sigma {sigma}): target | reconstruction | {n} jittered latents"
    info = {"prior": prior, "input": input, "index": index, "sigma": sigma, "seed": seed, "options": options}
    return _write(torch.cat([x, out.fit.images, imgs]), n + 2, output, legend, info)


def morph(
    prior: str = "runs/wgangp/checkpoints/last.ckpt",
    input: str = "fashion_mnist",
    index_a: int = 0,
    index_b: int = 1,
    steps: int = 7,
    output: str = "outputs/dgp_morph",
    options: dict | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    critic: str | None = None,
    labels: str | None = None,
) -> Path:
    """Fit images ``index_a`` and ``index_b`` and write A | lambda = 1 ... 0 (``steps`` values) | B.

    For a class-conditional prior with two classes the class embeddings are interpolated too (DGP's
    ``example.py`` morphing; BigGAN), otherwise both images must have the same class.
    """
    from inversion.dgp.manipulation import morph as morph_fn

    if steps < 2:
        raise ValueError(f"steps must be >= 2 (lambda = 1 and 0 at least), got {steps}")
    pri, x, out = _fit(prior, input, [index_a, index_b], options, seed, num_threads, "morph", critic, labels)
    lab = lab_b = None
    if out.labels is not None:
        lab = int(out.labels[0])
        if int(out.labels[1]) != lab:
            if not callable(getattr(pri.generator, "synthesize_embedded", None)):
                raise ValueError(
                    "morphing two classes interpolates class embeddings (a BigGAN prior); this prior needs "
                    "two images of the same class"
                )
            lab_b = int(out.labels[1])
    g, z = out.fit.generators, out.fit.latent
    lambdas = torch.linspace(1.0, 0.0, steps).tolist()
    imgs = morph_fn(pri, g[0], z[0], g[1], z[1], lambdas, lab, lab_b)
    legend = f"morph: image {index_a} | lambda = 1 ... 0 ({steps} steps) | image {index_b}"
    info = {"prior": prior, "input": input, "indices": [index_a, index_b], "seed": seed, "options": options}
    return _write(torch.cat([x[:1], imgs, x[1:]]), steps + 2, output, legend, info)


def transfer(
    prior: str = "runs/wgangp/checkpoints/last.ckpt",
    input: str = "fashion_mnist",
    index: int = 0,
    classes: list[int] | None = None,
    output: str = "outputs/dgp_transfer",
    options: dict | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    critic: str | None = None,
    labels: str | None = None,
) -> Path:
    """Fit image ``index`` (its own class) and write target | reconstruction | one image per class."""
    from inversion.dgp.manipulation import category_transfer

    pri, x, out = _fit(prior, input, [index], options, seed, num_threads, "transfer", critic, labels)
    imgs = category_transfer(pri, out.fit.generators[0], out.fit.latent[0], classes)
    legend = "category transfer: target | reconstruction | one image per class"
    info = {"prior": prior, "input": input, "index": index, "classes": classes, "seed": seed}
    info["options"] = options
    return _write(torch.cat([x, out.fit.images, imgs]), imgs.shape[0] + 2, output, legend, info)


def main(argv: list[str] | None = None) -> None:
    CLI([jitter, morph, transfer], args=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
