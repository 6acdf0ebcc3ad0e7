"""A config's local includes: each checked (inside the repository, no symlink out of it,
present, no cycle) and merged as kas merges them, for the build_system they settle.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kasctl.build_system import BuildSystem
from kasctl.config.files import ConfigFile, load_file
from kasctl.errors import ConfigError

log = logging.getLogger("kasctl")


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


def warn_if_kas_disagrees(override: BuildSystem, merged: Merged) -> None:
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
        seen.append(f)  # after its includes: kas's merge order, which _local_repos follows
        return merged.then(_own_merge(f))

    merged = Merged()
    for f in files:
        merged = merged.then(visit(f, (f.path.resolve(),)))
    return merged
