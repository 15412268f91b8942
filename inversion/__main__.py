"""``python -m inversion``: see :mod:`inversion.cli`. Errors print one line (``--debug`` or
``GENPRIOR_DEBUG=1``: the traceback), SIGTERM exits 143 (:mod:`datamodules.io.errors`)."""

import sys

from inversion.cli import main

if {"-h", "--help"} & set(sys.argv[1:]):  # the help stays light on import (tests/test_startup_imports.py)
    main()
else:
    from datamodules.io.errors import one_line_errors

    one_line_errors(main, "inversion")
