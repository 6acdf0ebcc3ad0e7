"""Run at the start of every Python of mutmut's venv while run.sh runs (a .pth file
there execs it when KASCTL_MUTMUT_BOOT names it); never imported by the project.

A test that starts a Python of its own (``python -c 'from kasctl import config'``,
``python kasctl/inside/entrypoint.py``) runs mutmut's trampolines in that child too.
In mutmut's first pass (``MUTANT_UNDER_TEST=stats``) they read mutmut's config
from the child's working directory, which is a test's tmp dir: read it here once,
from the mutated tree, so such a child runs as it would without mutmut.
"""

import contextlib
import os

_root = os.environ.get("KASCTL_MUTMUT_ROOT")
if _root and os.environ.get("MUTANT_UNDER_TEST"):
    _cwd = os.getcwd()
    try:
        os.chdir(_root)
        with contextlib.suppress(Exception):  # no mutmut here: run as usual
            from mutmut.configuration import config

            config()
    finally:
        os.chdir(_cwd)
