"""``--labels``: the class of each input file of a class-conditional prior, read from a CSV."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from inversion.cli.items import Item

__all__ = ["apply_labels", "read_labels"]


def read_labels(path: str | os.PathLike, num_classes: int) -> dict[str, int]:
    """Class labels from a CSV of ``file,class`` rows (a header row is allowed): file name (or stem) -> class.

    Raises:
        FileNotFoundError / ValueError: no such file, a malformed row, or a class outside
        ``[0, num_classes)`` (the line is named).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labels CSV {str(p)!r} does not exist")
    if not num_classes:
        raise ValueError(f"labels CSV {str(p)!r} given, but the prior is unconditional (no classes)")
    out: dict[str, int] = {}
    with open(p, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise ValueError(f"{str(p)!r} line {n}: expected 'file,class', got {row!r}")
            name, cls = row[0].strip(), row[1].strip()
            try:
                c = int(cls)
            except ValueError:
                if n == 1:
                    continue  # header
                raise ValueError(f"{str(p)!r} line {n}: class {cls!r} is not an integer") from None
            if not -1 <= c < num_classes:
                raise ValueError(f"{str(p)!r} line {n}: class {c} outside [0, {num_classes}) (-1 = unknown)")
            out[name] = c
    return out


def apply_labels(items: list[Item], labels: dict[str, int]) -> None:
    """Give each folder item its class from ``labels`` (by relative path, file name, else stem); others -1."""
    for it in items:
        if it.source:
            name = Path(it.source).name
            it.label = labels.get(it.source, labels.get(name, labels.get(Path(name).stem, -1)))
