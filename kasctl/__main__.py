"""`python -m kasctl` behaves exactly like the `kasctl` command."""

from kasctl.cli import main

main()
