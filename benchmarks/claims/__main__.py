"""``python -m benchmarks.claims``: see :mod:`benchmarks.claims`."""

from benchmarks.claims.cli import main

main()
