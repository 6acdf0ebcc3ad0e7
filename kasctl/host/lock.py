"""One kasctl run per build dir: an exclusive lock, waited for or refused (--no-wait).

The lock is a file beside the build dir (`.BUILDNAME.kasctl-lock` in its
parent, so that taking it creates nothing inside the build dir, whose owner
the container decides), held with flock(2) for as long as the run lasts:
the kernel drops it when kasctl ends, however it ends, so a killed kasctl
never leaves the build dir locked. Its container may outlive it; the next
run removes such a leftover before it starts (kasctl.engine.orphans). flock
holds across the mount namespaces of one kernel: two CI jobs in containers
that share the build dir's volume exclude each other too. It does not hold
across machines (NFS): bitbake's own lock (bitbake.lock in the build dir)
still refuses a second bitbake there.

The file says who holds it (pid, host, command, start), for the message the
next run prints while it waits. It exists only while held: the holder
removes it before letting go, and a waiter that wakes holding a file that
is no longer at that path (removed, or replaced by a newer one) takes the
lock again from the path, so no two runs ever hold it at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import time
from pathlib import Path

from kasctl.errors import BusyError, HostError


def lock_path(build_dir: Path) -> Path:
    return build_dir.parent / f".{build_dir.name}.kasctl-lock"


class BuildDirLock:
    """The held lock of one build dir; release() (or the process's end) lets it go."""

    def __init__(self, build_dir: Path, fd: int) -> None:
        self.build_dir = build_dir
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # still held: no one else has the path
                os.unlink(lock_path(self.build_dir))
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return text


def acquire(build_dir: Path, command: str, *, wait: bool = True) -> BuildDirLock:
    """Take the build dir's lock; wait for a holder (saying who) or, without wait, refuse."""
    path = lock_path(build_dir)
    said = False
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise HostError(
                f"cannot create the lock file {path} for the build dir: {exc.strerror}",
                fix=f"make {path.parent} writable for this user",
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = _holder(fd) or "another kasctl run"
                if not wait:
                    raise BusyError(
                        f"build dir {build_dir} is in use by {holder}",
                        fix="wait for that run to end, give this run a build dir of its own "
                        "(KAS_BUILD_DIR or KAS_WORK_DIR), or leave out --no-wait to wait",
                    ) from None
                if not said:
                    print(
                        f"kasctl: build dir {build_dir} is in use by {holder}; "
                        "waiting for it to end (--no-wait: fail instead)",
                        file=sys.stderr,
                        flush=True,
                    )
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not _still_at(fd, path):  # its holder removed it while we waited
                os.close(fd)
                continue
            who = (
                f"kasctl `{command}` (pid {os.getpid()} on {socket.gethostname()}, "
                f"since {time.strftime('%Y-%m-%d %H:%M:%S')})\n"
            )
            os.ftruncate(fd, 0)
            os.pwrite(fd, who.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return BuildDirLock(build_dir, fd)


def _still_at(fd: int, path: Path) -> bool:
    """The locked file is the one at path (not removed, not replaced)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
