"""The one HTML page kit: self-contained static pages (images embedded as PNG data URIs, no server, no
internet), written atomically. Escaping, tables, image tags, matplotlib figures as PNG bytes, and two
ready page builders (:func:`figure_report`, :func:`json_report`) used by prior training, restoration
reports and benchmarks.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from datamodules.io.atomic import atomic_write_bytes

__all__ = ["CSS", "figure_png", "figure_report", "img_tag", "json_report", "page", "table", "write_page"]

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px}
td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .grids{display:flex;flex-wrap:wrap;gap:18px}
img{image-rendering:pixelated;max-width:100%} .sub{color:#666;font-size:13px}
pre{background:#f7f7f7;padding:8px;font-size:12px} .fail{color:#a00}
"""


def img_tag(data: bytes, alt: str, min_width: int = 0) -> str:
    """An ``<img>`` holding PNG ``data`` inline (no file beside the page to lose); shown at least
    ``min_width`` px wide by an integer zoom (pixelated, like the nearest-neighbour grids)."""
    style = ""
    if min_width:
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
    return atomic_write_bytes(path, page(title, body))


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
