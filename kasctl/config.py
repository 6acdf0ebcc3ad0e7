"""Reading kas config files on the host, before any container starts.

Every file named on the command line is parsed with PyYAML and validated
against schema/kas-config.schema.json; an error names the file, the key path
and the line, so a broken config costs a second, not a container start.
A file found valid is remembered (kasctl.host.cache) by a digest of its bytes,
the schema and this module, so an unchanged file costs neither PyYAML nor
jsonschema on the next run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.errors import ConfigError
from kasctl.host import cache as result_cache
from kasctl.layout import mountable

REAL_PATH_FIX = "rename or move it (kasctl mounts its real path, so a symlink does not help)"

log = logging.getLogger("kasctl")

#: The newest config format version kas 5.5 (the image's kas) understands.
NEWEST_FORMAT = 23
#: The only file names kas reads as configs (it refuses any other extension).
SUFFIXES = (".yml", ".yaml", ".json")
FORMAT_REFERENCE = "https://kas.readthedocs.io/en/latest/userguide/project-configuration.html"


@dataclass(frozen=True)
class ConfigFile:
    """One validated file: where it is, and what it says."""

    path: Path
    data: dict[str, Any]
    #: 1-based line of each key path (YAML only), for messages about this file.
    lines: dict[tuple[Any, ...], int] = field(default_factory=dict, compare=False, repr=False)


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
def _schema_text() -> str:
    # a plain path, not importlib.resources: that import alone costs more than the read
    here = Path(__file__).resolve().parent
    packaged = here / "data" / "schema" / "kas-config.schema.json"
    if not packaged.is_file():  # running from a source checkout
        packaged = here.parent / "schema" / "kas-config.schema.json"
    return packaged.read_text()


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


MERGE_TAG = "tag:yaml.org,2002:merge"


def _compose_with_lines(text: str, shown: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML into plain data plus a map from key path to 1-based line."""
    import yaml  # not needed when the file's verdict is cached

    lines: dict[tuple[Any, ...], int] = {}
    loader = yaml.SafeLoader(text)
    seen: set[int] = set()

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> None:
        if id(n) in seen:  # an alias already walked (or a recursive one)
            return
        seen.add(id(n))
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            given: dict[Any, int] = {}
            for key, value in n.value:
                if key.tag == MERGE_TAG:  # `<<: *anchor`: its keys land on this level
                    walk(value, path)
                    continue
                if not isinstance(key, yaml.ScalarNode):
                    raise ConfigError(
                        "a mapping key must be a plain value, not a list or mapping",
                        where=f"{shown}:{key.start_mark.line + 1}",
                        fix="write the key as a plain word or a quoted string",
                    )
                name = loader.construct_object(key, deep=True)
                line = key.start_mark.line + 1
                if name in given:
                    # kas (PyYAML) silently keeps the last one: a lost block is worth a word
                    log.warning(
                        "%s:%d: %s is given twice (also on line %d); the later one wins",
                        shown,
                        line,
                        _key_path(path + (name,)),
                        given[name],
                    )
                given.setdefault(name, line)
                child = path + (name,)
                lines[child] = line
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
        raise ConfigError(
            "a YAML alias refers to itself",
            where=shown,
            fix="an alias (*name) must not stand inside the value its anchor (&name) marks",
        ) from None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # PyYAML's constructors raise these for values like `!!int x` or 2001-02-30
        raise ConfigError(
            f"cannot read a YAML value: {exc}",
            where=shown,
            fix="quote the value (e.g. '2001-02-30') or remove its !! tag",
        ) from None
    finally:
        loader.dispose()
    return data, lines


def _key_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _read_config_text(path: Path, what: str) -> str:
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
    text = _read_config_text(path, "config file")
    if path.suffix not in SUFFIXES:
        raise ConfigError(
            "kas reads only .yml, .yaml and .json config files, and this name "
            + (f"ends in {path.suffix!r}" if path.suffix else "has no suffix"),
            where=shown,
            fix=f"rename it to {path.stem}.yml",
        )
    where = result_cache.directory(os.environ)
    key = _verdict_key(path.suffix, text)
    remembered = _remembered(where, key)
    if remembered is not None:
        return ConfigFile(path=path, data=remembered[0], lines=remembered[1])
    warnings = _Count(logging.WARNING)
    log.addFilter(warnings)
    try:
        data, lines = _parse_and_validate(path, text)
    finally:
        log.removeFilter(warnings)
    if key is not None and not warnings.seen:  # a file that warns is read every time
        entry = {"data": data, "lines": [[list(k), n] for k, n in lines.items()]}
        result_cache.save(where, key, entry)
    return ConfigFile(path=path, data=data, lines=lines)


class _Count(logging.Filter):
    """Counts the records at or above a level that pass the logger (and lets them pass)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            self.seen += 1
        return True


@cache
def _verdict_inputs() -> bytes | None:
    """Everything besides the file that decides whether it is valid: the schema, this code."""
    try:
        code = Path(__file__).read_bytes()
        return result_cache.digest(__version__.encode(), code, _schema_text().encode()).encode()
    except OSError:
        return None


def _verdict_key(suffix: str, text: str) -> str | None:
    inputs = _verdict_inputs()
    if inputs is None:
        return None
    parser = b"json" if suffix == ".json" else b"yaml"
    return result_cache.digest(b"kasctl config", inputs, parser, text.encode())


def _remembered(
    where: Path | None, key: str | None
) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]] | None:
    """A valid file's data and lines from the cache; None unless the entry is whole."""
    entry = result_cache.load(where, key) if key is not None else None
    if not isinstance(entry, dict):
        return None
    data, pairs = entry.get("data"), entry.get("lines")
    if not isinstance(data, dict) or not isinstance(pairs, list):
        return None
    lines = {}
    for pair in pairs:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], list)
            and isinstance(pair[1], int)
        ):
            return None
        lines[tuple(pair[0])] = pair[1]
    return data, lines


def _parse_and_validate(path: Path, text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    shown = str(path)
    lines: dict[tuple[Any, ...], int] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"JSON syntax error: {exc.msg}",
                where=f"{shown}:{exc.lineno}",
                fix="check the commas, quotes and brackets there (JSON allows no trailing comma)",
            ) from None
    else:
        import yaml

        try:
            data, lines = _compose_with_lines(text, shown)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{shown}:{mark.line + 1}" if mark else shown
            problem = exc.problem or exc.context or "invalid YAML"
            if "\\t" in problem:
                fix = "YAML indents with spaces only: replace the tab"
            elif "another document" in problem:
                problem = "a second document (kas reads one)"
                fix = "a kas config is one YAML document: remove the second `---`"
            else:
                fix = "check the indentation, colons and quotes on that line and the one before"
            raise ConfigError(f"YAML syntax error: {problem}", where=where, fix=fix) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"YAML error: {exc}",
                where=shown,
                fix="a kas config is plain YAML text: remove control characters",
            ) from None

    if data is None:
        raise ConfigError(
            "config file is empty",
            where=shown,
            fix="a kas config needs at least `header: {version: 14}`",
        )
    _validate(data, lines, shown)
    return data, lines


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
    fix = f"see the kas config format: {FORMAT_REFERENCE}"
    if not path and best.validator == "type":
        fix = "a kas config is a mapping that starts with `header: {version: 14}`"
    raise ConfigError(
        f"{_key_path(path)}: {_describe(best)}{more}", where=f"{shown}:{line}", fix=fix
    )


TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


def _expected(schema: Any) -> str:
    """What a (sub)schema accepts, in words: `'0.10'`, `an integer >= 1`, `a mapping`."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " or ".join(map(repr, schema["enum"]))
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    text = " or ".join(TYPE_NAMES.get(k, k) for k in kinds) or "a valid value"
    if "minimum" in schema:
        text += f" >= {schema['minimum']}"
    if schema.get("required"):
        text += " with " + " and ".join(map(repr, schema["required"]))
    return text


def _describe(error: Any) -> str:
    """A short message for a schema error, without dumping the whole schema."""
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown key(s)")
    if error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        return f"{error.instance!r} is not one of {', '.join(map(repr, allowed))}"
    if error.validator in ("anyOf", "oneOf"):
        choices = " or ".join(_expected(s) for s in error.validator_value)
        return f"{error.instance!r} is not valid here: expected {choices}"
    if error.validator == "type":
        return f"{error.instance!r} is not {_expected({'type': error.validator_value})}"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            return f"the required key {missing[0]!r} is missing"
    return str(error.message)


def _vcs_root(directory: Path) -> Path | None:
    """The git or hg top level that holds a directory; None outside any repository."""
    for probe in (["git", "rev-parse", "--show-toplevel"], ["hg", "root"]):
        try:
            out = subprocess.run(probe, cwd=directory, capture_output=True, text=True, check=False)
        except OSError:  # that tool is not installed (or not runnable): try the next
            continue
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip()).resolve()
    return None


def repo_dir_of(path: Path) -> Path:
    """The repository a config lives in: its git/hg top level, else its directory."""
    directory = path.resolve().parent
    return _vcs_root(directory) or directory


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


#: Characters a bind-mount source may not hold: --mount splits on ',', and a
#: newline breaks every engine's option parsing.
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
    """Load and validate every file of a CONFIG argument and the local files they include.

    The build system is kas's: the last value in kas's merge order of all of
    them (see resolve_build_system), unless the command line overrides it.
    """
    files = tuple(load_file(p) for p in split_config_arg(arg))
    first_dir = files[0].path.resolve().parent
    first_root = _vcs_root(first_dir)
    repo = first_root or first_dir
    for f in files[1:]:
        if not f.path.resolve().is_relative_to(repo):
            raise ConfigError(
                f"config file is outside the first file's repository {repo}",
                where=str(f.path),
                fix="all files of a:b:c must live in the first file's repository",
            )
        root = _vcs_root(f.path.resolve().parent)
        if root != first_root:  # kas's own rule: one repository (or none) for all
            raise ConfigError(
                f"config file belongs to {'repository ' + str(root) if root else 'no repository'}"
                f", the first file to {'repository ' + str(first_root) if first_root else 'none'}",
                where=str(f.path),
                fix="kas takes all files of a:b:c from one repository: move them into one",
            )
    mountable(repo, "the config's repository", fix=REAL_PATH_FIX, error=ConfigError)
    merged = check_includes(files, repo)
    if build_system_override is not None:
        build_system = build_system_override
        _warn_if_kas_disagrees(build_system_override, merged)
    else:
        build_system = resolve_build_system(merged, files[-1])
    files = tuple(ConfigFile(path=f.path.resolve(), data=f.data, lines=f.lines) for f in files)
    return Config(files=files, repo_dir=repo, build_system=build_system)


@dataclass(frozen=True)
class RemoteInclude:
    """An include from a repo kas has not checked out yet: kasctl cannot read it."""

    repo: str
    file: str
    #: file:line of the include in the file that names it.
    where: str


@dataclass(frozen=True)
class Merged:
    """What kas's merge of some files says about build_system, as far as kasctl can see.

    ``decider`` is the last file in kas's merge order that sets build_system
    (with the value's file:line), None when no local file does; ``after`` are
    the remote includes merged after it (all of them when there is no decider),
    any of which could set it again.
    """

    decider: tuple[ConfigFile, str] | None = None
    after: tuple[RemoteInclude, ...] = ()

    def then(self, later: Merged) -> Merged:
        """This merge followed by a later one: the later decider wins."""
        if later.decider is not None:
            return later
        return Merged(self.decider, self.after + later.after)


def _own_merge(f: ConfigFile) -> Merged:
    """One file on its own, after its includes: it wins if it sets build_system."""
    if "build_system" not in f.data:
        return Merged()
    return Merged((f, f"{f.path}:{f.lines.get(('build_system',), 1)}"))


def _warn_if_kas_disagrees(override: BuildSystem, merged: Merged) -> None:
    """--isar-rootless/--isar-privileged set the container up; kas still builds the config's.

    As with kas-container, the option does not reach kas's choice: a config
    that says otherwise is built the config's way, in a container set up for
    the option's (isar-privileged in a rootless container meets the sudo
    blocker). Said once, where the config is known to disagree.
    """
    if merged.decider is None:
        if merged.after:
            return  # a remote include may well agree; resolve_build_system's case
        value, where = "openembedded", "kas's default: no file sets build_system"
    else:
        f, where = merged.decider
        raw = str(f.data["build_system"])
        named = BuildSystem.named(raw)
        value = named.value if named else raw
    if value == override.value:
        return
    log.warning(
        "--%s sets the container up for %s, but kas builds what the config says: "
        "%s (%s); set `build_system: %s` in the config so that both agree",
        override.value,
        override.value,
        value,
        where,
        override.value,
    )


def resolve_build_system(merged: Merged, top: ConfigFile) -> BuildSystem:
    """kas's build system for a merge; one warning when a remote include may change it."""
    if merged.decider is None:
        build_system, source = BuildSystem.OPENEMBEDDED, "kas's default (no local file sets it)"
    else:
        f, where = merged.decider
        build_system = BuildSystem.parse(str(f.data["build_system"]), where)
        source = f"set in {where}"
    if merged.after:
        names = ", ".join(
            dict.fromkeys(f"{r.file!r} from repo {r.repo!r} ({r.where})" for r in merged.after)
        )
        log.warning(
            "build_system is %s, %s, but kas merges %s after that, and kasctl cannot read "
            "a repo kas has not checked out yet: if it sets build_system, the container "
            "is set up for the wrong build system; make the choice explicit with "
            "--isar-rootless or --isar-privileged, or a top-level `build_system:` in %s",
            build_system.value,
            source,
            names,
            top.path,
        )
    return build_system


def _include_target(
    item: str, repo: Path, including: Path, where: str, *, file_relative: bool = True
) -> Path:
    """The host file a local include names, as kas finds it inside the container.

    kas looks first below the repository root, then (with a warning, and only
    for a plain-string include) next to the including file. The container sees
    only the repository (at /repo), so a path that leaves it, or a symlink that
    points out of it, is not there.
    """
    bases = (repo, including.parent) if file_relative else (repo,)
    candidates = [Path(os.path.abspath(base / item)) for base in bases]
    for candidate in candidates:
        if not candidate.is_relative_to(repo) or not os.path.lexists(candidate):
            continue
        real = candidate.resolve()
        if not real.is_relative_to(repo):
            raise ConfigError(
                f"include {item!r} is a symlink to {real}, outside the repository {repo}: "
                "the container sees only the repository",
                where=where,
                fix="copy the file into the repository, or include it from a repo in `repos:`",
            )
        return candidate
    outside = [c for c in candidates if not c.is_relative_to(repo) and c.exists()]
    if outside:
        raise ConfigError(
            f"include {item!r} is {outside[0]}, outside the repository {repo}: "
            "the container sees only the repository",
            where=where,
            fix="move the file into the repository, or include it from a repo in `repos:`",
        )
    tried = " or ".join(dict.fromkeys(str(c) for c in candidates))
    raise ConfigError(
        f"include {item!r} not found (looked for {tried})",
        where=where,
        fix="fix the path in header.includes: kas resolves it from the repository root",
    )


def _kas_merge(dest: Any, upd: Any) -> Any:
    """kas's merge of two values: mappings key by key, anything else replaced."""
    if not isinstance(dest, dict) or not isinstance(upd, dict):
        return upd
    out = dict(dest)
    for key, value in upd.items():
        out[key] = _kas_merge(out[key], value) if key in out else value
    return out


def _local_repos(files: list[ConfigFile]) -> set[str]:
    """The `repos:` names that are the config's own repository: no url and no path.

    kas gives such a repo the top repository's root, so `{repo: NAME, file: F}`
    is the local file F below that root.
    """
    repos: Any = {}
    for f in files:
        repos = _kas_merge(repos, f.data.get("repos", {}))
    if not isinstance(repos, dict):
        return set()
    return {
        name
        for name, entry in repos.items()
        if entry is None or (isinstance(entry, dict) and not {"url", "path"} & entry.keys())
    }


def check_includes(files: tuple[ConfigFile, ...], repo: Path) -> Merged:
    """Check, before any container starts, every include kas will read from this repository.

    Local includes (a plain string, or `{repo: NAME, file: F}` with a NAME in
    `repos:` without url and path) are found as kas finds them and validated
    like the files named on the command line, recursively; a cycle is an error.
    Includes from another repo are left to kas, which checks that repo out
    first. Absolute paths are container paths: kas's too.

    Returns what kas's merge order says about build_system: the files named on
    the command line left to right, each after its includes (depth-first, in
    order), a later value winning, as kas's IncludeHandler merges them.
    """
    # which repos are local is read from the files the string includes reach;
    # a second walk then follows the dict includes into those repos too
    seen: list[ConfigFile] = []
    merged = _walk_includes(files, repo, set(), seen)
    local = _local_repos(seen)
    return _walk_includes(files, repo, local, []) if local else merged


def _walk_includes(
    files: tuple[ConfigFile, ...], repo: Path, local: set[str], seen: list[ConfigFile]
) -> Merged:
    memo: dict[Path, Merged] = {}

    def visit(f: ConfigFile, chain: tuple[Path, ...]) -> Merged:
        seen.append(f)
        header = f.data.get("header")
        includes = header.get("includes") if isinstance(header, dict) else None
        merged = Merged()
        for index, item in enumerate(includes if isinstance(includes, list) else []):
            where = f"{f.path}:{f.lines.get(('header', 'includes', index), 1)}"
            if isinstance(item, dict):
                name, file = str(item.get("repo")), str(item.get("file"))
                if name not in local:
                    merged = merged.then(Merged(after=(RemoteInclude(name, file, where),)))
                    continue
                target = _include_target(file, repo, chain[-1], where, file_relative=False)
                shown = file
            elif isinstance(item, str) and not item.startswith(("/", os.pathsep)):
                target = _include_target(item, repo, chain[-1], where)
                shown = item
            else:
                continue
            key = target.resolve()
            if key in chain:
                loop = " -> ".join(str(p) for p in (*chain[chain.index(key) :], key))
                raise ConfigError(
                    f"include {shown!r} closes a cycle: {loop}",
                    where=where,
                    fix="remove one of the includes so that no file includes itself",
                )
            if key not in memo:
                try:
                    included = load_file(target)
                except ConfigError as exc:
                    exc.message += f" (included from {where})"
                    raise
                memo[key] = visit(included, (*chain, key))
            merged = merged.then(memo[key])
        return merged.then(_own_merge(f))

    merged = Merged()
    for f in files:
        merged = merged.then(visit(f, (f.path.resolve(),)))
    return merged


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
    mountable(
        repo.resolve(),
        "the repository recorded in .config.yaml",
        fix=REAL_PATH_FIX,
        error=ConfigError,
    )
    return Config(files=(loaded,), repo_dir=repo.resolve(), build_system=build_system)


def load_kconfig(arg: str, override: BuildSystem | None) -> Config:
    """menu's Kconfig: its repository is mounted; KAS_BUILD_SYSTEM's default names the mode."""
    path = Path(arg)
    text = _read_config_text(path, "Kconfig file")
    found = re.search(r"config\s+KAS_BUILD_SYSTEM\b(.*?)(?:^config\s|\Z)", text, re.S | re.M)
    default = re.search(r'default\s+"([^"]+)"', found.group(1)) if found else None
    build_system = override or (
        BuildSystem.parse(default.group(1), arg) if default else BuildSystem.OPENEMBEDDED
    )
    file = ConfigFile(path=path.resolve(), data={})
    repo = repo_dir_of(path)
    mountable(repo, "the Kconfig's repository", fix=REAL_PATH_FIX, error=ConfigError)
    return Config(files=(file,), repo_dir=repo, build_system=build_system)


def remember_source_dir(work_dir: Path, repo_dir: Path) -> None:
    """After `menu`: record the host repository in .config.yaml for a later plain build."""
    path = work_dir / MENU_CONFIG
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if not line.startswith(SOURCE_DIR_HOST)]
    lines.append(f"{SOURCE_DIR_HOST}: {json.dumps(str(repo_dir))}")
    path.write_text("\n".join(lines) + "\n")
