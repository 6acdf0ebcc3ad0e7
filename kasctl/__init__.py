"""kasctl: run kas builds in a container with the fewest privileges that work.

Kept import-free on purpose: the image's entrypoint imports this package at
every container start, and `kasctl --version` should cost no more than
Python's own start.
"""

__version__ = "0.2.0"
