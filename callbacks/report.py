"""Static HTML report pages (one self-contained file, images embedded as PNG data URIs, written
atomically) and :class:`PriorReport`, the prior-training callback that writes samples per checkpoint
and ``report.html`` at the end (sample grid, loss curves, validation metrics when logged).

``inversion.report`` builds the restoration reports on the same primitives.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

__all__ = [
    "PriorReport",
    "figure_png",
    "figure_report",
    "img_tag",
    "json_report",
    "page",
    "png_bytes",
    "table",
]

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .grids{display:flex;flex-wrap:wrap;gap:18px}
img{image-rendering:pixelated;max-width:100%} .sub{color:#666;font-size:13px}
pre{background:#f7f7f7;padding:8px;font-size:12px} .fail{color:#a00}
"""


def png_bytes(img) -> bytes:
    """A PIL image as PNG bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def img_tag(data: bytes, alt: str, min_width: int = 0) -> str:
    """An ``<img>`` holding PNG ``data`` inline (no file beside the page to lose); shown at least
    ``min_width`` px wide by an integer zoom (pixelated, like the nearest-neighbour grids)."""
    style = ""
    if min_width:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            zoom = math.ceil(min_width / im.width) if im.width < min_width else 1
            if zoom > 1:
                style = f' style="width:{im.width * zoom}px"'
    b64 = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{b64}">'


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="PNG", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def page(title: str, body: Sequence[str]) -> bytes:
    """A whole HTML page (UTF-8 bytes) around ``body`` fragments."""
    head = f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    return (head + f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n").encode(
        "utf-8",
        "backslashreplace",  # a non-UTF-8 file name (surrogate-escaped) shows as \udcXX
    )


def table(header: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned, the others right-aligned."""

    def cell(tag: str, i: int, v: object) -> str:
        cls = ' class="l"' if i < left else ""
        return f"<{tag}{cls}>{html.escape(str(v))}</{tag}>"

    out = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"]
    out += ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows]
    return "".join(out) + "</table>"


def write_page(path: str | Path, title: str, body: Sequence[str]) -> Path:
    """Write :func:`page` to ``path`` atomically."""
    from datamodules._common import atomic_write

    data = page(title, body)
    return atomic_write(path, lambda f: f.write(data))


def figure_report(
    folder: str | Path,
    title: str,
    figures: Sequence[tuple[str, str | Path | bytes]],
    info: dict | None = None,
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]]]] = (),
    intro: str = "",
) -> Path:
    """Write ``<folder>/report.html``: ``tables`` as ``(heading, header, rows)``, ``figures`` as
    ``(caption, PNG path or bytes)`` and the configuration ``info``; returns its path."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if intro:
        body.append(f'<p class="sub">{html.escape(intro)}</p>')
    for heading, header, rows in tables:
        body += [f"<h2>{html.escape(heading)}</h2>", table(header, rows)]
    for caption, fig in figures:
        data = fig if isinstance(fig, bytes) else Path(fig).read_bytes()
        body += [f"<h2>{html.escape(caption)}</h2>", img_tag(data, caption, min_width=480)]
    if info:
        body += [
            "<h2>Configuration</h2>",
            f"<pre>{html.escape(json.dumps(info, indent=1, default=str))}</pre>",
        ]
    return write_page(Path(folder) / "report.html", title, body)


def _curves_png(curves: dict[str, list[tuple[int, float]]], title: str) -> bytes | None:
    curves = {k: v for k, v in curves.items() if len(v) > 1}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (name, pts) in zip(axes.flat, sorted(curves.items()), strict=False):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.9)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)


class PriorReport(pl.Callback):
    """Prior training: a sample grid at every checkpoint save, the logged metrics every ``every_n_steps``
    steps, and at the end of training ``<root>/report.html`` (latest samples, loss curves, validation
    metrics when the module logs ``val*`` metrics) and ``<root>/training.json`` (``global_step``,
    ``max_steps``, ``done``: whether ``max_steps`` was reached). ``<root>`` is the trainer's log dir.

    The recorded curves are kept in checkpoints, so a resumed run reports its whole history.
    Works with any module that has ``log_samples()`` (``lcm.PriorModule``).
    """

    def __init__(self, every_n_steps: int = 10, enabled: bool = True):
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every = int(every_n_steps)
        self.enabled = bool(enabled)
        self.curves: dict[str, list[tuple[int, float]]] = {}

    # metrics -------------------------------------------------------------------------------
    def _record(self, trainer: pl.Trainer, prefix_ok) -> None:
        step = int(trainer.global_step)
        for k, v in trainer.callback_metrics.items():
            if not prefix_ok(k):
                continue
            try:
                val = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(val):
                pts = self.curves.setdefault(k, [])
                if not pts or pts[-1][0] != step:
                    pts.append((step, val))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.enabled and trainer.is_global_zero and trainer.global_step % self.every == 0:
            self._record(trainer, lambda k: not k.startswith("val"))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.enabled and trainer.is_global_zero and not trainer.sanity_checking:
            self._record(trainer, lambda k: k.startswith("val"))

    def state_dict(self) -> dict[str, Any]:
        return {"curves": {k: [list(p) for p in v] for k, v in self.curves.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curves = {
            k: [(int(s), float(v)) for s, v in pts] for k, pts in state_dict.get("curves", {}).items()
        }

    # samples per checkpoint ----------------------------------------------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if self.enabled and hasattr(pl_module, "log_samples"):
            pl_module.log_samples()  # on every rank: it asks trainer.log_dir, a collective under DDP

    # the end -------------------------------------------------------------------------------------
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.enabled:
            return
        root = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank asks
        if hasattr(pl_module, "log_samples"):  # the final samples; every rank calls, rank 0 writes
            pl_module.log_samples()
        if not trainer.is_global_zero:
            return
        from datamodules._common import atomic_write

        step, max_steps = int(trainer.global_step), int(trainer.max_steps)
        done = max_steps > 0 and step >= max_steps
        status = {"global_step": step, "max_steps": max_steps, "done": done}
        data = json.dumps(status).encode()
        atomic_write(root / "training.json", lambda f: f.write(data))
        reach = f"step {step} of max_steps {max_steps}" if max_steps > 0 else f"step {step}"
        print(f"[lcm] training stopped at {reach}" + ("" if done else " (not finished)"), file=sys.stderr)
        samples = sorted((root / "samples").glob("samples_step*.png"))
        figures: list[tuple[str, str | Path | bytes]] = []
        if samples:
            figures.append(
                (f"samples at step {samples[-1].stem.split('step')[-1].lstrip('0') or 0}", samples[-1])
            )
        train = {k: v for k, v in self.curves.items() if not k.startswith("val")}
        val = {k: v for k, v in self.curves.items() if k.startswith("val")}
        for name, group in (("training losses", train), ("validation metrics", val)):
            png = _curves_png(group, name)
            if png is not None:
                figures.append((name, png))
        last = [[k, f"{v[-1][1]:.4g}", v[-1][0]] for k, v in sorted(self.curves.items()) if v]
        hp = dict(getattr(pl_module, "hparams", {}) or {})
        title = f"{type(pl_module).__name__} prior training"
        tables = [("Last logged values", ["metric", "value", "at step"], last)] if last else []
        path = figure_report(root, title, figures, info=hp, tables=tables, intro=f"stopped at {reach}")
        print(f"[lcm] training report: {path}", file=sys.stderr)


def json_report(folder: str | Path, title: str, data: object) -> Path:
    """``<folder>/report.html`` of a numbers-only benchmark: every scalar of ``data`` (nested dicts and
    lists flattened to dotted keys) in one table, then ``data`` itself as JSON."""
    rows: list[list[object]] = []

    def walk(prefix: str, v: object) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, list | tuple):
            for i, x in enumerate(v):
                walk(f"{prefix}[{i}]", x)
        else:
            rows.append([prefix, f"{v:.4g}" if isinstance(v, float) else v])

    walk("", data)
    tables = [("Results", ["key", "value"], rows)]
    return figure_report(folder, title, [], info={"results": data}, tables=tables)
