"""``python -m inversion``: see :mod:`inversion.cli`; ``--help`` alone prints
:func:`inversion.cli.help.overview` without importing torch (the parser's help needs the operators)."""

import sys

from lcm.runtime import tune_allocator

tune_allocator()  # lcm.runtime: freed memory stays in the process (GENPRIOR_ALLOCATOR=system: off)

if sys.argv[1:] in (["-h"], ["--help"]):
    from inversion.cli.help import overview

    print(overview())
else:
    from inversion.cli import main

    main()
