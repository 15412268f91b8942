"""``python -m inversion``: restore every image of a folder or a built-in test split.

Example::

    python -m inversion --config configs/inversion/sr4.yaml --prior outputs/prior.ckpt \\
        --method iagan --input fashion_mnist --limit 100 --output outputs/sr4_iagan --devices 2

Writes under ``--output``: ``restored/<name>.png`` (under the input's names), ``degraded/<name>.png``,
``grid.png`` (degraded | restored | truth), ``metrics.csv`` (one row per image) and
``failures.txt`` (images that could not be read or restored, with the reason). Each finished image
leaves ``rows/<name>.json`` (written atomically, last); a rerun skips those images, so an
interrupted run resumes where it stopped. Image ``i`` uses seed ``seed + i`` (latent start),
``noise_seed + i`` (measurement noise) and, for per-image masks, mask seed ``mask seed + i``, so its
result does not depend on which process restores it. Under ``torchrun --nproc_per_node N -m
inversion ...`` or SLURM's ``srun`` it is a ``torch.distributed`` program (``inversion.distributed``):
each rank restores its share, rank 0 gathers the records and writes one ``metrics.csv``;
``--devices N`` starts N such processes through ``torch.distributed.run``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from inversion import distributed
from inversion.io import IMAGE_SUFFIXES, atomic_write_bytes, grid, load_image, save_png
from inversion.operators import Operator
from lcm.prior import Prior

__all__ = ["FIELDS", "build_parser", "list_items", "load_prior_spec", "main", "restore_folder"]

FIELDS = ["index", "name", "method", "task", "psnr", "ssim", "masked_psnr", "residual", "seconds"]
BUILTIN = ("fashion_mnist", "emoji")


@dataclass
class Item:
    index: int
    name: str
    load: Callable[[], torch.Tensor]
    label: int = -1


def load_prior_spec(spec: str, device: str | torch.device = "cpu") -> Prior:
    """A prior from a checkpoint path (``lcm.load_prior``) or a ``module:factory`` returning one."""
    if Path(spec).is_file():
        from lcm import load_prior

        return load_prior(spec, map_location=device).eval()
    if ":" in spec and not spec.endswith((".ckpt", ".pt", ".pth")):
        mod, _, fn = spec.partition(":")
        prior = getattr(importlib.import_module(mod), fn)()
        if not isinstance(prior, Prior):
            raise ValueError(f"prior factory {spec!r} returned {type(prior).__name__}, not an lcm.Prior")
        return prior.to(device).eval()
    raise FileNotFoundError(
        f"prior {spec!r}: no such checkpoint file; pass a checkpoint from `python -m lcm fit` "
        "or a factory 'package.module:function' that returns an lcm.Prior"
    )


def list_items(source: str, image_shape: tuple[int, int, int], limit: int | None = None) -> list[Item]:
    """The images to restore: a folder's image files (sorted by name), or a built-in test split."""
    c, h, _ = image_shape
    if source in BUILTIN:
        if source == "fashion_mnist":
            from datamodules import FashionMNISTDataset

            ds = FashionMNISTDataset(
                "test", resolution=h, resize_mode="pad" if h >= 28 else "resize", limit=limit
            )
        else:
            from datamodules import EmojiDataset

            ds = EmojiDataset("test", resolution=h, limit=limit)
        n = len(ds)

        def loader(i):
            return lambda: ds[i]["image"]

        return [Item(i, f"{source}_{i:05d}.png", loader(i), int(ds[i]["label"])) for i in range(n)]
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"input {source!r} is neither a folder nor one of the built-in splits {BUILTIN}"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"input folder {source!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    if limit is not None:
        files = files[:limit]

    def file_loader(p):
        return lambda: load_image(p, channels=c, size=h)

    stems = Counter(p.stem for p in files)  # a.png and a.jpg must not overwrite each other's outputs
    names = [p.stem + ".png" if stems[p.stem] == 1 else f"{p.stem}_{p.suffix[1:].lower()}.png" for p in files]
    return [Item(i, name, file_loader(p)) for i, (p, name) in enumerate(zip(files, names, strict=True))]


def _operator_for(operator: Operator, index: int) -> Operator:
    """Per-image masks follow the image's index (not its batch position or process)."""
    for_index = getattr(operator, "for_index", None)
    return for_index(index) if callable(for_index) else operator


def _display(y: torch.Tensor, x: torch.Tensor, operator: Operator) -> torch.Tensor:
    """An image of the measurement at x's size (nearest upsampling, gray -> colour, or A^dagger y)."""
    if y.dim() == 4:
        d = y
        if d.shape[-2:] != x.shape[-2:]:
            d = torch.nn.functional.interpolate(d, size=x.shape[-2:], mode="nearest")
    elif getattr(operator, "linear", False):
        d = operator.A_dagger(y)
    else:
        d = torch.zeros_like(x)
    if d.shape[1] != x.shape[1]:
        d = d.expand(-1, x.shape[1], -1, -1) if d.shape[1] == 1 else d.mean(1, keepdim=True)
    return d.clamp(0, 1)


def _row_path(out: Path, item: Item) -> Path:
    return out / "rows" / (Path(item.name).stem + ".json")


def _fail_path(out: Path, item: Item) -> Path:
    return out / "failed" / (Path(item.name).stem + ".json")


def restore_folder(
    prior: str,
    operator: Operator,
    input: str = "fashion_mnist",
    output: str = "outputs/inversion",
    method: str = "csgm",
    task: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    noise_seed: int = 0,
    options: dict | None = None,
    devices: int = 1,
    shard: int | None = None,
    num_shards: int = 1,
    device: str = "auto",
    num_threads: int | None = None,
    batch_size: int = 16,
    progress: bool = True,
    wait_timeout: float = 3600.0,
    _argv: list[str] | None = None,
) -> Path:
    """Restore the images of ``input`` and write restorations, degraded inputs, grid and metrics.

    Args:
        prior: checkpoint path, or ``package.module:factory`` returning an ``lcm.Prior``.
        operator: the forward model (``class_path`` + ``init_args`` in YAML, see configs/inversion/).
        input: a folder of images, or ``fashion_mnist`` / ``emoji`` (their test split).
        output: output folder (created; an existing one is resumed).
        method: ``csgm``, ``csgm_bp``, ``iagan``, ``iagan_bp``, ``latent``, ``latent_bp``, ``dgp``,
            ``dgp_bp`` (and other registered plug-ins; see ``inversion.methods.available_methods``).
        task: task name for metrics.csv (default: the operator's class name).
        limit: restore only ``limit`` images: a folder's first (by name), or a seeded subsample of a
            built-in split. A resumed run may raise it.
        seed: base seed of the latent starts (image i: seed + i).
        noise_seed: base seed of the measurement noise (image i: noise_seed + i).
        options: overrides of the method's config, e.g. ``{csgm_steps: 300, restarts: 3}``
            (``MethodConfig``; DGP: ``inversion.dgp.DGPConfig``, e.g. ``{preset: sr_mse}``).
        devices: number of processes to split the images over (started through
            ``torch.distributed.run``; ignored inside a torchrun / SLURM world).
        shard, num_shards: restore only images with ``index % num_shards == shard`` (set by the
            launcher; normally left alone).
        device: ``auto`` (CUDA when available, one GPU per process), ``cpu``, or ``cuda:k``.
        num_threads: torch intra-op threads per process (None: torch's default).
        batch_size: images restored together (one batched fit; results do not depend on it, up to
            floating-point rounding). Operators with per-image masks go one image at a time.
        progress: show a progress bar.
        wait_timeout: seconds a rank waits for the others in a collective (torchrun / SLURM /
            ``--devices``), or shard 0 for the other shards' records (``--shard``).

    Returns:
        the output folder.
    """
    from inversion.methods import available_methods, method_config

    if method not in available_methods():
        raise ValueError(f"method must be one of {available_methods()}, got {method!r}")
    method_config(method, options)  # a typo in options fails here, not once per image
    if devices < 1 or num_shards < 1:
        raise ValueError("devices and num_shards must be >= 1")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if devices > 1 and shard is None and not distributed.launched():
        distributed.launch(devices, _argv)
        return out
    group = distributed.from_environment(wait_timeout) if shard is None else None
    if group is not None:
        shard, num_shards = group.rank, group.world_size
        progress = progress and group.rank == 0
    shard = 0 if shard is None else int(shard)
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must lie in [0, num_shards={num_shards}), got {shard}")
    if num_threads:
        torch.set_num_threads(int(num_threads))
    if device == "auto":
        dev = torch.device(
            f"cuda:{(group.local_rank if group else shard) % torch.cuda.device_count()}"
            if torch.cuda.is_available()
            else "cpu"
        )
    else:
        dev = torch.device(device)
    pri = load_prior_spec(prior, dev)
    operator = operator.to(dev)
    items = list_items(input, pri.image_shape, limit)
    task = task or type(operator).__name__
    _check_run(out, prior, operator, input, method, task, seed, noise_seed, options)
    mine = [it for it in items if it.index % num_shards == shard]
    todo = [it for it in mine if not _row_path(out, it).exists()]
    _run_items(
        todo,
        pri,
        operator,
        out,
        method,
        task,
        seed,
        noise_seed,
        options or {},
        dev,
        progress,
        shard,
        batch_size,
    )
    if group is not None:  # torch.distributed: records gathered on rank 0, which writes the summary
        distributed.gather_records(group, out, mine, _row_path, _fail_path)
        if group.rank == 0:
            _finalize(items, out, method)
        distributed.finish(group)
        return out
    if num_shards > 1 and shard != 0:
        return out
    if num_shards > 1:  # --shard 0 of --num_shards: wait for the other shards' records
        _wait_for(items, out, wait_timeout)
    _finalize(items, out, method)
    return out


def _check_run(out: Path, prior, operator, source, method, task, seed, noise_seed, options) -> None:
    """Record what this run computes in ``run.json``; a resumed run must compute the same."""
    prior_id = str(prior)
    if Path(prior).is_file():
        h = hashlib.sha256()
        with open(prior, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        prior_id = f"sha256:{h.hexdigest()}"
    run = {
        "prior": prior_id,
        "operator": repr(operator),
        "input": str(source),
        "method": method,
        "task": task,
        "seed": seed,
        "noise_seed": noise_seed,
        "options": options or {},
    }
    path = out / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in run if old.get(k) != json.loads(json.dumps(run[k])))
        if diff:
            raise ValueError(
                f"output folder {str(out)!r} holds a run with other {', '.join(diff)} (see its run.json): "
                "its finished images would be mixed with this run's; choose another --output or delete it"
            )
        return
    atomic_write_bytes(path, json.dumps(run, indent=1).encode())


def _run_items(
    todo, prior, operator, out, method, task, seed, noise_seed, options, dev, progress, shard, batch_size=1
) -> None:
    """Restore ``todo`` in batches; a batch that fails is retried image by image to isolate the bad one."""
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{method}/{task}", unit="img", file=sys.stderr)
    # measurements that depend on the batch position (per-image masks) go one image at a time
    size = 1 if operator.row_dependent() else max(int(batch_size), 1)
    ctx = (prior, operator, out, method, task, seed, noise_seed, options, dev, shard)
    loaded: list[tuple[Item, torch.Tensor]] = []
    for k, it in enumerate(todo):
        try:
            x = it.load().to(dev)[None]
            if tuple(x.shape[1:]) != prior.image_shape:
                raise ValueError(f"image has shape {tuple(x.shape[1:])}, the prior needs {prior.image_shape}")
            loaded.append((it, x))
        except Exception as e:  # a bad image is reported and skipped; the run goes on
            _record_failure(out, it, e)
            if bar is not None:
                bar.update(1)
        if len(loaded) == size or (k == len(todo) - 1 and loaded):
            try:
                _restore_batch(loaded, *ctx)
            except Exception as e:
                if len(loaded) == 1:
                    _record_failure(out, loaded[0][0], e)
                else:
                    for one in loaded:
                        try:
                            _restore_batch([one], *ctx)
                        except Exception as e1:
                            _record_failure(out, one[0], e1)
            if bar is not None:
                bar.update(len(loaded))
            loaded = []
    if bar is not None:
        bar.close()


def _record_failure(out: Path, it: Item, e: Exception) -> None:
    rec = {"index": it.index, "name": it.name, "error": f"{type(e).__name__}: {e}"}
    atomic_write_bytes(_fail_path(out, it), json.dumps(rec).encode())
    print(f"[inversion] skipped {it.name}: {rec['error']}", file=sys.stderr)


def _restore_batch(batch, prior, operator, out, method, task, seed, noise_seed, options, dev, shard) -> None:
    """Restore the images of ``batch`` (``[(item, x (1, C, H, W))]``) together and write their records.

    Image i is measured with noise seed ``noise_seed + index`` and starts from seed ``seed + index``,
    whatever batch it is in.
    """
    from inversion.methods import restore

    t0 = time.perf_counter()
    items = [it for it, _ in batch]
    x = torch.cat([xi for _, xi in batch])
    ops = [_operator_for(operator, it.index) for it in items]
    with torch.no_grad():
        y = torch.cat(
            [
                op(xi, generator=torch.Generator(device=dev).manual_seed(noise_seed + it.index))
                for op, (it, xi) in zip(ops, batch, strict=True)
            ]
        )
    op = ops[0] if len(ops) == 1 else operator
    labels = None
    if prior.num_classes and all(it.label >= 0 for it in items):
        labels = torch.tensor([it.label for it in items], device=dev)
    res = restore(
        y, op, prior, method, seed=[seed + it.index for it in items], labels=labels, x_true=x, **options
    )
    seconds = (time.perf_counter() - t0) / len(items)
    shown = _display(y, x, op)
    for i, it in enumerate(items):
        save_png(shown[i], out / "degraded" / it.name)
        save_png(res.images[i], out / "restored" / it.name)
        m = {k: float(v[i]) for k, v in res.metrics.items()}
        row = {
            "index": it.index,
            "name": it.name,
            "method": method,
            "task": task,
            "psnr": m["psnr"],
            "ssim": m["ssim"],
            "masked_psnr": m.get("masked_psnr", ""),
            "residual": m["residual"],
            "seconds": seconds,
            "shard": shard,
        }
        atomic_write_bytes(_row_path(out, it), json.dumps(row).encode())
        _fail_path(out, it).unlink(missing_ok=True)


def _wait_for(items: list[Item], out: Path, timeout: float) -> None:
    t0 = time.time()
    while True:
        missing = [it for it in items if not _row_path(out, it).exists() and not _fail_path(out, it).exists()]
        if not missing:
            return
        if time.time() - t0 > timeout:
            raise TimeoutError(
                f"{len(missing)} images have no result after {timeout:.0f}s (first: {missing[0].name})"
            )
        time.sleep(1.0)


def _finalize(items: list[Item], out: Path, method: str) -> None:
    """Gather the per-image records into metrics.csv, failures.txt and grid.png (atomically)."""
    rows, fails = [], []
    for it in items:
        if _row_path(out, it).exists():
            rows.append(json.loads(_row_path(out, it).read_text()))
        elif _fail_path(out, it).exists():
            fails.append(json.loads(_fail_path(out, it).read_text()))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["index"]):
        w.writerow(r)
    atomic_write_bytes(out / "metrics.csv", buf.getvalue().encode())
    text = "".join(f"{f['name']}\t{f['error']}\n" for f in sorted(fails, key=lambda f: f["index"]))
    atomic_write_bytes(out / "failures.txt", text.encode())
    shown = [r for r in sorted(rows, key=lambda r: r["index"])][:16]
    if shown:
        tiles = []
        for r in shown:
            restored = load_image(out / "restored" / r["name"])
            degraded = load_image(out / "degraded" / r["name"], channels=restored.shape[0])
            tiles += [degraded, restored]
        save_png(grid(torch.stack(tiles), nrow=2 * min(4, len(shown))), out / "grid.png")
    if rows:
        mean = {k: sum(float(r[k]) for r in rows) / len(rows) for k in ("psnr", "ssim", "seconds")}
        print(
            f"[inversion] {method}: {len(rows)} images, PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}, "
            f"{mean['seconds']:.2f} s/image -> {out / 'metrics.csv'}",
            file=sys.stderr,
        )
    if fails:
        print(f"[inversion] {len(fails)} image(s) failed, listed in {out / 'failures.txt'}", file=sys.stderr)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m inversion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML preset (configs/inversion/*.yaml)")
    parser.add_function_arguments(restore_folder, skip={"_argv"})
    return parser


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    cfg = parser.parse_args(argv)
    init = parser.instantiate_classes(cfg)
    kwargs = {k: v for k, v in init.items() if k != "config"}
    return restore_folder(**kwargs, _argv=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
