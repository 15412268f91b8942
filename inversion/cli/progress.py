"""Progress with an ETA per image: a tqdm bar on a terminal, plain log lines otherwise (CI, pipes, files)."""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["PlainProgress", "make_progress"]


class PlainProgress:
    """One line per update once the run has taken ``after`` seconds: done/total, s/image, ETA.

    The tqdm interface that the runners use (``update(n)``, ``close()``)."""

    def __init__(
        self, total: int, desc: str, file: IO[str] | None = None, after: float = 3.0, clock=time.monotonic
    ):
        self.total, self.desc, self.after, self.clock = int(total), desc, float(after), clock
        self.file = file if file is not None else sys.stderr
        self.n, self.start = 0, clock()

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        elapsed = self.clock() - self.start
        if elapsed < self.after or self.n <= 0:
            return
        rate = elapsed / self.n
        eta = rate * max(self.total - self.n, 0)
        print(
            f"[progress] {self.desc}: {self.n}/{self.total} images, {rate:.1f} s/image, "
            f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}",
            file=self.file,
            flush=True,
        )

    def close(self) -> None:
        pass


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def make_progress(total: int, desc: str, file: IO[str] | None = None):
    """``tqdm`` (with its ETA) when ``file`` (default stderr) is a terminal, else :class:`PlainProgress`."""
    file = file if file is not None else sys.stderr
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="img", file=file)
    return PlainProgress(total, desc, file)
