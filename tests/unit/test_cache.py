"""The result cache: a hit only for the very digest stored, and never an error of its own."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import pytest

from kasctl.host import cache

VALUE = {"header": {"version": 14}, "repos": {"meta": None}, "n": [1, 2.5, True]}


def test_directory_follows_xdg_then_home() -> None:
    assert cache.directory({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/kasctl")
    assert cache.directory({"HOME": "/h"}) == Path("/h/.cache/kasctl")
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says
    assert cache.directory({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/kasctl")
    assert cache.directory({}) is None
    assert cache.directory({"HOME": "relative"}) is None


def test_digest_separates_its_parts() -> None:
    assert cache.digest(b"ab", b"c") != cache.digest(b"a", b"bc")
    assert cache.digest(b"x") == cache.digest(b"x")


def test_miss_then_hit(tmp_path: Path) -> None:
    where = tmp_path / "cache" / "kasctl"
    key = cache.digest(b"file")
    assert cache.load(where, key) is None
    assert cache.save(where, key, VALUE)
    assert cache.load(where, key) == VALUE
    assert where.stat().st_mode & 0o777 == 0o700
    assert cache.load(where, cache.digest(b"edited file")) is None


def test_a_renamed_entry_is_not_trusted(tmp_path: Path) -> None:
    key, other = cache.digest(b"a"), cache.digest(b"b")
    assert cache.save(tmp_path, key, VALUE)
    os.replace(tmp_path / f"{key}.json", tmp_path / f"{other}.json")
    assert cache.load(tmp_path, other) is None


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[1, 2]", b'{"key": 1}', b"\xff\xfe"])
def test_a_corrupt_entry_is_a_miss_and_is_replaced(tmp_path: Path, garbage: bytes) -> None:
    key = cache.digest(b"a")
    (tmp_path / f"{key}.json").write_bytes(garbage)
    assert cache.load(tmp_path, key) is None
    assert cache.save(tmp_path, key, VALUE)
    assert cache.load(tmp_path, key) == VALUE


def test_an_unusable_cache_dir_is_no_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    where = blocker / "kasctl"
    assert cache.save(where, cache.digest(b"a"), VALUE) is False
    assert cache.load(where, cache.digest(b"a")) is None
    assert cache.save(None, cache.digest(b"a"), VALUE) is False
    assert cache.load(None, cache.digest(b"a")) is None


def test_an_unwritable_cache_dir_is_no_error(tmp_path: Path) -> None:
    where = tmp_path / "kasctl"
    where.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: a dir of another user is refused instead
        os.chown(where, 54321, 54321)
    else:
        where.chmod(0o500)
    try:
        assert cache.save(where, cache.digest(b"a"), VALUE) is False
        assert list(where.iterdir()) == []
    finally:
        where.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's entry")
def test_another_users_entry_is_ignored(tmp_path: Path) -> None:
    key = cache.digest(b"a")
    assert cache.save(tmp_path, key, VALUE)
    os.chown(tmp_path / f"{key}.json", 54321, 54321)
    assert cache.load(tmp_path, key) is None


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime.date(2026, 11, 23)},  # YAML dates are not JSON
        {1: "int key"},  # JSON would hand it back as "1"
        {"x": float("nan")},  # nan != nan: never equal to itself after a round trip
        {"s": {1, 2}},
    ],
)
def test_what_json_would_change_is_not_stored(tmp_path: Path, value: object) -> None:
    key = cache.digest(b"a")
    assert cache.save(tmp_path, key, value) is False
    assert cache.load(tmp_path, key) is None


def test_entries_are_pruned_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [cache.digest(str(i).encode()) for i in range(5)]
    for age, key in enumerate(keys):
        assert cache.save(tmp_path, key, VALUE)
        os.utime(tmp_path / f"{key}.json", ns=(age * 10**9, age * 10**9))
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    cache.load(tmp_path, keys[0])  # a hit: now the most recently used
    cache.save(tmp_path, cache.digest(b"new"), VALUE)
    left = {p.stem for p in tmp_path.glob("*.json")}
    assert left == {keys[0], keys[4], cache.digest(b"new")}
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_entry_is_plain_json_naming_its_key(tmp_path: Path) -> None:
    key = cache.digest(b"a")
    cache.save(tmp_path, key, VALUE)
    assert json.loads((tmp_path / f"{key}.json").read_text()) == {"key": key, "value": VALUE}
