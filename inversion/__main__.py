"""``python -m inversion``: see :mod:`inversion.cli`."""

from lcm.runtime import tune_allocator

tune_allocator()  # lcm.runtime: freed memory stays in the process (GENPRIOR_ALLOCATOR=system: off)

from inversion.cli import main  # noqa: E402

main()
