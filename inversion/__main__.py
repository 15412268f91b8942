"""``python -m inversion``: see :mod:`inversion.cli`."""

from inversion.cli import main

main()
