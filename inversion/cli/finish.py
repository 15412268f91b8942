"""The end of a run: the per-image records become ``metrics.csv``, ``failures.txt``, ``grid.png`` (degraded |
restored | truth, the first 16 images) and ``report.html`` (:func:`inversion.cli.report.write_report`)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import torch

from datamodules.io.atomic import atomic_write_bytes
from datamodules.io.images import load_image
from inversion.cli.items import Item
from inversion.cli.manifest import fail_path, row_path, unpin_if_empty

__all__ = ["FIELDS", "finalize"]

FIELDS = ["index", "name", "method", "task", "psnr", "ssim", "masked_psnr", "residual", "seconds"]
TRUTH_FIELDS = ("psnr", "ssim", "masked_psnr")  # left out of a run without ground truth
EXTRA_FIELDS = ("hole_fraction", "hole_seam", "note")  # written when a row has them
GRID_IMAGES = 16


def finalize(items: list[Item], out: Path, method: str) -> None:
    """Gather the records of ``items`` into metrics.csv, failures.txt, grid.png and report.html
    (atomically). Raises when no image was restored (and then unpins a folder that holds none)."""
    rows, fails = _records(items, out)
    _write_metrics(rows, out)
    text = "".join(f"{f['name']}\t{f['error']}\n" for f in fails)
    atomic_write_bytes(out / "failures.txt", text.encode("utf-8", "surrogateescape"))
    if rows:
        _write_grid(rows[:GRID_IMAGES], out)
        _print_summary(rows, out, method)
    if fails:
        print(f"[inversion] {len(fails)} image(s) failed, listed in {out / 'failures.txt'}", file=sys.stderr)
    if not rows:
        unpin_if_empty(out)  # nothing restored: do not pin this run's options
        raise RuntimeError(
            f"no image was restored ({len(fails)} failed, see {out / 'failures.txt'}); "
            "fix the cause named there and rerun"
        )
    from inversion.cli.report import write_report

    print(f"[inversion] report: {write_report(out)}", file=sys.stderr)


def _records(items: list[Item], out: Path) -> tuple[list[dict], list[dict]]:
    """The finished and the failed records of ``items``, by index; index and name as listed now, so that
    records of an earlier listing cannot go stale."""
    rows, fails = [], []
    for it in items:
        if row_path(out, it).exists():
            rows.append({**json.loads(row_path(out, it).read_text()), "index": it.index, "name": it.name})
        elif fail_path(out, it).exists():
            fails.append({**json.loads(fail_path(out, it).read_text()), "index": it.index, "name": it.name})
    return sorted(rows, key=lambda r: r["index"]), sorted(fails, key=lambda f: f["index"])


def _print_summary(rows: list[dict], out: Path, method: str) -> None:
    def mean(k: str) -> float:
        return sum(float(r[k]) for r in rows) / len(rows)

    scores = (
        f"PSNR {mean('psnr'):.2f} dB, SSIM {mean('ssim'):.4f}"
        if _has_truth(rows)
        else f"no ground truth, residual {mean('residual'):.4f}"
    )
    print(
        f"[inversion] {method}: {len(rows)} images, {scores}, {mean('seconds'):.2f} s/image -> "
        f"{out / 'metrics.csv'}",
        file=sys.stderr,
    )


def _has_truth(rows: list[dict]) -> bool:
    return all(r.get("psnr", "") != "" for r in rows)


def metric_fields(rows: list[dict]) -> list[str]:
    """The columns of metrics.csv: :data:`FIELDS` (less PSNR / SSIM without ground truth), then the
    no-truth statistics and notes the rows have."""
    fields = FIELDS if _has_truth(rows) else [f for f in FIELDS if f not in TRUTH_FIELDS]
    return fields + [f for f in EXTRA_FIELDS if any(f in r for r in rows)]


def _write_metrics(rows: list[dict], out: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=metric_fields(rows), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    # names are file names: undecodable bytes are written back as they are on disk (surrogateescape)
    atomic_write_bytes(out / "metrics.csv", buf.getvalue().encode("utf-8", "surrogateescape"))


def _write_grid(rows: list[dict], out: Path) -> None:
    from datamodules.io.grid import save_image_grid

    tiles = []
    for r in rows:
        restored = load_image(out / "restored" / r["name"])
        degraded = load_image(out / "degraded" / r["name"], channels=restored.shape[0])
        t = out / "truth" / r["name"]  # without truth: the residual's tile
        if not t.is_file():
            t = out / "residual" / r["name"]
        truth = load_image(t, channels=restored.shape[0]) if t.is_file() else torch.ones_like(restored)
        tiles += [degraded, restored, truth]
    save_image_grid(torch.stack(tiles), out / "grid.png", nrow=3 * min(2, len(rows)), min_size=64)
