"""Shared settings for the fast unit tests.

Hypothesis' per-example deadline is off: the first example of a config test
imports jsonschema, and CI machines have two slow cores; a timing flake is
not a finding. Everything else keeps Hypothesis' defaults.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("kasctl-unit", deadline=None)
settings.load_profile("kasctl-unit")
