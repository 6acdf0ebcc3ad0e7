"""After a failed build: the failed bitbake tasks, their logs on the host, and the cause.

Only the build dir's own logs are read, never the terminal output: bitbake's
console log of this run (BUILDDIR/tmp/log/cooker/<MACHINE>/<stamp>.log)
names each failed task and its log file, as container paths; the mounts
of the run translate those to host paths. The tail of each task's log (or,
where there is none, the task's lines in the console log) is matched
against FAILURES, the rootless failures kasctl knows the cause and fix of.

Nothing here may fail a run that already failed: a log that cannot be read
or decoded is skipped, and report() never raises.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kasctl.decide.plan import Mount
from kasctl.layout import through

#: How much of a task's log is read: its last lines, where the error is.
TAIL_LINES = 400
#: The most bytes read from the end of a task's log to find those lines.
TAIL_BYTES = 256 * 1024
#: The most bytes of a console log read (a long build's log stays far below).
CONSOLE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Failure:
    """A failure kasctl recognises in a log: what it looks like, why, and what to do.

    `cause` may name the failed task's recipe file as {recipe}.
    """

    key: str
    pattern: re.Pattern[str]
    cause: str
    fix: str

    def render(self, recipe: str) -> str:
        """The cause, naming the recipe."""
        return self.cause.replace("{recipe}", recipe)


FAILURES: tuple[Failure, ...] = (
    Failure(
        "userns-refused",
        re.compile(r"new[ug]idmap: write to [ug]id_map failed: Operation not permitted"),
        "newuidmap could not write the map of Isar's nested user namespace: the container "
        "lacks CAP_SYS_ADMIN in its own namespace, runs with no-new-privileges (newuidmap "
        "then loses its setuid bit), or its seccomp profile refuses unshare",
        "run the build with kasctl's plan unchanged: no --security-opt=no-new-privileges or "
        "--cap-drop in --runtime-args or the CI runner's container settings; `kasctl doctor` "
        "checks newuidmap, and on docker the seccomp profile must be podman's",
    ),
    Failure(
        "subid-outside-map",
        re.compile(r"write to [ug]id_map failed: Invalid argument"),
        "the builder's /etc/subuid or /etc/subgid range in the container overlaps its own "
        "id or reaches beyond the container's id map",
        "run `kasctl doctor`: your host /etc/subuid and /etc/subgid lines probably overlap "
        "(one line per user, ranges disjoint); it names a free range",
    ),
    Failure(
        "proc-masked",
        re.compile(r"Mount too revealing|mount /proc failed: Operation not permitted"),
        "a fresh /proc mount was refused: the container's /proc has masked paths",
        "the container needs --security-opt=unmask=ALL (podman) or systempaths=unconfined "
        "(docker), which kasctl grants for isar-rootless: set build_system: isar-rootless "
        "(or pass --isar-rootless) and do not override that flag in --runtime-args",
    ),
    Failure(
        "pivot-root-refused",
        re.compile(r"bwrap: pivot_root: Operation not permitted"),
        "the container's seccomp profile refuses pivot_root, which bubblewrap needs "
        "(Docker's default profile does, whatever the capabilities)",
        "let kasctl pass podman's seccomp profile: install containers-common (Debian: "
        "golang-github-containers-common); never use seccomp=unconfined",
    ),
    Failure(
        "bwrap-symlink-destination",
        re.compile(r"Can't mount on symlink destination"),
        "bubblewrap >= 0.12 refuses to bind-mount onto the rootfs's merged-/usr symlinks "
        "(/bin, /lib, ...), as Isar's rootfs_cmd does",
        "use kasctl's image (its bwrap wrapper handles exactly this), or an Isar with this fixed",
    ),
    Failure(
        "no-subid-range",
        re.compile(
            r"No sub-id range specified"
            r"|no entry in /etc/sub[ug]id for"
            r"|/etc/sub[ug]id does not contain an entry"
        ),
        "the builder in the container has no sub-id range: your host user has no "
        "/etc/subuid and /etc/subgid line, or the image is not kasctl's (whose entrypoint "
        "writes them)",
        "add a line to both files, e.g. $USER:100000:65536 (`kasctl doctor` names a free "
        "range), then run `podman system migrate`",
    ),
    Failure(
        "sudo-blocked",
        # container/sudo-blocked, installed as the image's sudo, prints this line.
        re.compile(r"sudo is blocked: this is an isar-rootless build"),
        "{recipe} called sudo, which isar-rootless blocks: the recipe is not rootless-ready",
        "make it use Isar's run_privileged/rootless helpers instead of sudo, or build "
        "with --isar-privileged",
    ),
    Failure(
        "sbuild-sethostname",
        re.compile(
            r"hostname: you must be root to change the host name[\s\S]*?"
            r"Error creating chroot session"
        ),
        "sbuild's unshare backend could not set the chroot's host name: the container's "
        "seccomp profile refuses sethostname (podman's allows it only with CAP_SYS_ADMIN)",
        "run the build through kasctl's own plan for this engine; do not replace its "
        "seccomp profile or capabilities in --runtime-args",
    ),
    Failure(
        "sbuild-no-ip",
        re.compile(r"""Can't exec "ip": No such file or directory"""),
        "sbuild-usernsexec needs `ip`, and the image has no iproute2",
        "use kasctl's image, or add iproute2 to yours",
    ),
)


@dataclass(frozen=True)
class FailedTask:
    """One failed bitbake task, as the console log of the run names it."""

    #: bitbake's own name of the task: "mc:foo:/work/isar/.../x.bb:do_fetch".
    target: str
    #: The recipe file, a container path (no mc:/virtual: prefix).
    recipe_file: str
    #: That file on the host, or None when no mount holds it.
    host_recipe_file: str | None
    #: The prefix bitbake put before the file ("mc:foo", "virtual:native"), or "".
    variant: str
    #: The task: "do_rootfs_install".
    task: str
    #: The recipe's work dir name (tmp/work/<distro-arch>/<this>/<ver>), when known.
    recipe: str | None
    #: The task's log as bitbake named it (a container path), or None.
    log: str | None
    #: That log on the host, or None when there is none or no mount holds it.
    host_log: str | None
    #: The known failure its log shows, or None.
    failure: Failure | None


@dataclass(frozen=True)
class Summary:
    """What the console log of the failed run says."""

    #: The console log, on the host.
    console_log: Path
    tasks: tuple[FailedTask, ...]
    #: A known failure the console log shows when no task failed (e.g. at parse time).
    failure: Failure | None = None
    #: The console log's text as read (its last CONSOLE_BYTES).
    text: str = ""


def to_host(path: str, mounts: Sequence[Mount]) -> str | None:
    """A container path as kasctl sees it, through the run's mounts, or None."""
    return through(path, ((m.target, m.source) for m in mounts))


def console_log(build_dir: Path, since: float) -> Path | None:
    """The newest console log bitbake wrote at or after `since`, or None.

    Symlinks (console-latest.log) are skipped: they point at one of the logs.
    """
    newest: tuple[float, str] | None = None
    try:
        machines = list(os.scandir(build_dir / "tmp" / "log" / "cooker"))
    except OSError:
        return None
    for machine in machines:
        try:
            if not machine.is_dir(follow_symlinks=False):
                continue
            entries = list(os.scandir(machine.path))
        except OSError:
            continue
        for entry in entries:
            try:
                if not entry.name.endswith(".log") or not entry.is_file(follow_symlinks=False):
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            if mtime >= since and (newest is None or (mtime, entry.path) > newest):
                newest = (mtime, entry.path)
    return Path(newest[1]) if newest else None


def _read(path: str | Path, limit: int) -> str | None:
    """The last `limit` bytes of a regular file, decoded leniently; None when unreadable."""
    try:
        # O_NONBLOCK: a fifo where a log should be must not hang a failed build's report.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        start = max(0, info.st_size - limit)
        os.lseek(fd, start, os.SEEK_SET)
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        # Leniently: one stray byte of a tool's output must not hide the error after it.
        text = b"".join(chunks).decode("utf-8", errors="replace")
        if start > 0:
            text = text.partition("\n")[2]  # the first line is cut
        return text
    except (OSError, UnicodeError, ValueError):
        return None
    finally:
        os.close(fd)


def tail(path: str | Path, lines: int = TAIL_LINES) -> str | None:
    """The last lines of a log, or None when it cannot be read as text."""
    text = _read(path, TAIL_BYTES)
    if text is None:
        return None
    return "\n".join(text.splitlines()[-lines:])


def match(text: str) -> Failure | None:
    """The known failure that shows first in `text` (the first error is usually the cause)."""
    found: tuple[int, int, Failure] | None = None
    for order, failure in enumerate(FAILURES):
        hit = failure.pattern.search(text)
        if hit and (found is None or (hit.start(), order) < found[:2]):
            found = (hit.start(), order, failure)
    return found[2] if found else None


_TASK_FAILED = re.compile(r"ERROR: Task \((?P<target>.+:(?P<task>do_[\w-]+))\) failed with exit")
_LOGFILE = re.compile(r"ERROR: Logfile of failure stored in: (?P<path>\S+)")
_EXECUTION = re.compile(
    r"ERROR: \S+ (?P<task>do_[\w-]+): Execution of '(?P<path>[^']+)' failed with exit code"
)
#: A task log's (or run file's) name: log.do_rootfs_install.1234, run.do_fetch.99.
_TASK_FILE = re.compile(r"^(?:log|run)\.(?P<task>do_[\w-]+?)(?:\.\d+)?$")


def _split_target(target: str) -> tuple[str, str]:
    """bitbake's "mc:foo:virtual:native:/p/x.bb" as ("mc:foo:virtual:native", "/p/x.bb")."""
    slash = target.find("/")
    if slash > 0 and target[slash - 1] == ":":
        return target[: slash - 1], target[slash:]
    if slash == 0:
        return "", target
    variant, _, file = target.rpartition(":")
    return variant, file


def _task_of(path: str) -> str | None:
    hit = _TASK_FILE.match(posixpath.basename(path))
    return hit.group("task") if hit else None


def _recipe_dir(path: str) -> str | None:
    """tmp/work/<distro-arch>/<recipe>/<ver>/temp/<file>: that <recipe>."""
    parts = posixpath.normpath(path).split("/")
    if len(parts) >= 5 and parts[-2] == "temp":
        return parts[-4]
    return None


def _stem(recipe_file: str) -> str:
    """x_1.0.bb -> x: the recipe name bitbake takes from the file name."""
    name = posixpath.basename(recipe_file)
    name = name[:-3] if name.endswith(".bb") else name
    return name.partition("_")[0]


def _belongs(path: str, stem: str) -> bool:
    name = _recipe_dir(path) or ""
    return name == stem or name.startswith(f"{stem}-")


def _pick(pending: list[str], task: str, recipe_file: str) -> str | None:
    """Take the path of `pending` that belongs to this task (interleaved failures)."""
    candidates = [p for p in pending if _task_of(p) == task]
    if not candidates:
        return None
    stem = _stem(recipe_file)
    # an image's work dir carries the machine: isar-image-base.bb -> isar-image-base-qemuamd64
    own = [p for p in candidates if _belongs(p, stem)]
    chosen = (own or candidates)[-1]
    pending.remove(chosen)
    return chosen


def _parse(console: str, mounts: Sequence[Mount]) -> list[FailedTask]:
    """The failed tasks in a console log, each once, in order of appearance."""
    tasks: list[FailedTask] = []
    seen: set[str] = set()
    logs: list[str] = []
    runs: list[str] = []
    block: list[str] = []
    for line in console.splitlines():
        block.append(line)
        if line.startswith("|"):
            continue  # a task's own log, as bitbake quotes it
        if hit := _LOGFILE.search(line):
            logs.append(hit.group("path"))
            continue
        if hit := _EXECUTION.search(line):
            runs.append(hit.group("path"))
            continue
        hit = _TASK_FAILED.search(line)
        if not hit:
            continue
        target, task = hit.group("target"), hit.group("task")
        lines, block = "\n".join(block), []  # this task's console lines
        variant, recipe_file = _split_target(target[: -len(task) - 1])
        log = _pick(logs, task, recipe_file)
        run = _pick(runs, task, recipe_file)
        if target in seen:
            continue
        seen.add(target)
        host_log = to_host(log, mounts) if log else None
        text = tail(host_log) if host_log else None
        failure = (match(text) if text is not None else None) or match(lines)
        tasks.append(
            FailedTask(
                target=target,
                recipe_file=recipe_file,
                host_recipe_file=to_host(recipe_file, mounts),
                variant=variant,
                task=task,
                recipe=_recipe_dir(log or run or ""),
                log=log,
                host_log=host_log,
                failure=failure,
            )
        )
    return tasks


def analyse(build_dir: Path, mounts: Sequence[Mount], since: float) -> Summary | None:
    """What the console log of the run that started at `since` says; None without one."""
    path = console_log(build_dir, since)
    if path is None:
        return None
    text = _read(path, CONSOLE_BYTES)
    if text is None:
        return None
    tasks = tuple(_parse(text, mounts))
    return Summary(path, tasks, None if tasks else match(text), text)


def _name(task: FailedTask) -> str:
    prefix = f"{task.variant}:" if task.variant else ""
    return f"{prefix}{posixpath.basename(task.recipe_file)}:{task.task}"


def render(summary: Summary) -> list[str]:
    """The lines kasctl prints for a summary, each starting with "kasctl:"."""
    lines: list[str] = []
    count = len(summary.tasks)
    if not count:
        lines.append(f"kasctl: the build failed before any task failed; see {summary.console_log}")
        if summary.failure:
            lines.append(f"kasctl:   cause: {summary.failure.render('a recipe')}")
            lines.append(f"kasctl:   fix: {summary.failure.fix}")
        return lines
    lines.append(f"kasctl: the build failed in {count} task{'s' if count > 1 else ''}:")
    for task in summary.tasks:
        lines.append(f"kasctl:   {_name(task)}")
        if task.host_log:
            lines.append(f"kasctl:     log: {task.host_log}")
        elif task.log:
            lines.append(f"kasctl:     log: {task.log} (in the container)")
        else:
            lines.append(f"kasctl:     log: none named; see {summary.console_log}")
        if task.failure:
            recipe = task.host_recipe_file or f"{task.recipe_file} (in the container)"
            lines.append(f"kasctl:     cause: {task.failure.render(recipe)}")
            lines.append(f"kasctl:     fix: {task.failure.fix}")
    return lines


def summarize(build_dir: Path, mounts: Sequence[Mount], since: float) -> list[str]:
    """The lines that say why the run that started at `since` failed; [] without its log.

    Only reads files: the build dir's console log and the failed tasks' logs.
    """
    summary = analyse(build_dir, mounts, since)
    return render(summary) if summary else []


def _unreadable() -> None:
    """Say (at debug level) why the logs could not be read, and go on."""
    import logging

    logging.getLogger("kasctl").debug("could not summarize the failed build", exc_info=True)


def analysed(build_dir: Path, mounts: Sequence[Mount], since: float) -> Summary | None:
    """analyse(), but a bug in reading logs never replaces the build's own status: None then."""
    try:
        return analyse(build_dir, mounts, since)
    except Exception:
        _unreadable()
        return None


def report(
    build_dir: Path, mounts: Sequence[Mount], since: float, stream: TextIO | None = None
) -> None:
    """Print summarize()'s lines to stderr; a failure here never hides the build's own."""
    try:
        lines = summarize(build_dir, mounts, since)
    except Exception:  # a bug in reading logs must not replace the build's exit status
        _unreadable()
        return
    out = stream or sys.stderr
    for line in lines:
        print(line, file=out)
    out.flush()
