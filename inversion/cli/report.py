"""Static HTML reports of restoration runs: ``report.html`` per ``python -m inversion`` run, one for
``python -m inversion compare OUT1 OUT2 ...``, and figure reports (e-GLASS, DGP manipulation, priors).

A report is one self-contained file (images embedded as PNG data URIs; no server, no internet), written
atomically, and rebuilt from what the run keeps on disk (``run.json``, ``rows/*.json``, ``failed/*.json``
and the PNGs), so a resumed run's report holds every image of the run, not only the last session's.

Example::

    python -m inversion compare outputs/demo/inpaint_csgm outputs/demo/inpaint_iagan --output outputs/cmp
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from datamodules.io.html import figure_png, figure_report, img_tag, table, write_page
from datamodules.io.images import load_image, png_bytes

__all__ = [
    "Run",
    "compare",
    "exploration_report",
    "markdown_report",
    "figure_report",  # re-exported from datamodules.io.html
    "load_run",
    "mean_ci",
    "paired_diff",
    "write_report",
]

METRICS = ("psnr", "ssim", "masked_psnr", "residual", "seconds")
TILE = 96  # px: small images are upscaled (nearest) to about this size
CHUNK = 8  # images per comparison grid


# -- data -------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What a run folder holds: its ``run.json``, per-image rows (sorted by index) and failures."""

    path: Path
    info: dict
    rows: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.info.get('method', '?')} ({self.path.name})"


def load_run(path: str | Path) -> Run:
    """Read a ``python -m inversion`` output folder.

    Raises:
        FileNotFoundError: the folder has no ``run.json`` (not a run folder).
    """
    path = Path(path)
    if not (path / "run.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a `python -m inversion` output folder (no run.json)")
    info = json.loads((path / "run.json").read_text())

    def records(sub: str) -> list[dict]:
        folder = path / sub
        recs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        return sorted(recs, key=lambda r: r["index"])

    rows = records("rows")
    done = {r["name"] for r in rows}
    return Run(path, info, rows, [f for f in records("failed") if f["name"] not in done])


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t ``level`` confidence interval (NaN width for n < 2)."""
    from scipy.stats import t

    v = [float(x) for x in values if x not in ("", None) and math.isfinite(float(x))]
    if not v:
        return float("nan"), float("nan")
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return m, float(t.ppf(0.5 + level / 2, len(v) - 1)) * sd / math.sqrt(len(v))


def paired_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Mean of ``b - a`` over pairs, its 95% half-width, and how many pairs have ``b > a``."""
    d = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    m, h = mean_ci(d)
    return m, h, sum(x > 0 for x in d)


def _fmt(m: float, h: float, digits: int) -> str:
    if not math.isfinite(m):
        return "–"
    return f"{m:.{digits}f}" + (f" ± {h:.{digits}f}" if math.isfinite(h) else "")


def _tile(run: Run, sub: str, name: str, like: torch.Tensor | None = None) -> torch.Tensor | None:
    p = run.path / sub / name
    if not p.is_file():
        return None
    x = load_image(p)
    if like is not None and x.shape[0] != like.shape[0]:
        x = x.expand(like.shape[0], -1, -1) if x.shape[0] == 1 else x.mean(0, keepdim=True)
    return x


def _score(x: torch.Tensor | None, truth: torch.Tensor | None) -> str:
    if x is None or truth is None or x.shape != truth.shape:
        return ""
    from inversion.metrics import psnr, ssim

    return _cap(float(psnr(x[None], truth[None])), float(ssim(x[None], truth[None])))


def _row_cap(r: dict) -> str:
    """A restoration's caption: PSNR / SSIM against truth, or its residual in a run without truth."""
    if r.get("psnr", "") in ("", None):
        return f"res {float(r.get('residual', 'nan')):.3f}"
    return _cap(float(r["psnr"]), float(r["ssim"]))


def _short(name: str) -> str:
    stem = Path(name).stem
    return stem if len(stem) <= 14 else "…" + stem[-13:]


def _cap(p: float, s: float) -> str:
    return f"{p:.1f} dB  {s:.2f}"


def _grid_png(tiles: list[torch.Tensor], captions: list[str], ncol: int) -> bytes:
    from datamodules.io.grid import grid_pil

    return png_bytes(grid_pil(torch.stack(tiles), ncol, captions=captions, min_size=TILE, padding=3))


def _blank(like: torch.Tensor) -> torch.Tensor:
    return torch.full_like(like, 0.85)


def _curves(series: list[tuple[str, list[list[float]], list[int]]]) -> bytes | None:
    """One panel per ``(title, per-image histories, stage starts)``: objective per step, log scale."""
    series = [s for s in series if any(len(h) > 1 for h in s[1])]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    fig, axes = plt.subplots(1, n, figsize=(min(4.5 * n, 10), 3.2), squeeze=False)
    for ax, (title, hists, starts) in zip(axes[0], series, strict=True):
        for h in hists:
            ys = [v if v is not None and v > 0 else float("nan") for v in h]
            ax.plot(range(len(ys)), ys, lw=0.8, alpha=0.6)
        for s in starts[1:]:
            ax.axvline(s, color="k", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("objective")
        ax.set_title(title + ("\n(dashed: stage starts)" if len(starts) > 1 else ""), fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def _summary_rows(run: Run) -> list[list[str]]:
    out = []
    for k in METRICS:
        vals = [r.get(k, "") for r in run.rows]
        m, h = mean_ci(vals)
        if math.isfinite(m):
            n = sum(1 for v in vals if v not in ("", None))
            out.append([k, _fmt(m, h, 4 if k == "ssim" else 2), n])
    return out


# -- one run -------------------------------------------------------------------------------------------
def write_report(out: str | Path) -> Path:
    """Write ``<out>/report.html`` for the run folder ``out`` (atomically) and return its path."""
    run = load_run(out)
    info = run.info
    title = f"{info.get('method', '?')} on {info.get('task', '?')}"
    body = [f"<h1>{html.escape(title)}</h1>"]
    body.append(
        f'<p class="sub">input <b>{html.escape(str(info.get("input")))}</b> · {len(run.rows)} restored · '
        f"{len(run.failures)} failed · folder {html.escape(str(run.path))}</p>"
    )
    body.append("<h2>Summary (mean ± 95% interval)</h2>")
    body.append(table(["metric", "mean ± 95% CI", "n"], _summary_rows(run)))
    body.append("<h2>Restorations</h2>")
    body.append(
        '<p class="sub">columns: degraded (the input as given, at the image size) | A†y | restored | truth '
        "(a run without ground truth: the residual |A(x) - y| x4); captions: PSNR and SSIM against truth, "
        "or the residual ||A(x) - y|| without it (the truth column names the image)</p>"
    )
    body.append('<div class="grids">')
    for k in range(0, len(run.rows), CHUNK):
        tiles, caps = [], []
        for r in run.rows[k : k + CHUNK]:
            name = r["name"]
            rest = _tile(run, "restored", name)
            if rest is None:
                continue
            truth = _tile(run, "truth", name, rest)
            deg = _tile(run, "degraded", name, rest)
            adj = _tile(run, "adjoint", name, rest)
            for x, cap in (
                (deg, _score(deg, truth)),
                (adj, _score(adj, truth) if adj is not None else "A†y n/a"),
                (rest, _row_cap(r)),
                (
                    truth if truth is not None else _tile(run, "residual", name, rest),
                    _short(name) if truth is not None else "residual x4",
                ),
            ):
                tiles.append(x if x is not None else _blank(rest))
                caps.append(cap)
        if tiles:
            body.append(img_tag(_grid_png(tiles, caps, 4), f"restorations {k}-{k + CHUNK - 1}"))
    body.append("</div>")
    curves = _curves([(title, [r.get("history", []) for r in run.rows], _starts(run.rows))])
    if curves is not None:
        body.append("<h2>Loss curves of the fits</h2>")
        body.append(img_tag(curves, "loss curves"))
    body.append("<h2>Per image</h2>")
    cols = ["index", "name", *[k for k in METRICS if any(r.get(k, "") != "" for r in run.rows)], "steps"]
    body.append(
        table(
            cols,
            [
                [r["index"], r["name"], *[_num(r.get(k)) for k in cols[2:-1]], len(r.get("history", []))]
                for r in run.rows
            ],
            left=2,
        )
    )
    body.append(_failures(run))
    body.append("<h2>Configuration</h2>")
    body.append(f"<pre>{html.escape(json.dumps(info, indent=1))}</pre>")
    path = run.path / "report.html"
    write_page(path, title, body)
    return path


def _starts(rows: list[dict]) -> list[int]:
    for r in rows:
        if r.get("stage_starts"):
            return list(r["stage_starts"])
    return []


def _num(v) -> str:
    if v in ("", None):
        return ""
    return f"{float(v):.4f}" if abs(float(v)) < 10 else f"{float(v):.2f}"


def _failures(run: Run) -> str:
    if not run.failures:
        return "<h2>Failures</h2><p>none</p>"
    items = "".join(
        f'<li class="fail"><b>{html.escape(f["name"])}</b>: {html.escape(f["error"])}</li>'
        for f in run.failures
    )
    return f"<h2>Failures ({len(run.failures)})</h2><ul>{items}</ul>"


# -- several runs ------------------------------------------------------------------------------------------
def _input_id(info: dict) -> str:
    """The input of a run: its folder's absolute path (``input_path``, pinned since issue 31: ``imgs`` and
    ``/home/me/imgs`` are one folder), else the ``--input`` as given."""
    return str(info.get("input_path", info.get("input")))


def _check_same_images(runs: list[Run]) -> None:
    ref = runs[0]
    names = {r["name"] for r in ref.rows} | {f["name"] for f in ref.failures}
    for run in runs[1:]:
        other = {r["name"] for r in run.rows} | {f["name"] for f in run.failures}
        if other == names and _input_id(run.info) != _input_id(ref.info):
            raise ValueError(
                f"cannot compare {str(ref.path)!r} and {str(run.path)!r}: they read different inputs "
                f"({_input_id(ref.info)!r} vs {_input_id(run.info)!r}); compare runs of the same --input"
            )
        if other != names:
            only_a, only_b = sorted(names - other)[:3], sorted(other - names)[:3]
            raise ValueError(
                f"cannot compare {str(ref.path)!r} and {str(run.path)!r}: they restored different images "
                f"(input {ref.info.get('input')!r} vs {run.info.get('input')!r}; "
                f"only in the first: {only_a}, "
                f"only in the second: {only_b}); compare runs of the same --input and --limit"
            )
        for r in run.rows:  # same names must be the same pictures (a built-in split subsampled otherwise)
            a, b = ref.path / "truth" / r["name"], run.path / "truth" / r["name"]
            if a.is_file() and b.is_file() and a.read_bytes() != b.read_bytes():
                raise ValueError(
                    f"cannot compare {str(ref.path)!r} and {str(run.path)!r}: image {r['name']!r} differs "
                    "between them; compare runs of the same --input and --limit"
                )


def _finished(run: Run) -> bool:
    """A run's ``metrics.csv`` exists and lists every image record it holds (else: killed or running)."""
    metrics = run.path / "metrics.csv"
    if not metrics.is_file():
        return False
    with open(metrics, newline="", encoding="utf-8", errors="surrogateescape") as f:
        listed = sum(1 for _ in csv.DictReader(f))
    return listed == len(run.rows)


def _check_comparable(runs: list[Run], output: Path) -> None:
    """Refuse unfinished runs, runs of different tasks, and an ``output`` inside a compared run."""
    for run in runs:
        if not _finished(run):
            raise ValueError(
                f"run {str(run.path)!r} is unfinished (no metrics.csv covering its {len(run.rows)} restored "
                "images: it was killed or is still running); resume it with its command, then compare"
            )
    ref = runs[0]
    for run in runs[1:]:
        for key in ("task", "operator"):
            if run.info.get(key) != ref.info.get(key):
                raise ValueError(
                    f"cannot compare runs of different tasks: {str(ref.path)!r} has {key} "
                    f"{ref.info.get(key)!r}, {str(run.path)!r} has {run.info.get(key)!r}; compare runs of "
                    "the same task (operator) on the same images"
                )
        diff = _measurement_differences(ref, run)
        if diff:
            raise ValueError(
                f"cannot compare {str(ref.path)!r} and {str(run.path)!r}: they measured differently "
                f"({'; '.join(diff[:4])}); compare runs of the same task (operator) on the same images"
            )
    out = Path(output).resolve()
    for run in runs:
        here = run.path.resolve()
        if out == here or out.is_relative_to(here):
            raise ValueError(
                f"--output {str(output)!r} is inside the compared run {str(run.path)!r}: its report.html "
                "would be overwritten; choose a folder outside every compared run"
            )
    _check_not_a_run(out, output)


def _measurement_differences(a: Run, b: Run) -> list[str]:
    """What makes two runs' measurements differ beyond their task name: the operator's state (pinned since
    issue 31; runs without it are not compared on it) and the noise seed."""
    from inversion.cli.manifest import differences

    keys = [k for k in ("operator_state", "noise_seed") if k in a.info and k in b.info]
    return differences(a.info, b.info, keys)


def _check_not_a_run(out: Path, given) -> None:
    """``--output`` must not be another run's folder (or inside one): its report.html would be replaced."""
    for folder in (out, *out.parents):
        if (folder / "run.json").is_file():
            raise ValueError(
                f"--output {str(given)!r} is {'' if folder == out else 'inside '}the run folder "
                f"{str(folder)!r} (it has a run.json): its report.html would be overwritten; choose a "
                "folder that is not a run's"
            )


def compare(outputs: Sequence[str | Path], output: str | Path) -> Path:
    """Write ``<output>/report.html`` comparing the runs ``outputs`` on their common images.

    Raises:
        ValueError: fewer than two runs, an unfinished run, runs of different tasks or on different images,
        or ``output`` inside a compared run (named in the message).
    """
    if len(outputs) < 2:
        raise ValueError(f"compare needs at least two run folders, got {len(outputs)}")
    runs = [load_run(p) for p in outputs]
    _check_comparable(runs, Path(output))
    _check_same_images(runs)
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{r.info.get('method', '?')} ({r.path})" for r in runs]
    by_name = [{r["name"]: r for r in run.rows} for run in runs]
    common = [r["name"] for r in runs[0].rows if all(r["name"] in b for b in by_name)]
    key = "psnr" if all(b[n].get("psnr", "") != "" for b in by_name for n in common) else "residual"
    title = "Comparison: " + ", ".join(labels)
    body = [f"<h1>{html.escape(title)}</h1>"]
    tasks = sorted({str(r.info.get("task")) for r in runs})
    body.append(
        f'<p class="sub">task {html.escape(", ".join(tasks))} · '
        f"input {html.escape(str(runs[0].info.get('input')))}"
        f" · {len(common)} images restored by every run</p>"
    )
    body.append("<h2>Runs (mean ± 95% interval over the common images)</h2>")
    rows = []
    for lab, run, b in zip(labels, runs, by_name, strict=True):
        p = mean_ci([b[n]["psnr"] for n in common])
        s = mean_ci([b[n]["ssim"] for n in common])
        t = mean_ci([b[n]["seconds"] for n in common])
        rows.append(
            [lab, _fmt(*p, 2), _fmt(*s, 4), _fmt(*t, 2), len(run.failures), str(run.info.get("prior"))[:19]]
        )
    body.append(table(["run", "PSNR dB", "SSIM", "s/image", "failed", "prior"], rows))
    body.append(f"<h2>Paired differences against {html.escape(labels[0])}</h2>")
    diffs = []
    for lab, b in zip(labels[1:], by_name[1:], strict=True) if key == "psnr" else ():
        dp = paired_diff([by_name[0][n]["psnr"] for n in common], [b[n]["psnr"] for n in common])
        ds = paired_diff([by_name[0][n]["ssim"] for n in common], [b[n]["ssim"] for n in common])
        diffs.append([lab, _fmt(dp[0], dp[1], 2), f"{dp[2]}/{len(common)}", _fmt(ds[0], ds[1], 4)])
    body.append(table(["run", "Δ PSNR dB", "PSNR higher on", "Δ SSIM"], diffs))
    body.append("<h2>Same images side by side</h2>")
    body.append(
        '<p class="sub">columns: truth | degraded | '
        + " | ".join(html.escape(lab) for lab in labels)
        + "; captions: PSNR dB and SSIM</p>"
    )
    ncol = 2 + len(runs)
    body.append('<div class="grids">')
    for k in range(0, len(common), CHUNK):
        tiles, caps = [], []
        for name in common[k : k + CHUNK]:
            rests = [_tile(run, "restored", name) for run in runs]
            like = next(x for x in rests if x is not None)
            truth = _tile(runs[0], "truth", name, like)
            deg = _tile(runs[0], "degraded", name, like)
            tiles += [truth if truth is not None else _blank(like), deg if deg is not None else _blank(like)]
            caps += [_short(name), _score(deg, truth)]
            for x, b in zip(rests, by_name, strict=True):
                tiles.append(x if x is not None else _blank(like))
                caps.append(_row_cap(b[name]))
        if tiles:
            body.append(img_tag(_grid_png(tiles, caps, ncol), f"comparison {k}-{k + CHUNK - 1}"))
    body.append("</div>")
    curves = _curves(
        [
            (lab, [r.get("history", []) for r in run.rows], _starts(run.rows))
            for lab, run in zip(labels, runs, strict=True)
        ]
    )
    if curves is not None:
        body.append("<h2>Loss curves</h2>")
        body.append(img_tag(curves, "loss curves"))
    body.append(f"<h2>Per image {key}</h2>")
    body.append(
        table(["name", *labels], [[n, *[f"{float(b[n][key]):.3f}" for b in by_name]] for n in common])
    )
    for run in runs:
        if run.failures:
            body.append(_failures(run).replace("<h2>Failures", f"<h2>{html.escape(run.label)}: failures"))
    body.append("<h2>Configurations</h2>")
    for lab, run in zip(labels, runs, strict=True):
        body.append(f"<h3>{html.escape(lab)}</h3><pre>{html.escape(json.dumps(run.info, indent=1))}</pre>")
    path = Path(output) / "report.html"
    write_page(path, title, body)
    return path


# -- e-GLASS ------------------------------------------------------------------------------------------
def exploration_report(out: str | Path, summary_name: str = "summary.json") -> Path:
    """``<out>/report.html`` of an e-GLASS run (``python -m benchmarks.eglass``), from what it
    wrote: the summary JSON (``summary_name``) and per image ``eglass_<data>_<task>_<i>.png`` (x0 framed,
    the distinct feasible solutions, each captioned with its measurement residual) and
    ``restarts_<data>_<task>_<i>.png`` (the restart baseline, truth first). Diversity: mean pairwise image
    distance of the solutions, overall and in the part the measurements leave free."""
    out = Path(out)
    summary = json.loads((out / summary_name).read_text())
    data, task = summary.get("data", "?"), summary.get("task", "?")
    header = [
        "image",
        "method",
        "solutions",
        "fits / raw v^K infeasible",
        "diversity",
        "free part",
        "seconds",
    ]
    rows = []
    for i, r in enumerate(summary.get("images", [])):
        for m in ("eglass", "restarts"):
            d = r.get(m, {})
            n = d.get("raw_vK_infeasible", "") if m == "eglass" else d.get("restarts", "")
            rows.append([i, m, d.get("solutions", ""), n, _num(d.get("pairwise_rms")), _num(d.get("free"))])
            rows[-1].append(_num(d.get("seconds")))
    figures = []
    for i in range(len(summary.get("images", []))):
        for stem, what in (
            ("eglass", "e-GLASS: x0, then the distinct feasible solutions (K, eta, residual)"),
            ("restarts", "restart baseline (truth first)"),
        ):
            f = out / f"{stem}_{data}_{task}_{i}.png"
            if f.is_file():
                figures.append((f"image {i}: {what}", f))
    mean = summary.get("mean", {})
    keys = ("solutions", "pairwise_rms", "free", "seconds")
    means = [[m, *[_num(v.get(k)) for k in keys]] for m, v in mean.items()]
    tables = [
        ("Mean over images", ["method", "solutions", "diversity", "free part", "seconds"], means),
        ("Per image", header, rows),
    ]
    info = {k: v for k, v in summary.items() if k != "images"}
    return figure_report(out, f"e-GLASS exploration: {data} {task}", figures, info=info, tables=tables)


def markdown_report(out: str | Path, md_name: str = "results.md", title: str | None = None) -> Path:
    """``<out>/report.html`` of a benchmark from the markdown it wrote (``md_name``): its ``#`` headings,
    ``|`` tables and text, then every PNG beside it (figures of that benchmark, e.g. grids)."""
    out = Path(out)
    lines = (out / md_name).read_text().splitlines()
    body, rows = [], []

    def flush() -> None:
        cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
        cells = [c for c in cells if not all(set(x) <= set("-: ") for x in c)]  # drop |---| rules
        if cells:
            body.append(table(cells[0], cells[1:]))
        rows.clear()

    for line in lines:
        if line.lstrip().startswith("|"):
            rows.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 3)
            body.append(f"<h{level + 1}>{html.escape(line.lstrip('#').strip())}</h{level + 1}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    for png in sorted(out.glob("*.png")):
        body += [f"<h2>{html.escape(png.name)}</h2>", img_tag(png.read_bytes(), png.name, min_width=480)]
    name = title or f"{out.name}: {md_name}"
    return write_page(out / "report.html", name, [f"<h1>{html.escape(name)}</h1>", *body])
