"""The claims table: each claim's numbers (mean and 95% Student-t interval over images), each adjacent pair
of its ordering as a paired difference, and the markdown of ``claims.md``."""

from __future__ import annotations

import itertools
import math

from benchmarks.claims.papers import Claim
from inversion.cli.report import mean_ci

__all__ = ["judge", "markdown"]


def _fmt(mean: float, half: float, metric: str) -> str:
    digits = 3 if metric in ("feature", "perceptual", "diversity", "seconds_per_solution") else 2
    if metric == "correct":
        digits = 1
    h = "n/a" if math.isnan(half) else f"{half:.{digits}f}"
    return f"{mean:.{digits}f} ± {h}"


def judge(claim: Claim, values: dict[str, list[float]]) -> dict:
    """The row group's summary: per-label mean / interval, and each adjacent pair of the ordering."""
    stats = {k: mean_ci(v) for k, v in values.items()}
    pairs = []
    for a, b in itertools.pairwise(claim.order):
        if a not in values or b not in values:
            continue
        d = [(u - w) if claim.higher else (w - u) for u, w in zip(values[a], values[b], strict=True)]
        m, h = mean_ci(d)
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
