"""Rootless clean: remove an Isar build's leftovers in ONE user namespace, safely.

Why this exists: an interrupted isar-rootless build leaves build/tmp* trees
whose files and directories belong to the user's sub-ids (Isar's rootfs
trees), which the user cannot remove. kas's own clean enters a new user
namespace for every directory the user does not own (`find ... -exec unshare
--map-auto --map-root-user rm -rf {} ;`): a fork and exec of unshare,
newuidmap, newgidmap and rm per directory. Here the whole job is ONE process
in ONE `unshare --map-auto --map-root-user` (see `namespaced_argv`): that
namespace's root holds the user's uid and every sub-id, so its
CAP_DAC_OVERRIDE covers all the build made, and removal is plain
unlink/rmdir.

Root over those ids makes a mistake costlier, so:

- build dirs (and SSTATE_DIR / DL_DIR, whose contents are emptied) that
  resolve to /, to $HOME or to the work dir are refused (`check_build_dir`);
- removal is fd-relative (openat/unlinkat/rmdir with dir_fd, O_NOFOLLOW) and
  never follows a symlink: a link is unlinked, its target is untouched;
- it never descends into a mount point (a bind mount left under the tree):
  one listed in /proc/self/mountinfo (same-filesystem bind mounts keep the
  same st_dev, so st_dev alone cannot see them) or a directory whose st_dev
  differs from its root's; it is left in place and reported;
- it continues past errors, then reports every path left and why (exit 1).

`--dry-run` runs the very same walk with unlink and rmdir switched off, so
it prints exactly the list a real run prints, mount points included (only
I/O errors of the removal itself cannot be foreseen).

Stdlib only (plus kasctl.errors and the import-free kasctl.spec): it runs
inside the image too, started by the entrypoint. `purge` stays with kas.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kasctl.errors import HostError, KasctlError, UsageError
from kasctl.spec import CLEANER_COMMANDS

#: The commands done here (kasctl.spec's cleaner ones): clean, cleansstate, cleanall.
COMMANDS = CLEANER_COMMANDS
#: Threads removing at once (see _Remover); more gain little even on a slow disk.
WORKERS = 16
#: How deep _Remover looks for subtrees to hand out (each level holds open fds).
SPLIT_DEPTH = 6
MOUNTINFO = "/proc/self/mountinfo"
MOUNT_POINT = "a mount point (a bind mount or another filesystem): not descended into"
#: A directory opened for the walk: never through a symlink, closed on exec.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FIXES = {
    "KAS_BUILD_DIR": "point KAS_BUILD_DIR at the build directory itself "
    "(default: KAS_WORK_DIR/build)",
    "SSTATE_DIR": "point SSTATE_DIR at the sstate cache itself (its contents are emptied)",
    "DL_DIR": "point DL_DIR at the downloads directory itself (its contents are emptied)",
}


@dataclass
class Report:
    """What a clean removed (top-level paths), what it left (path, why), and which targets stay."""

    removed: list[str] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _selection(command: str, build_dir: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, directory) whose entries `command` removes; the build dir only its tmp*.

    As kas 5.5: clean removes BUILD_DIR/tmp*; cleansstate also empties
    SSTATE_DIR (default BUILD_DIR/sstate-cache); cleanall also DL_DIR
    (default BUILD_DIR/downloads). The directories themselves stay.
    """
    if command not in COMMANDS:
        raise UsageError(
            f"{command!r} is not a clean command", fix=f"use one of: {', '.join(COMMANDS)}"
        )
    build = os.path.abspath(build_dir)
    dirs = [("KAS_BUILD_DIR", build)]
    if command in ("cleansstate", "cleanall"):
        dirs.append(
            ("SSTATE_DIR", os.path.abspath(env.get("SSTATE_DIR") or f"{build}/sstate-cache"))
        )
    if command == "cleanall":
        dirs.append(("DL_DIR", os.path.abspath(env.get("DL_DIR") or f"{build}/downloads")))
    return dirs


def targets(command: str, build_dir: str, env: Mapping[str, str]) -> list[str]:
    """The top-level paths `command` removes, sorted, with their directories resolved.

    Resolved (realpath) so that each path names what is really removed and
    can be compared with the mount table; entries themselves are never
    resolved (a tmp* symlink is a target, its target is not). A path inside
    another target (say SSTATE_DIR under build/tmp) is dropped: removing the
    outer one removes it.
    """
    found: set[str] = set()
    for var, directory in _selection(command, build_dir, env):
        real = os.path.realpath(directory)
        try:
            names = os.listdir(real)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise HostError(f"cannot list {real}: {exc.strerror}", where=var) from None
        keep_all = var != "KAS_BUILD_DIR"
        found.update(f"{real.rstrip('/')}/{n}" for n in names if keep_all or n.startswith("tmp"))
    return sorted(p for p in found if not _under_any(p, found))


def _under_any(path: str, paths: set[str]) -> bool:
    parent = os.path.dirname(path)
    while parent != os.path.dirname(parent):
        if parent in paths:
            return True
        parent = os.path.dirname(parent)
    return False


def _refuse(
    var: str, path: str, work_dir: str | None, home: str | None, others: dict[str, str]
) -> None:
    real = os.path.realpath(path)
    dangers = [("/", "the root directory"), (home, "your home directory ($HOME)")]
    dangers += [(work_dir, "the work directory (KAS_WORK_DIR)")]
    dangers += [(p, f"the directory {v} names") for v, p in others.items()]
    for danger, what in dangers:
        if not danger:
            continue
        precious = os.path.realpath(danger)
        if real == precious or precious.startswith(f"{real.rstrip('/')}/"):
            how = "is" if real == precious else "contains"
            raise UsageError(
                f"refusing to clean {path}: it resolves to {real}, which {how} {what}",
                where=var,
                fix=_FIXES.get(var),
            )


def check_build_dir(build_dir: str, work_dir: str | None, home: str | None) -> None:
    """Refuse a build dir that resolves to /, $HOME or the work dir (UsageError, exit 2).

    With root over every sub-id, a wrong KAS_BUILD_DIR (empty, `~`, `.`)
    would have clean remove the tmp* entries of the wrong tree; the check
    resolves symlinks, so a link to one of those is refused as well. A
    directory that contains $HOME or the work dir is refused too: its tmp*
    entries may be them.
    """
    _refuse("KAS_BUILD_DIR", build_dir, work_dir, home, {})


def check_dirs(
    command: str, build_dir: str, env: Mapping[str, str], work_dir: str | None, home: str | None
) -> None:
    """check_build_dir, and the same for SSTATE_DIR / DL_DIR, which must not hold the build dir.

    Their CONTENTS are emptied, so pointing one at /, $HOME, the work dir or
    the build dir (or at a directory holding one of them) would empty it.
    """
    check_build_dir(build_dir, work_dir, home)
    for var, directory in _selection(command, build_dir, env)[1:]:
        _refuse(var, directory, work_dir, home, {"KAS_BUILD_DIR": build_dir})


def mount_points(mountinfo: str = MOUNTINFO) -> frozenset[str]:
    """Every mount point this process sees (field 5 of mountinfo, octal escapes decoded).

    Read once per run: a bind mount of a directory on the same filesystem
    keeps its st_dev, and only the mount table tells it apart. Without the
    table the walk cannot be made safe, so it is an error, not a warning.
    """
    try:
        with open(mountinfo, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise HostError(
            f"cannot read {mountinfo} ({exc.strerror}): bind mounts under the tree "
            "could not be told apart, refusing to clean",
            fix="run it where /proc is mounted",
        ) from None
    points = set()
    for line in data.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4:
            raw = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            points.add(os.fsdecode(raw))
    return frozenset(points)


@dataclass
class _Frame:
    """One open directory of the walk: its fd, the entries still to remove, and whether all went."""

    fd: int
    name: str
    path: str
    entries: Iterator[os.DirEntry[str]]
    ok: bool = True


class _Remover:
    """Post-order, fd-relative removal without recursion (a hostile tree may be deep).

    On a disk, unlink and rmdir mostly wait for the filesystem (journal,
    discard), so a real run first hands the target's subtrees to `workers`
    threads, then a sequential pass removes what is left above them (and
    walks a failed subtree again, so every path left is reported once).
    """

    def __init__(self, dry_run: bool, mounts: frozenset[str], workers: int = 1):
        self.dry_run = dry_run
        self.mounts = mounts
        self.left: list[tuple[str, str]] = []
        self.dev = 0
        self.workers = 1 if dry_run else workers

    def remove(self, path: str) -> bool:
        """Remove one top-level target; True when it is gone (or would be, in a dry run)."""
        parent, name = os.path.split(path)
        try:
            parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            return self._leave(path, exc)
        try:
            self.dev = os.fstat(parent_fd).st_dev
            try:
                is_dir = stat.S_ISDIR(
                    os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
                )
            except FileNotFoundError:
                return True
            except OSError as exc:
                return self._leave(path, exc)
            if not is_dir:
                return self._unlink(parent_fd, name, path)
            if self.workers > 1:
                self._in_parallel(parent_fd, name, path)
            return self._tree(parent_fd, name, path)
        finally:
            os.close(parent_fd)

    def _in_parallel(self, parent_fd: int, name: str, path: str) -> None:
        """Remove the target's subtrees on worker threads; failures are left for the final pass."""
        opened: list[int] = []
        try:
            subtrees = self._split(parent_fd, name, path, opened)
            if subtrees:
                with ThreadPoolExecutor(self.workers) as pool:
                    for _ in pool.map(lambda t: self._tree(*t), subtrees):
                        pass
        finally:
            for fd in opened:
                os.close(fd)

    def _split(
        self, parent_fd: int, name: str, path: str, opened: list[int]
    ) -> list[tuple[int, str, str]]:
        """Directories below the target, breadth first, until there is work for every thread.

        Opened like the walk opens them (no symlinks, no mount points, same
        filesystem); anything odd is simply not handed out, and the final
        pass meets and reports it.
        """
        level = [(parent_fd, name, path)]
        for _depth in range(SPLIT_DEPTH):
            below = []
            for dir_fd, entry_name, entry_path in level:
                if entry_path in self.mounts:
                    continue
                try:
                    fd = os.open(entry_name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError:
                    continue
                opened.append(fd)
                try:
                    if os.fstat(fd).st_dev != self.dev:
                        continue
                    below += [
                        (fd, e.name, f"{entry_path}/{e.name}")
                        for e in os.scandir(fd)
                        if e.is_dir(follow_symlinks=False)
                    ]
                except OSError:
                    continue
            if not below:
                break
            level = below
            if len(level) >= 4 * self.workers:
                break
        return level

    def _tree(self, parent_fd: int, name: str, path: str) -> bool:
        top = self._open(parent_fd, name, path)
        if not isinstance(top, _Frame):
            return top
        stack = [top]
        try:
            while True:
                frame = stack[-1]
                entry = next(frame.entries, None)
                if entry is not None:
                    child_path = f"{frame.path}/{entry.name}"
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)  # d_type: no stat for files
                    except OSError as exc:
                        frame.ok = self._leave(child_path, exc)
                        continue
                    child = (
                        self._open(frame.fd, entry.name, child_path)
                        if is_dir
                        else self._unlink(frame.fd, entry.name, child_path)
                    )
                    if isinstance(child, _Frame):
                        stack.append(child)
                    elif not child:
                        frame.ok = False
                    continue
                stack.pop()
                os.close(frame.fd)
                done = frame.ok and self._rmdir(stack[-1].fd if stack else parent_fd, frame)
                if not stack:
                    return done
                if not done:
                    stack[-1].ok = False
        finally:
            for frame in stack:
                os.close(frame.fd)

    def _open(self, parent_fd: int, name: str, path: str) -> _Frame | bool:
        """Open a directory to empty it, unless it is a mount point; False when it must stay."""
        if path in self.mounts:
            return self._leave(path, MOUNT_POINT)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            return True
        except OSError as exc:  # ELOOP/ENOTDIR: swapped for a link or a file meanwhile
            return self._leave(path, exc)
        try:
            if os.fstat(fd).st_dev != self.dev:
                os.close(fd)
                return self._leave(path, MOUNT_POINT)
            entries = sorted(os.scandir(fd), key=lambda e: e.name)
        except OSError as exc:
            os.close(fd)
            return self._leave(path, exc)
        return _Frame(fd, name, path, iter(entries))

    def _unlink(self, parent_fd: int, name: str, path: str) -> bool:
        if self.dry_run:
            return True
        try:
            os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return self._leave(path, exc)
        return True

    def _rmdir(self, parent_fd: int, frame: _Frame) -> bool:
        if self.dry_run:
            return True
        try:
            os.rmdir(frame.name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return self._leave(frame.path, exc)
        return True

    def _leave(self, path: str, why: OSError | str) -> bool:
        self.left.append((path, why if isinstance(why, str) else why.strerror or str(why)))
        return False


def _allow_open_files() -> None:
    """Raise the soft limit on open files to the hard one.

    The walk holds two descriptors per level (the directory and its listing),
    so a tree some 500 levels deep exhausts the common soft limit of 1024,
    which is kept low only for programs that use select(); the hard limit is
    there to be asked for.
    """
    import resource  # only a clean needs it

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def clean(
    command: str,
    build_dir: str,
    env: Mapping[str, str],
    *,
    work_dir: str | None,
    home: str | None,
    dry_run: bool = False,
    mounts: frozenset[str] | None = None,
    on_removed: Callable[[str], None] | None = None,
) -> Report:
    """Check the directories, then remove (or, dry, walk) every target, going on past errors.

    I/O errors of the removal end up in the report; only a refusal (UsageError)
    or an unreadable mount table or directory to list (HostError) raise.
    `on_removed` is called with each top-level path once it is gone, so a
    long clean shows progress. `mounts` defaults to the mount table.
    """
    check_dirs(command, build_dir, env, work_dir, home)
    _allow_open_files()
    remover = _Remover(dry_run, mount_points() if mounts is None else mounts, WORKERS)
    report = Report()
    for path in targets(command, build_dir, env):
        if remover.remove(path):
            report.removed.append(path)
            if on_removed:
                on_removed(path)
        else:
            report.kept.append(path)
    # threads finish in any order, and the final pass meets a failed subtree again
    report.left.extend(sorted(set(remover.left)))
    return report


def preview(
    command: str,
    build_dir: str,
    env: Mapping[str, str],
    *,
    work_dir: str | None,
    home: str | None,
    mounts: frozenset[str] | None = None,
) -> Report:
    """A dry run that never descends: for the host side, which cannot read sub-id-owned dirs.

    It agrees with `clean(dry_run=True)` except where a directory is on
    another filesystem without being a mount point (a btrfs subvolume).
    """
    check_dirs(command, build_dir, env, work_dir, home)
    mounts = mount_points() if mounts is None else mounts
    report = Report()
    for path in targets(command, build_dir, env):
        below = sorted(m for m in mounts if m == path or m.startswith(f"{path}/"))
        report.left += [(m, MOUNT_POINT) for m in below]
        (report.kept if below else report.removed).append(path)
    return report


def namespaced_argv(
    python: str,
    command: str,
    build_dir: str,
    *,
    dry_run: bool = False,
    work_dir: str | None = None,
    home: str | None = None,
) -> list[str]:
    """The one command for the whole job: this module as root of ONE user namespace.

    --map-auto maps the user's /etc/subuid and /etc/subgid ranges, and
    --map-root-user makes the user that namespace's root, so every file the
    build left (owned by the user or a sub-id) is removable by it. -I keeps
    the environment's PYTHONPATH out (the module must be installed).
    """
    argv = ["unshare", "--map-auto", "--map-root-user", python, "-I", "-m", "kasctl.inside.clean"]
    argv += ["--dry-run"] if dry_run else []
    argv += [command, build_dir]
    argv += ["--work-dir", work_dir] if work_dir else []
    argv += ["--home", home] if home else []
    return argv


def main(argv: list[str] | None = None) -> int:
    """`python3 -I -m kasctl.inside.clean [--dry-run] COMMAND BUILD_DIR [--work-dir W] [--home H]`.

    Prints each removed top-level path on stdout (with --dry-run, each that
    would be removed: the same list); what is left goes to stderr. Exit 0;
    1 when anything is left; 2 when refused (a dangerous directory, bad
    usage); 3 when the mount table or a directory to list cannot be read.
    """
    import argparse  # the host imports this module for its checks, not for this CLI

    parser = argparse.ArgumentParser(
        prog="python3 -I -m kasctl.inside.clean",
        description="Remove what kas clean/cleansstate/cleanall remove, in one process, safely. "
        "Run it inside `unshare --map-auto --map-root-user` for sub-id-owned trees.",
    )
    parser.add_argument("--dry-run", action="store_true", help="walk and list, remove nothing")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("build_dir", metavar="BUILD_DIR")
    parser.add_argument("--work-dir", default=os.environ.get("KAS_WORK_DIR") or os.getcwd())
    parser.add_argument("--home", default=os.environ.get("HOME"))
    args = parser.parse_args(argv)
    try:
        report = clean(
            args.command,
            args.build_dir,
            os.environ,
            work_dir=args.work_dir,
            home=args.home,
            dry_run=args.dry_run,
            on_removed=lambda path: print(path, flush=True),
        )
    except KasctlError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    if not report.left:
        return 0
    verb = "would be left" if args.dry_run else "left"
    for path, why in report.left:
        print(f"kasctl: {verb}: {path}: {why}", file=sys.stderr)
    print(
        f"kasctl: error: {len(report.left)} path(s) {verb}, so these stay: "
        + ", ".join(report.kept),
        file=sys.stderr,
    )
    print(
        "kasctl: fix: unmount what is mounted there (umount PATH) or clear what blocks "
        "removal (e.g. chattr -i), then clean again",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
