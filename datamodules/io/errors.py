"""How the command lines end: one line for a user's mistake, a non-zero exit on SIGTERM.

* :func:`one_line_errors` runs a CLI's ``main(argv)``: an exception prints ``[prog] error: <message>``
  (the message names the problem and the fix) and exits 2, without a traceback; ``--debug`` anywhere on
  the command line (it is taken out of ``argv``) or ``GENPRIOR_DEBUG=1`` shows the traceback.
* :class:`Interrupted` (a ``BaseException``: the runners' "a bad image is skipped" ``except Exception``
  lets it through) ends a run stopped by SIGTERM; :func:`sigterm_interrupts` raises it from a SIGTERM
  handler (Lightning calls the handler too, beside its own, during a fit). The CLI then prints what was
  kept and exits 143 (128 + SIGTERM), never 0: Lightning's own SIGTERM handling ends a fit in a
  ``SystemExit`` without a code, which exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["EXIT_SIGTERM", "Interrupted", "debug_wanted", "one_line_errors", "sigterm_interrupts"]

EXIT_SIGTERM = 128 + 15
# exceptions our checks raise for a user's mistake (others are bugs: the line asks for a report)
_USER_ERRORS = (ValueError, TypeError, KeyError, OSError, ImportError)


class Interrupted(BaseException):
    """A run stopped by SIGTERM (the message says what was kept and how to resume)."""


@contextlib.contextmanager
def sigterm_interrupts(message: str = "interrupted by SIGTERM"):
    """While inside, SIGTERM raises :class:`Interrupted` (main thread only; the old handler comes back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(message)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def debug_wanted(argv: list[str]) -> tuple[bool, list[str]]:
    """``(--debug given or GENPRIOR_DEBUG=1, argv without --debug)``."""
    debug = "--debug" in argv or os.environ.get("GENPRIOR_DEBUG", "") not in ("", "0")
    return debug, [a for a in argv if a != "--debug"]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1:  # KeyError's str() quotes its message
        text = str(err.args[0])
    return text


def one_line_errors(main: Callable[[list[str]], object], prog: str, argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` (default ``sys.argv[1:]``) the way a command line should end (module docstring)."""
    debug, argv = debug_wanted(list(sys.argv[1:] if argv is None else argv))
    try:
        main(argv)
    except Interrupted as err:
        print(f"[{prog}] {_one_line(err)}", file=sys.stderr)
        sys.exit(EXIT_SIGTERM)
    except Exception as err:
        if debug:
            raise
        hint = "" if isinstance(err, _USER_ERRORS) else " (an unexpected error: please report it)"
        print(
            f"[{prog}] error: {_one_line(err)}{hint} [--debug or GENPRIOR_DEBUG=1 shows the traceback]",
            file=sys.stderr,
        )
        sys.exit(2)
