"""Runs the restorations of one process: its share of the images (a shard, or a ``torch.distributed``
rank), in batches; a batch that fails is retried image by image, and a bad image is recorded and skipped.

Image i is measured with noise seed ``noise_seed + key`` and starts from seed ``seed + key`` (``key``:
:attr:`~inversion.cli.items.Item.key`), whatever batch or process it is in.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import torch

from inversion.cli import launch as distributed
from inversion.cli.degraded_metrics import no_truth_metrics, residual_image
from inversion.cli.finish import FIELDS
from inversion.cli.items import Item
from inversion.cli.manifest import fail_path, row_path
from inversion.cli.writer import Restored, RunWriter
from inversion.operators import Operator
from lcm.prior import Prior

__all__ = ["Job", "Placement", "Runner", "operator_for", "place", "wait_for"]


@dataclass
class Placement:
    """Where this process runs and which images are its own (``index % num_shards == shard``)."""

    shard: int
    num_shards: int
    device: torch.device
    group: distributed.Group | None  # the torch.distributed world, None for a single process / --shard
    progress: bool  # this process shows the progress bar

    def owns(self, item: Item) -> bool:
        return item.index % self.num_shards == self.shard


def place(opts) -> Placement:
    """Join the ``torch.distributed`` world of torchrun / SLURM / ``--devices`` (or take ``--shard``),
    set the threads and pick this process's device (``auto``: one GPU per local rank)."""
    group = distributed.from_environment(opts.wait_timeout) if opts.shard is None else None
    shard, num_shards, progress = opts.shard, opts.num_shards, opts.progress
    if group is not None:
        shard, num_shards = group.rank, group.world_size
        progress = progress and group.rank == 0
    shard = 0 if shard is None else int(shard)
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must lie in [0, num_shards={num_shards}), got {shard}")
    if opts.num_threads:
        torch.set_num_threads(int(opts.num_threads))
    if opts.device == "auto":
        dev = torch.device(
            f"cuda:{(group.local_rank if group else shard) % torch.cuda.device_count()}"
            if torch.cuda.is_available()
            else "cpu"
        )
    else:
        dev = device_of(opts.device)
    return Placement(shard, num_shards, dev, group, progress)


def device_of(spec: str) -> torch.device:
    """``--device``: a device torch has here (not torch's driver error deep in the first fit)."""
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {spec!r} is not a device ({e}); use auto, cpu or cuda:k") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not n:
            raise ValueError(f"--device {spec!r}: no CUDA GPU is visible here; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {spec!r}: only {n} CUDA GPU(s) here (cuda:0 .. cuda:{n - 1})")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise ValueError(f"--device {spec!r}: use auto, cpu or cuda:k")
    return dev


@dataclass
class Job:
    """What every batch of a run shares."""

    prior: Prior
    operator: Operator
    method: str
    _: KW_ONLY
    task: str
    seed: int
    noise_seed: int
    options: dict  # the method's config overrides
    device: torch.device
    shard: int


def operator_for(operator: Operator, index: int) -> Operator:
    """Per-image masks follow the image's index (not its batch position or process)."""
    for_index = getattr(operator, "for_index", None)
    return for_index(index) if callable(for_index) else operator


def check_fits(operator: Operator, prior: Prior, items: list[Item]) -> None:
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
            operator_for(operator, items[0].key).A(probe)
    except (ValueError, RuntimeError) as e:
        raise ValueError(
            f"operator {type(operator).__name__} cannot measure this prior's {prior.image_shape} images: {e}"
        ) from e


class Runner:
    """Restores a list of items in batches of ``batch_size`` and hands each result to ``writer``."""

    def __init__(self, job: Job, writer: RunWriter, batch_size: int = 1, progress: bool = False):
        self.job, self.writer, self.progress = job, writer, progress
        # measurements that depend on the batch position (per-image masks) go one image at a time
        self.batch_size = 1 if job.operator.row_dependent() else int(batch_size)

    def run(self, todo: list[Item]) -> None:
        """Restore ``todo``; a batch that fails is retried image by image to isolate the bad one."""
        bar = None
        if self.progress and todo:
            from inversion.cli.progress import make_progress  # tqdm on a terminal, else plain lines with ETA

            bar = make_progress(len(todo), f"{self.job.method}/{self.job.task}", sys.stderr)
        loaded: list[tuple[Item, torch.Tensor]] = []
        for k, it in enumerate(todo):
            try:
                loaded.append((it, self._load(it)))
            except Exception as e:  # a bad image is reported and skipped; the run goes on
                self.writer.write_failure(it, e)
                if bar is not None:
                    bar.update(1)
            if len(loaded) == self.batch_size or (k == len(todo) - 1 and loaded):
                self._restore_or_isolate(loaded)
                if bar is not None:
                    bar.update(len(loaded))
                loaded = []
        if bar is not None:
            bar.close()

    def _load(self, it: Item) -> torch.Tensor:
        x = it.load().to(self.job.device)[None]
        shape = self.job.prior.image_shape
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"image has shape {tuple(x.shape[1:])}, the prior needs {shape}")
        return x

    def _restore_or_isolate(self, loaded: list[tuple[Item, torch.Tensor]]) -> None:
        try:
            self.writer.write_on_batch_end(self.restore(loaded))
        except Exception as e:
            if len(loaded) == 1:
                self.writer.write_failure(loaded[0][0], e)
                return
            for one in loaded:
                try:
                    self.writer.write_on_batch_end(self.restore([one]))
                except Exception as e1:
                    self.writer.write_failure(one[0], e1)

    def _measure(
        self, batch: list[tuple[Item, torch.Tensor]]
    ) -> tuple[list[Operator], torch.Tensor, torch.Tensor]:
        """Each image's operator, the batch's measurements ``y`` and its truth (None: not known)."""
        dev = self.job.device
        ops = [operator_for(self.job.operator, it.key) for it, _ in batch]
        with torch.no_grad():
            y = torch.cat(
                [
                    op(xi, generator=torch.Generator(device=dev).manual_seed(self.job.noise_seed + it.key))
                    for op, (it, xi) in zip(ops, batch, strict=True)
                ]
            )
        return ops, y, torch.cat([xi for _, xi in batch])

    def restore(self, batch: list[tuple[Item, torch.Tensor]]) -> Restored:
        """Restore the images of ``batch`` (``[(item, x (1, C, H, W))]``) together."""
        from callbacks.marks import StageMarks
        from inversion.methods import restore

        job = self.job
        t0 = time.perf_counter()
        items = [it for it, _ in batch]
        ops, y, x = self._measure(batch)
        op = ops[0] if len(ops) == 1 else job.operator
        labels = None
        if job.prior.num_classes and any(it.label >= 0 for it in items):  # -1 = unknown: restore() picks it
            labels = torch.tensor([it.label for it in items], device=job.device)
        marks = StageMarks()
        res = restore(
            y, op, job.prior, job.method, seed=[job.seed + it.key for it in items], labels=labels, x_true=x,
            callbacks=[marks], **job.options,
        )  # fmt: skip
        seconds = (time.perf_counter() - t0) / len(items)
        metrics = {**no_truth_metrics(res.images, y, op), **(res.metrics or {})}
        starts = marks.starts(res.history.shape[0])
        adjoint = None
        if getattr(op, "linear", False):
            with torch.no_grad():
                adjoint = op.A_dagger(y)
            if adjoint.shape[1:] != res.images.shape[1:]:
                adjoint = None
        records = []
        for i, it in enumerate(items):
            hist = res.history[:, i].tolist() if res.history.dim() == 2 else []
            m = {k: float(v[i]) for k, v in metrics.items()}
            records.append(
                {
                    "index": it.index,
                    "name": it.name,
                    "method": job.method,
                    "task": job.task,
                    "psnr": m.get("psnr", ""),
                    "ssim": m.get("ssim", ""),
                    "masked_psnr": m.get("masked_psnr", ""),
                    "residual": m["residual"],
                    "seconds": seconds,
                    "shard": job.shard,
                    # the objective per step
                    "history": [round(v, 6) if math.isfinite(v) else None for v in hist],
                    "stage_starts": starts,
                    **_label_record(it, res.labels, i),
                    **{k: v for k, v in m.items() if k not in FIELDS},  # no-truth statistics
                }
            )
        shown = _display(y, res.images, op)
        return Restored(
            items, x, shown, res.images, adjoint, records, y, ops, residual_image(res.images, y, op)
        )


def _label_record(item: Item, labels: torch.Tensor | None, i: int) -> dict:
    """The class an image was restored as: ``label`` (given, or as the method picked it: ``label_picked``)."""
    if labels is None:
        return {}
    return {"label": int(labels[i]), "label_picked": item.label < 0}


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


def wait_for(items: list[Item], out: Path, timeout: float) -> None:
    """Shard 0 of ``--num_shards``: wait until every image has a record (finished or failed)."""
    t0 = time.time()
    while True:
        missing = [it for it in items if not row_path(out, it).exists() and not fail_path(out, it).exists()]
        if not missing:
            return
        if time.time() - t0 > timeout:
            raise TimeoutError(
                f"{len(missing)} images have no result after {timeout:.0f}s (first: {missing[0].name})"
            )
        time.sleep(1.0)
