"""The labels CSV of ``python -m inversion --labels``: which class each input image has.

Format (strict; every rule below is an error naming the file and the line, never a silent skip):

* UTF-8 text (a leading byte-order mark is dropped); ``file,class`` rows, blank lines ignored.
* A header is recognised only by its exact column names: a first row whose cells are ``file`` (or
  ``name``) and ``class`` (or ``label``). Any other row whose class is not an integer is an error
  naming the row, the first one included (``a.png,1.0`` or ``a.png,two`` is no header).
* ``class``: an integer in ``[0, num_classes)``, or ``-1`` for "unknown" (the method picks the class).
* ``file``: an input's path relative to the input folder, its file name, or its stem, matched exactly
  (case-sensitive). A name that matches no input is an error listing such names (with a hint when only
  the case differs).
* A name given twice is an error (no "last one wins"); a CSV with no rows is an error.

:func:`write_labels_used` records the class each image of a run was given in ``labels.csv`` of the
output folder (``-1``: none given; the method picked one).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["apply_labels", "read_labels", "write_labels_used"]

HEADER_FILE = ("file", "name")
HEADER_CLASS = ("class", "label")


def _decode(p: Path) -> str:
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # drops a UTF-8 byte-order mark
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"labels CSV {str(p)!r} is not UTF-8 text (byte {err.start}, line {line}: "
            f"{raw[err.start : err.start + 4]!r}); save it as UTF-8"
        ) from None


def read_labels(path: str | os.PathLike, num_classes: int) -> dict[str, int]:
    """``{file name: class}`` from a labels CSV (the format of the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unconditional prior, non-UTF-8 text, a malformed row, a non-integer class, a class
        outside ``[-1, num_classes)``, a name given twice, or no rows (each naming the line).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"labels CSV {str(p)!r} does not exist")
    if not num_classes:
        raise ValueError(f"labels CSV {str(p)!r} given, but the prior is unconditional (no classes)")
    out: dict[str, int] = {}
    lines: dict[str, int] = {}
    first = True
    for n, row in enumerate(csv.reader(io.StringIO(_decode(p), newline="")), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise ValueError(f"{str(p)!r} line {n}: expected 'file,class', got {row!r}")
        name, cls = row[0].strip(), row[1].strip()
        if first and name in HEADER_FILE and cls in HEADER_CLASS:
            first = False
            continue  # the header
        first = False
        try:
            c = int(cls)
        except ValueError:
            raise ValueError(
                f"{str(p)!r} line {n}: class {cls!r} is not an integer (a header row must read exactly "
                f"'file,class')"
            ) from None
        if not -1 <= c < num_classes:
            raise ValueError(f"{str(p)!r} line {n}: class {c} outside [0, {num_classes}) (-1 = unknown)")
        if name in lines:
            raise ValueError(
                f"{str(p)!r} line {n}: {name!r} is given twice (lines {lines[name]} and {n}); keep one row"
            )
        out[name], lines[name] = c, n
    if not out:
        raise ValueError(f"labels CSV {str(p)!r} holds no 'file,class' rows")
    return out


def _keys(source: str) -> tuple[str, str, str]:
    name = Path(source).name
    return source, name, Path(name).stem


def apply_labels(items: Iterable, labels: dict[str, int], known: Iterable[str] | None = None) -> None:
    """Give each item (with ``source``: its relative path) its class: by relative path, else file name,
    else stem; items without one get ``-1``.

    Args:
        known: every input's relative path (default: the items'); a CSV name matching none of them is an
            error (a ``--limit`` run passes the whole folder, so rows beyond the limit are not errors).

    Raises:
        ValueError: names that match no input (listed; with a hint when only the case differs).
    """
    items = list(items)
    for it in items:
        if it.source:
            path, name, stem = _keys(it.source)
            it.label = labels.get(path, labels.get(name, labels.get(stem, -1)))
    sources = [it.source for it in items if it.source] if known is None else list(known)
    matched = {k for s in sources for k in _keys(s)}
    unmatched = sorted(set(labels) - matched)
    if unmatched:
        folded = {k.casefold(): k for k in matched}
        hints = [f"{u!r} (did you mean {folded[u.casefold()]!r}? names are case-sensitive)" for u in unmatched
                 if u.casefold() in folded]  # fmt: skip
        shown = ", ".join(map(repr, unmatched[:10])) + (
            f", ... ({len(unmatched)} in all)" if len(unmatched) > 10 else ""
        )
        raise ValueError(
            f"the labels CSV names {len(unmatched)} file(s) that match no input image (by relative path, "
            f"file name or stem): {shown}" + (f"; {'; '.join(hints[:5])}" if hints else "")
        )


def write_labels_used(out: Path, items: Iterable) -> Path:
    """``out/labels.csv``: ``name,class`` of every item (output names; -1: the method picked the class)."""
    from datamodules.io.atomic import atomic_write_bytes

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "class"])
    for it in sorted(items, key=lambda it: it.index):
        w.writerow([it.source or it.name, it.label])
    path = Path(out) / "labels.csv"
    atomic_write_bytes(path, buf.getvalue().encode("utf-8", "surrogateescape"))
    return path
