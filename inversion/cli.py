"""``python -m inversion``: restore every image of a folder or a built-in test split.

Example::

    python -m inversion --config configs/inversion/sr4.yaml --prior outputs/prior.ckpt \\
        --method iagan --input fashion_mnist --limit 100 --output outputs/sr4_iagan --devices 2

Writes under ``--output``: ``restored/<name>`` (``<name>``: the file's path relative to the input, kept
when it ends in ``.png``, else with ``.png`` appended, so every input file has its own output),
``degraded/<name>``, ``truth/`` and ``adjoint/`` (A†y, linear operators), ``grid.png`` (degraded |
restored | truth, the first 16 images), ``metrics.csv`` (one row per image), ``failures.txt`` (images
that could not be read or restored, with the reason) and ``report.html`` (``inversion.report``: every
image, loss curves, mean ± 95% interval, failures, the effective configuration). ``python -m inversion
compare OUT1 OUT2 ...`` writes one report comparing runs on the same images. Each finished image leaves
``rows/<name minus .png>.json`` (written atomically, last); a rerun skips those images, so an
interrupted run resumes where it stopped. An image with key ``k`` (a built-in split: its index; a
folder: a number derived from the file's relative path, so adding files never changes another file's
result) uses seed ``seed + k`` (latent start), ``noise_seed + k`` (measurement noise) and, for per-image
masks, mask seed ``mask seed + k``, so its result does not depend on which process restores it:
under ``torchrun --nproc_per_node N -m inversion ...`` or SLURM's ``srun`` it is a ``torch.distributed``
program (``inversion.distributed``): each rank restores its share, rank 0 gathers the records and
writes one ``metrics.csv``; ``--devices N`` starts N such processes through ``torch.distributed.run``.
A run that restores no image exits non-zero (and leaves no ``run.json`` behind).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from inversion import distributed
from inversion.io import atomic_write_bytes, load_image, save_png
from inversion.labels import apply_labels as _apply_labels
from inversion.labels import read_labels, write_labels_used
from inversion.operators import Operator
from inversion.prior_spec import load_prior_spec
from lcm.prior import Prior

__all__ = ["FIELDS", "build_parser", "list_items", "load_prior_spec", "main", "read_labels", "restore_folder"]

FIELDS = ["index", "name", "method", "task", "psnr", "ssim", "masked_psnr", "residual", "seconds"]
BUILTIN = ("fashion_mnist", "emoji")


@dataclass
class Item:
    index: int
    name: str
    load: Callable[[], torch.Tensor]
    label: int = -1
    source: str = ""  # the relative path of a folder file (labels CSV lookup)
    key: int = -1  # seed offset: the index for built-in splits, a hash of the relative path for folders

    def __post_init__(self):
        if self.key < 0:
            self.key = self.index


def output_name(rel: str) -> str:
    """The output name of an input file at relative path ``rel``: unique for any set of input names.

    ``rel`` is kept when it ends in ``.png`` and what precedes that is not itself an image name
    (``a.png``, ``a_png.png``); otherwise ``.png`` is appended (``a.PNG.png``, ``a.jpg.png``,
    ``a.jpg.png.png``). Two inputs never share an output, and a name depends on its own file only.
    """
    from datamodules.images import IMAGE_EXTENSIONS

    if rel.endswith(".png") and not rel[:-4].lower().endswith(IMAGE_EXTENSIONS):
        return rel
    return rel + ".png"


def _path_key(rel: str) -> int:
    """A stable 31-bit number of a relative path (its seed offset; independent of the other files)."""
    return int.from_bytes(hashlib.sha256(os.fsencode(rel)).digest()[:4], "big") >> 1


def list_items(
    source: str,
    image_shape: tuple[int, int, int],
    limit: int | None = None,
    recursive: bool = False,
    exclude: tuple[str | os.PathLike, ...] = (),
) -> list[Item]:
    """The images to restore: a folder's image files (sorted by relative path), or a built-in test split.

    A folder's sub-folders are searched with ``recursive`` (else their images are counted and named in
    a note); folders in ``exclude`` (an output folder inside the input) are never read.
    """
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
    from datamodules.images import IMAGE_EXTENSIONS, list_image_files

    files = list_image_files(folder, recursive=recursive, exclude=exclude)
    if not recursive and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        nested = len(list_image_files(folder, exclude=exclude)) - len(files)
        if nested:
            print(
                f"[inversion] note: {nested} image file(s) in sub-folders of {source} are not restored; "
                "pass --recursive true to include them",
                file=sys.stderr,
            )
    if not files:
        raise ValueError(f"input folder {source!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if limit is not None:
        files = files[:limit]

    def file_loader(p):
        return lambda: load_image(p, channels=c, size=h)

    rels = [p.relative_to(folder).as_posix() for p in files]
    names = [output_name(r) for r in rels]
    # a case-insensitive output file system would merge A.png and a.png: tell those apart by their path
    folded = Counter(n.casefold() for n in names)
    names = [
        n if folded[n.casefold()] == 1 else f"{n[:-4]}.{_path_key(r):08x}.png"
        for n, r in zip(names, rels, strict=True)
    ]
    return [
        Item(i, name, file_loader(p), source=r, key=_path_key(r))
        for i, (p, r, name) in enumerate(zip(files, rels, names, strict=True))
    ]


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
    return out / "rows" / Path(item.name).with_suffix(".json")  # names end in .png: one record each


def _fail_path(out: Path, item: Item) -> Path:
    return out / "failed" / Path(item.name).with_suffix(".json")


def restore_folder(
    prior: str,
    operator: Operator,
    input: str = "fashion_mnist",
    output: str = "outputs/inversion",
    method: str = "csgm",
    task: str | None = None,
    limit: int | None = None,
    recursive: bool = False,
    seed: int = 0,
    noise_seed: int = 0,
    options: dict | None = None,
    critic: str | None = None,
    labels: str | None = None,
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
        prior: checkpoint path, or the name of a registered prior factory (``inversion.prior_spec``;
            a config cannot name other code to run).
        operator: the forward model (``class_path`` + ``init_args`` in YAML, see configs/inversion/).
        input: a folder of images, or ``fashion_mnist`` / ``emoji`` (their test split).
        output: output folder (created; an existing one is resumed).
        method: ``csgm``, ``csgm_bp``, ``iagan``, ``iagan_bp``, ``latent``, ``latent_bp``, ``dgp``,
            ``dgp_bp`` (and other registered plug-ins; see ``inversion.methods.available_methods``).
        task: task name for metrics.csv (default: the operator's class name).
        limit: restore only ``limit`` (>= 1) images: a folder's first (by relative path), or a seeded
            subsample of a built-in split. A resumed run may raise it.
        recursive: also restore the images in the input folder's sub-folders (outputs keep the
            sub-folder path); without it they are skipped with a note saying how many.
        seed: base seed of the latent starts (image i: seed + i).
        noise_seed: base seed of the measurement noise (image i: noise_seed + i).
        options: overrides of the method's config, e.g. ``{csgm_steps: 300, restarts: 3}``
            (``MethodConfig``; DGP: ``inversion.dgp.DGPConfig``, e.g. ``{preset: sr_mse}``).
        critic: the discriminator file of a published generator (BigGAN: ``--prior G_ema.pth --critic
            D.pth``; DGP's loss reads its features).
        labels: CSV of ``file,class`` rows for a class-conditional prior (strict, see
            ``inversion.labels``); images without a class are given one as DGP picks it (best of
            ``label_candidates`` random latent/class candidates). The classes used are written to
            ``labels.csv`` in the output folder.
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
    method_config(method, options)  # a typo or a bad value in options fails here, not once per image
    if devices < 1 or num_shards < 1:
        raise ValueError("devices and num_shards must be >= 1")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"--batch_size must be a positive number of images, got {batch_size}")
    if num_threads is not None and (isinstance(num_threads, bool) or int(num_threads) < 1):
        raise ValueError(f"--num_threads must be >= 1 (or left out for torch's default), got {num_threads}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"--limit must be a positive number of images (or left out for all), got {limit}")
    out = Path(output)
    exclude: tuple[Path, ...] = ()
    if input not in BUILTIN and Path(input).is_dir():
        src, dst = Path(input).resolve(), out.resolve()
        if dst == src:
            raise ValueError(
                f"--output {output!r} is the input folder itself: its grid and restorations would be read "
                "back as inputs; choose another folder (a sub-folder of the input is fine)"
            )
        if dst.is_relative_to(src):
            exclude = (out,)  # outputs inside the input are never read back as inputs
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
    pri = load_prior_spec(prior, dev, critic)
    operator = operator.to(dev)
    items = list_items(input, pri.image_shape, limit, recursive, exclude)
    if labels is not None:  # CSV rows for files beyond --limit are no error: match against the whole input
        known = (
            None
            if limit is None
            else [it.source for it in list_items(input, pri.image_shape, None, recursive, exclude)]
        )
        _apply_labels(items, read_labels(labels, pri.num_classes), known)
    task = task or type(operator).__name__
    _check_fits(operator, pri, items)
    extra = {"critic": _file_id(critic), "labels": _file_id(labels)}
    _check_run(out, prior, operator, input, method, task, seed, noise_seed, options, extra, pri)
    if labels is not None and shard == 0:  # the class each image was given, next to its outputs
        write_labels_used(out, items)
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


def _check_fits(operator: Operator, prior: Prior, items: list[Item]) -> None:
    """What would fail for every image fails here, before the first one (and before run.json)."""
    if prior.num_classes and max(it.label for it in items) >= prior.num_classes:
        raise ValueError(
            f"the input's labels reach {max(it.label for it in items)}, but the prior knows "
            f"{prior.num_classes} classes; use a prior trained on this dataset's classes"
        )
    dev = next(prior.parameters()).device
    probe = torch.zeros(1, *prior.image_shape, device=dev)
    try:
        with torch.no_grad():
            _operator_for(operator, items[0].key).A(probe)
    except (ValueError, RuntimeError) as e:
        raise ValueError(
            f"operator {type(operator).__name__} cannot measure this prior's {prior.image_shape} images: {e}"
        ) from e


def _file_id(path) -> str | None:
    """``sha256:<hex>`` of a file, the string itself for anything else, None for None."""
    if path is None or not Path(path).is_file():
        return None if path is None else str(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _check_run(
    out: Path, prior, operator, source, method, task, seed, noise_seed, options, extra=None, pri=None
) -> None:
    """Record what this run computes in ``run.json``; a resumed run must compute the same.

    ``config`` (the method's effective configuration, defaults included) and ``prior_info`` are recorded
    for the report and follow from the compared keys.
    """
    from dataclasses import asdict

    from inversion.methods import method_config

    run = {
        "prior": _file_id(prior),
        "operator": repr(operator),
        "input": str(source),
        "method": method,
        "task": task,
        "seed": seed,
        "noise_seed": noise_seed,
        "options": options or {},
        **{k: v for k, v in (extra or {}).items() if v is not None},  # absent in runs without them
    }
    info = {"config": asdict(method_config(method, options)), "prior_info": _prior_info(prior, pri)}
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
    atomic_write_bytes(path, json.dumps({**run, **info}, indent=1, default=str).encode())


def _prior_info(spec: str, pri) -> dict:
    info = {"path": str(spec)}
    if pri is not None:
        info.update(
            kind=type(pri).__name__,
            latent=getattr(pri, "latent_kind", None),
            image_shape=list(pri.image_shape),
            classes=int(getattr(pri, "num_classes", 0) or 0),
        )
    return info


def _run_items(
    todo, prior, operator, out, method, task, seed, noise_seed, options, dev, progress, shard, batch_size=1
) -> None:
    """Restore ``todo`` in batches; a batch that fails is retried image by image to isolate the bad one."""
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{method}/{task}", unit="img", file=sys.stderr)
    # measurements that depend on the batch position (per-image masks) go one image at a time
    size = 1 if operator.row_dependent() else int(batch_size)
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
    from callbacks.marks import StageMarks
    from inversion.methods import restore

    t0 = time.perf_counter()
    items = [it for it, _ in batch]
    x = torch.cat([xi for _, xi in batch])
    ops = [_operator_for(operator, it.key) for it in items]
    with torch.no_grad():
        y = torch.cat(
            [
                op(xi, generator=torch.Generator(device=dev).manual_seed(noise_seed + it.key))
                for op, (it, xi) in zip(ops, batch, strict=True)
            ]
        )
    op = ops[0] if len(ops) == 1 else operator
    labels = None
    if prior.num_classes and any(it.label >= 0 for it in items):  # -1 = unknown: restore() picks it
        labels = torch.tensor([it.label for it in items], device=dev)
    marks = StageMarks()
    res = restore(
        y, op, prior, method, seed=[seed + it.key for it in items], labels=labels, x_true=x,
        callbacks=[marks], **options,
    )  # fmt: skip
    seconds = (time.perf_counter() - t0) / len(items)
    shown = _display(y, x, op)
    starts = marks.starts(res.history.shape[0])
    adjoint = None
    if getattr(op, "linear", False):
        with torch.no_grad():
            adjoint = op.A_dagger(y)
    for i, it in enumerate(items):
        save_png(shown[i], out / "degraded" / it.name)
        save_png(res.images[i], out / "restored" / it.name)
        save_png(x[i], out / "truth" / it.name)
        if adjoint is not None and adjoint.shape[1:] == x.shape[1:]:
            save_png(adjoint[i].clamp(0, 1), out / "adjoint" / it.name)
        hist = res.history[:, i].tolist() if res.history.dim() == 2 else []
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
            "history": [round(v, 6) if math.isfinite(v) else None for v in hist],  # objective per step
            "stage_starts": starts,
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
    for it in items:  # index and name as listed now: records of an earlier listing cannot go stale
        if _row_path(out, it).exists():
            rows.append({**json.loads(_row_path(out, it).read_text()), "index": it.index, "name": it.name})
        elif _fail_path(out, it).exists():
            fails.append({**json.loads(_fail_path(out, it).read_text()), "index": it.index, "name": it.name})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["index"]):
        w.writerow(r)
    # names are file names: undecodable bytes are written back as they are on disk (surrogateescape)
    atomic_write_bytes(out / "metrics.csv", buf.getvalue().encode("utf-8", "surrogateescape"))
    text = "".join(f"{f['name']}\t{f['error']}\n" for f in sorted(fails, key=lambda f: f["index"]))
    atomic_write_bytes(out / "failures.txt", text.encode("utf-8", "surrogateescape"))
    shown = [r for r in sorted(rows, key=lambda r: r["index"])][:16]
    if shown:
        tiles = []
        for r in shown:
            restored = load_image(out / "restored" / r["name"])
            degraded = load_image(out / "degraded" / r["name"], channels=restored.shape[0])
            t = out / "truth" / r["name"]
            truth = load_image(t, channels=restored.shape[0]) if t.is_file() else torch.ones_like(restored)
            tiles += [degraded, restored, truth]
        from datamodules.grid import save_image_grid

        save_image_grid(torch.stack(tiles), out / "grid.png", nrow=3 * min(2, len(shown)), min_size=64)
    if rows:
        mean = {k: sum(float(r[k]) for r in rows) / len(rows) for k in ("psnr", "ssim", "seconds")}
        print(
            f"[inversion] {method}: {len(rows)} images, PSNR {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}, "
            f"{mean['seconds']:.2f} s/image -> {out / 'metrics.csv'}",
            file=sys.stderr,
        )
    if fails:
        print(f"[inversion] {len(fails)} image(s) failed, listed in {out / 'failures.txt'}", file=sys.stderr)
    if not rows:
        if not any((out / "rows").rglob("*.json")):
            (out / "run.json").unlink(missing_ok=True)  # nothing restored: do not pin this run's options
        raise RuntimeError(
            f"no image was restored ({len(fails)} failed, see {out / 'failures.txt'}); "
            "fix the cause named there and rerun"
        )
    from inversion.report import write_report

    print(f"[inversion] report: {write_report(out)}", file=sys.stderr)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m inversion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML preset (configs/inversion/*.yaml)")
    parser.add_function_arguments(restore_folder, skip={"_argv"})
    return parser


def main(argv: list[str] | None = None) -> Path:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:  # python -m inversion compare OUT1 OUT2 ...
        from inversion.report import compare_main

        return compare_main(argv[1:])
    parser = build_parser()
    cfg = parser.parse_args(argv)
    init = parser.instantiate_classes(cfg)
    kwargs = {k: v for k, v in init.items() if k != "config"}
    return restore_folder(**kwargs, _argv=argv)


if __name__ == "__main__":  # pragma: no cover
    main()
