"""``python -m inversion``: see :mod:`inversion.cli`; ``--help`` alone prints
:func:`inversion.cli.help.overview` without importing torch (the parser's help needs the operators).
Errors print one line (``--debug`` or ``GENPRIOR_DEBUG=1``: the traceback), SIGTERM exits 143
(:mod:`datamodules.io.errors`)."""

import sys

from lcm.runtime import tune_allocator

tune_allocator()  # lcm.runtime: freed memory stays in the process (GENPRIOR_ALLOCATOR=system: off)

if sys.argv[1:] in (["-h"], ["--help"]):
    from inversion.cli.help import overview

    print(overview())
elif {"-h", "--help"} & set(sys.argv[1:]):  # the parser's own help
    from inversion.cli import main

    main()
else:
    from datamodules.io.errors import one_line_errors
    from inversion.cli import main

    one_line_errors(main, "inversion")
