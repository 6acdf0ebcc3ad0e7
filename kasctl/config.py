"""Reading kas config files on the host, before any container starts.

Every file named on the command line is parsed with PyYAML and validated
against schema/kas-config.schema.json; an error names the file, the key path
and the line, so a broken config costs a second, not a container start.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from kasctl.errors import ConfigError

log = logging.getLogger("kasctl")

#: The newest config format version kas 5.5 (the image's kas) understands.
NEWEST_FORMAT = 23


class BuildSystem(enum.Enum):
    """What the container must allow; the value is kas's own spelling."""

    OPENEMBEDDED = "openembedded"
    ISAR_PRIVILEGED = "isar-privileged"
    ISAR_ROOTLESS = "isar-rootless"

    @classmethod
    def parse(cls, text: str, where: str) -> BuildSystem:
        match text:
            case "openembedded" | "oe":
                return cls.OPENEMBEDDED
            case "isar":
                log.warning(
                    "%s: build_system 'isar' is deprecated and means isar-privileged; "
                    "write isar-privileged or isar-rootless",
                    where,
                )
                return cls.ISAR_PRIVILEGED
            case "isar-privileged":
                return cls.ISAR_PRIVILEGED
            case "isar-rootless":
                return cls.ISAR_ROOTLESS
        raise ConfigError(
            f"unknown build_system {text!r}",
            where=where,
            fix="use one of openembedded, oe, isar-privileged, isar-rootless",
        )

    @property
    def is_isar(self) -> bool:
        return self is not BuildSystem.OPENEMBEDDED


@dataclass(frozen=True)
class ConfigFile:
    """One validated file: where it is, and what it says."""

    path: Path
    data: dict[str, Any]


@dataclass(frozen=True)
class Config:
    """What the planner needs from the configs: files, their repo, the build system."""

    files: tuple[ConfigFile, ...]
    repo_dir: Path
    build_system: BuildSystem

    def container_paths(self, repo_mount: str) -> list[str]:
        """The config files as the container sees them, below the repo mount."""
        return [f"{repo_mount}/{f.path.relative_to(self.repo_dir).as_posix()}" for f in self.files]


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("kasctl").joinpath("data/schema/kas-config.schema.json")
    if not text.is_file():  # running from a source checkout
        text = Path(__file__).resolve().parent.parent / "schema" / "kas-config.schema.json"
    schema: dict[str, Any] = json.loads(text.read_text())
    return schema


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key and item."""


MERGE_TAG = "tag:yaml.org,2002:merge"


def _compose_with_lines(text: str, shown: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML into plain data plus a map from key path to 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}
    loader = _LineLoader(text)
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
        if id(n) in seen:  # an alias already walked (or a recursive one)
            return
        seen.add(id(n))
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                if key.tag == MERGE_TAG:  # `<<: *anchor`: its keys land on this level
                    walk(value, path)
                    continue
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(
                        "a mapping key must be a plain value, not a list or mapping",
                        where=f"{shown}:{key.start_mark.line + 1}",
                    )
                child = path + (loader.construct_object(key, deep=True),)
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(n, yaml.SequenceNode):
            for index, item in enumerate(n.value):
                walk(item, path + (index,))

    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        walk(node, ())
        data = loader.construct_document(node)
    except RecursionError:
        raise ConfigError("a YAML alias refers to itself", where=shown) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # PyYAML's constructors raise these for values like `!!int x` or 2001-02-30
        raise ConfigError(f"cannot read a YAML value: {exc}", where=shown) from None
    finally:
        loader.dispose()
    return data, lines


def _key_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_file(path: Path) -> ConfigFile:
    """Read, parse and validate one config file; raise ConfigError on any problem."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found", where=shown, fix="check the path (CONFIG may be a.yml:b.yml)"
        ) from None
    except IsADirectoryError:
        raise ConfigError("config path is a directory, not a file", where=shown) from None
    except PermissionError:
        raise ConfigError(
            "config file is not readable", where=shown, fix="check its mode"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file is not UTF-8 text ({exc.reason})", where=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", where=shown) from None

    lines: dict[tuple[Any, ...], int] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"JSON syntax error: {exc.msg}", where=f"{shown}:{exc.lineno}"
            ) from None
    else:
        try:
            data, lines = _compose_with_lines(text, shown)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{shown}:{mark.line + 1}" if mark else shown
            problem = exc.problem or exc.context or "invalid YAML"
            raise ConfigError(f"YAML syntax error: {problem}", where=where) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"YAML error: {exc}", where=shown) from None

    if data is None:
        raise ConfigError(
            "config file is empty",
            where=shown,
            fix="a kas config needs at least `header: {version: 14}`",
        )
    _validate(data, lines, shown)
    return ConfigFile(path=path, data=data)


def _validate(data: Any, lines: dict[tuple[Any, ...], int], shown: str) -> None:
    import jsonschema  # heavy: only imported when a file is actually validated

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(
        validator.iter_errors(data),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]),
    )
    if not errors:
        version = data.get("header", {}).get("version")
        if isinstance(version, int) and version > NEWEST_FORMAT:
            raise ConfigError(
                f"header.version {version} is newer than this kasctl's kas understands "
                f"(at most {NEWEST_FORMAT})",
                where=f"{shown}:{lines.get(('header', 'version'), 1)}",
                fix="upgrade kasctl, or lower header.version",
            )
        return
    try:
        best = jsonschema.exceptions.best_match(errors)
    except TypeError:  # keys of mixed types (1 and "a") cannot be ordered: take the first
        best = errors[0]
    path = tuple(best.absolute_path)
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        known = best.schema.get("properties", {})
        unknown = [k for k in best.instance if k not in known]
        if unknown:  # point at the offending key's own line
            path += (unknown[0],)
    line = next((lines[path[:n]] for n in range(len(path), -1, -1) if path[:n] in lines), 1)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise ConfigError(
        f"{_key_path(path)}: {_describe(best)}{more}",
        where=f"{shown}:{line}",
        fix="see the kas config format reference for this key",
    )


def _describe(error: Any) -> str:
    """A short message for a schema error, without dumping the whole schema."""
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        return f"{error.instance!r} is not one of {', '.join(map(repr, allowed))}"
    if error.validator in ("anyOf", "oneOf"):
        return f"{error.instance!r} is not a valid value here"
    return str(error.message)


def repo_dir_of(path: Path) -> Path:
    """The repository a config lives in: its git/hg top level, else its directory."""
    directory = path.resolve().parent
    for probe in (["git", "rev-parse", "--show-toplevel"], ["hg", "root"]):
        try:
            out = subprocess.run(probe, cwd=directory, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            continue
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    return directory


@dataclass(frozen=True)
class Worktree:
    """A git worktree: its .git is a file pointing into another repository's .git."""

    common_dir: Path
    #: The worktree's own directory, relative to common_dir (worktrees/NAME).
    gitdir: str


def worktree_of(repo_dir: Path) -> Worktree | None:
    """Read repo_dir/.git when it is a file (`gitdir: ...`); None for a plain repo."""
    dotgit = repo_dir / ".git"
    if not dotgit.is_file():
        return None
    text = dotgit.read_text().strip()
    if not text.startswith("gitdir:"):
        return None
    gitdir = (repo_dir / text.split(":", 1)[1].strip()).resolve()
    commondir = gitdir / "commondir"
    common = (gitdir / commondir.read_text().strip()).resolve() if commondir.is_file() else None
    if common is None or not gitdir.is_relative_to(common):
        return None
    return Worktree(common_dir=common, gitdir=gitdir.relative_to(common).as_posix())


def split_config_arg(arg: str) -> list[Path]:
    """`a.yml:b.yml` -> [a.yml, b.yml]; an empty part is an error, not ignored."""
    parts = arg.split(":")
    if any(not p.strip() for p in parts):
        raise ConfigError(
            f"config list {arg!r} has an empty part",
            fix="join config files with ':' and no empty entries, e.g. base.yml:extra.yml",
        )
    return [Path(p) for p in parts]


def load(arg: str, build_system_override: BuildSystem | None = None) -> Config:
    """Load and validate every file of a CONFIG argument; the first decides the build system."""
    files = tuple(load_file(p) for p in split_config_arg(arg))
    repo = repo_dir_of(files[0].path)
    for f in files[1:]:
        if not f.path.resolve().is_relative_to(repo):
            raise ConfigError(
                f"config file is outside the first file's repository {repo}",
                where=str(f.path),
                fix="all files of a:b:c must live in the first file's repository",
            )
    first = files[0]
    if build_system_override is not None:
        build_system = build_system_override
    else:
        build_system = BuildSystem.parse(
            str(first.data.get("build_system", "openembedded")), str(first.path)
        )
    files = tuple(ConfigFile(path=f.path.resolve(), data=f.data) for f in files)
    return Config(files=files, repo_dir=repo, build_system=build_system)


MENU_CONFIG = ".config.yaml"
#: Where `kasctl menu` records the host directory of the Kconfig's repository.
SOURCE_DIR_HOST = "_source_dir_host"


def default_config(work_dir: Path, override: BuildSystem | None) -> Config | None:
    """kas's default config, KAS_WORK_DIR/.config.yaml, written by `menu`.

    kas reads it from /work itself; kasctl validates it and mounts the
    repository `menu` recorded in it, so a plain `kasctl build` works.
    """
    path = work_dir / MENU_CONFIG
    if not path.is_file():
        return None
    loaded = load_file(path)
    source = loaded.data.get(SOURCE_DIR_HOST)
    repo = Path(source) if isinstance(source, str) and Path(source).is_dir() else work_dir
    build_system = override or BuildSystem.parse(
        str(loaded.data.get("build_system", "openembedded")), str(path)
    )
    return Config(files=(loaded,), repo_dir=repo.resolve(), build_system=build_system)


def load_kconfig(arg: str, override: BuildSystem | None) -> Config:
    """menu's Kconfig: its repository is mounted; KAS_BUILD_SYSTEM's default names the mode."""
    path = Path(arg)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the Kconfig file: {exc.strerror}", where=arg) from None
    found = re.search(r"config\s+KAS_BUILD_SYSTEM\b(.*?)(?:^config\s|\Z)", text, re.S | re.M)
    default = re.search(r'default\s+"([^"]+)"', found.group(1)) if found else None
    build_system = override or (
        BuildSystem.parse(default.group(1), arg) if default else BuildSystem.OPENEMBEDDED
    )
    file = ConfigFile(path=path.resolve(), data={})
    return Config(files=(file,), repo_dir=repo_dir_of(path), build_system=build_system)


def remember_source_dir(work_dir: Path, repo_dir: Path) -> None:
    """After `menu`: record the host repository in .config.yaml for a later plain build."""
    path = work_dir / MENU_CONFIG
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if not line.startswith(SOURCE_DIR_HOST)]
    lines.append(f"{SOURCE_DIR_HOST}: {json.dumps(str(repo_dir))}")
    path.write_text("\n".join(lines) + "\n")
