"""Fixtures for the real-engine tests; the machinery is in harness.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Project, remove_tree


@pytest.fixture
def project_factory() -> Iterator[list[Project]]:
    made: list[Project] = []
    yield made
    for p in made:
        remove_tree(p.work)
