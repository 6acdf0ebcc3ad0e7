"""One kas config file read from the host: its text, format and data (validated)."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kasctl.config.validate import Count, parse_and_validate, remembered, verdict_key
from kasctl.errors import ConfigError
from kasctl.host import cache as result_cache

log = logging.getLogger("kasctl")


#: The only file names kas reads as configs (it refuses any other extension).
SUFFIXES = (".yml", ".yaml", ".json")


@dataclass(frozen=True)
class ConfigFile:
    """One validated file: where it is, and what it says."""

    path: Path
    data: dict[str, Any]
    #: 1-based line of each key path (YAML only), for messages about this file.
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict, compare=False, repr=False)


def read_config_text(path: Path, what: str) -> str:
    """A config-like file's text, or one ConfigError that says what is wrong with the path.

    Only regular files are opened: a fifo or a device would block or never end,
    and the container could not see it anyway.
    """
    shown = str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        hint = " (CONFIG may be a.yml:b.yml)" if what == "config file" else ""
        raise ConfigError(f"{what} not found", where=shown, fix=f"check the path{hint}") from None
    except PermissionError:
        raise ConfigError(
            f"{what} cannot be reached: permission denied on a directory above it",
            where=shown,
            fix="check the modes of the directories on its path",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the {what}: {exc.strerror}", where=shown, fix="check the path"
        ) from None
    if stat.S_ISDIR(mode):
        raise ConfigError(
            f"{what} is a directory, not a file",
            where=shown,
            fix="name a file in it, e.g. DIR/kas.yml",
        )
    if not stat.S_ISREG(mode):
        kind = (
            "a fifo" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        )
        raise ConfigError(
            f"{what} is {kind}, not a regular file",
            where=shown,
            fix="write the config to a file in the repository and name that file",
        )
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        raise ConfigError(
            f"{what} is not readable (permission denied)",
            where=shown,
            fix="check its mode and owner: kasctl reads it as the user who runs it",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})",
            where=shown,
            fix="save it as UTF-8",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the {what}: {exc.strerror}", where=shown, fix="check the path"
        ) from None


def load_file(path: Path) -> ConfigFile:
    """Read, parse and validate one config file; raise ConfigError on any problem."""
    shown = str(path)
    text = read_config_text(path, "config file")
    if path.suffix not in SUFFIXES:
        raise ConfigError(
            "kas reads only .yml, .yaml and .json config files, and this name "
            + (f"ends in {path.suffix!r}" if path.suffix else "has no suffix"),
            where=shown,
            fix=f"rename it to {path.stem}.yml",
        )
    where = result_cache.directory(os.environ)
    key = verdict_key(path.suffix, text)
    known = remembered(where, key)
    if known is not None:
        return ConfigFile(path=path, data=known[0], lines=known[1])
    warnings = Count(logging.WARNING)
    log.addFilter(warnings)
    try:
        data, lines = parse_and_validate(path, text)
    finally:
        log.removeFilter(warnings)
    if key is not None and not warnings.seen:  # a file that warns is read every time
        entry = {"data": data, "lines": [[list(k), n] for k, n in lines.items()]}
        result_cache.save(where, key, entry)
    return ConfigFile(path=path, data=data, lines=lines)
