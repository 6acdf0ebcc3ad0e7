"""Shared settings for the fast unit tests.

Hypothesis' per-example deadline is off: the first example of a config test
imports jsonschema, and CI machines have two slow cores; a timing flake is
not a finding. Everything else keeps Hypothesis' defaults.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("kasctl-unit", deadline=None)
settings.load_profile("kasctl-unit")


@pytest.fixture(autouse=True)
def _own_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test remembers config verdicts in a cache of its own, never in ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening unix socket (an ssh agent's or git's credential cache, say)."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    try:
        yield path
    finally:
        server.close()
