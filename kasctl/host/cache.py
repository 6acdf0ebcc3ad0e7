"""What kasctl remembers between runs: results that depend only on bytes it can hash.

Reading a config means importing PyYAML and jsonschema and validating
against the kas schema, which costs more than all of kasctl's other work
before a container starts, while a config rarely changes between two runs.
So a config found valid is stored under a digest of everything its verdict
depends on (see kasctl.config), and a later run with the same digest takes
the stored result and imports neither.

An entry is found only by its digest and names it inside, so an edited file
never meets an old entry; an entry that cannot be read, is not JSON, names
another digest or belongs to another user is ignored (and replaced on the
next store). The entries live in $XDG_CACHE_HOME/kasctl (else
~/.cache/kasctl), one small JSON file each; when that cannot be made, read or
written, kasctl works as if nothing was ever stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Entries kept; the least recently used go first when a store passes this.
MAX_ENTRIES = 256


def directory(env: Mapping[str, str]) -> Path | None:
    """$XDG_CACHE_HOME/kasctl, else $HOME/.cache/kasctl; None without an absolute base."""
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        home = env.get("HOME", "")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "kasctl"


def digest(*parts: bytes) -> str:
    """A SHA-256 over the parts, each length-prefixed so that no two splits collide."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def load(where: Path | None, key: str) -> Any:
    """The value stored under key, or None."""
    if where is None:
        return None
    entry_path = where / f"{key}.json"
    try:
        with open(entry_path, "rb") as f:
            if os.fstat(f.fileno()).st_uid != os.geteuid():
                return None
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    with contextlib.suppress(OSError):
        os.utime(entry_path)  # recently used: pruned last
    return entry.get("value")


def save(where: Path | None, key: str, value: Any) -> bool:
    """Store value under key if JSON keeps it exactly; False when nothing was stored."""
    if where is None:
        return False
    try:
        text = json.dumps({"key": key, "value": value}, ensure_ascii=False)
    except (TypeError, ValueError):  # dates, sets, binary, non-string keys: not stored
        return False
    if json.loads(text)["value"] != value:  # e.g. an int key would come back a string
        return False
    temporary = where / f".{key}.{os.getpid()}.tmp"
    try:
        if not _owned_base(where):
            return False
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, where / f"{key}.json")
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        return False
    _prune(where)
    return True


def _owned_base(where: Path) -> bool:
    """The nearest existing directory on the way to `where` is ours.

    Keeps root (e.g. `sudo -E kasctl`, which keeps the user's HOME) from
    creating root-owned entries the user could later not replace.
    """
    for directory in (where, *where.parents):
        try:
            return directory.stat().st_uid == os.geteuid()
        except FileNotFoundError:
            continue
    return False


def _prune(where: Path) -> None:
    with contextlib.suppress(OSError):
        entries = [e for e in os.scandir(where) if e.name.endswith(".json")]
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda e: e.stat().st_mtime_ns)
        for entry in entries[: len(entries) - MAX_ENTRIES]:
            os.unlink(entry.path)
