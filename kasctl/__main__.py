"""The `kasctl` command's entry point; `python -m kasctl` runs the same.

It lives apart from kasctl.cli on purpose: importing the CLI framework and
the modules behind the commands costs far more than the interpreter's own
start, and `kasctl --version` (asked by scripts, CI logs and bug reports)
needs none of it. So the one-word --version is answered here, and the CLI
is imported only for everything else.
"""

import sys

from kasctl import __version__


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        print(f"kasctl {__version__}")
        return
    from kasctl.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
