"""Atomic file writes: readers see the old file or the whole new one, never a partial file.

The data goes to a temporary file beside the target, is flushed and fsynced, renamed over the target
(``os.replace``), and the folder is fsynced so that the rename itself survives a crash. The temporary
name is ``.<name>.<random>.tmp``, or ``.<hash of name>.<random>.tmp`` where that would pass the file
system's longest name (NAME_MAX, 255 bytes on most): a 248-character target must not fail for its
temporary's name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write", "atomic_write_bytes"]


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms (Windows) or file systems where a folder cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer
        return 255


def _temp_prefix(path: Path) -> str:
    prefix = f".{path.name}."
    if len(os.fsencode(prefix)) + 16 > _name_max(path.parent):  # mkstemp adds 8 random characters + .tmp
        prefix = f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}."
    return prefix


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fileobj)``: temporary file beside it, flush, fsync, ``os.replace``,
    fsync of the folder. Parent folders are created; the file is made readable like any file (0644).

    On error the temporary file is removed and ``path`` is untouched. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs and caches should be readable like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`). Returns ``path``."""
    return atomic_write(path, lambda f: f.write(data))
