"""No build container outlives the kasctl that started it.

Three layers, because CI runners end jobs in three ways:

* SIGINT/SIGTERM (a cancelled job, Ctrl-C): kasctl itself stops the container
  (engines.run).
* SIGKILL, or the OOM killer: kasctl gets no say. A guard process, forked
  before the container starts and put in its own session (so a kill of the
  job's process group spares it), holds the read end of a pipe whose write
  end only kasctl has. kasctl writes DONE before it returns; if the pipe
  closes without it, kasctl died, and the guard stops the container.
* Guard killed too, or the machine went down: the container is labelled
  with the work dir, the host and kasctl's pid. The next run in the same
  work dir finds containers whose kasctl no longer lives on this host,
  says so, and removes them. Containers from other hosts (a docker daemon
  shared between CI job containers) are reported, never touched.

The rule for "left over" is `stale()`, a pure function; the engine commands
come from `engines`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DONE = b"done"
#: How long the guard keeps trying to stop a container whose engine client lives on.
GUARD_PATIENCE = 120.0


@dataclass(frozen=True)
class Labelled:
    """A container carrying kasctl's labels, as `engine ps` lists it."""

    name: str
    workdir: str
    host: str
    pid: int | None


def stale(
    found: Sequence[Labelled],
    workdir: str,
    hostname: str,
    alive: Callable[[int], bool],
) -> tuple[list[Labelled], list[Labelled]]:
    """(left over: remove them, still running elsewhere: only report them) for this work dir.

    A container counts as left over only when it was started on this host
    and its kasctl pid is gone: a live kasctl (a second `kasctl shell` in the
    same work dir) keeps its container.
    """
    mine = [c for c in found if c.workdir == workdir]
    leftover = [c for c in mine if c.host == hostname and (c.pid is None or not alive(c.pid))]
    foreign = [c for c in mine if c.host != hostname]
    return leftover, foreign


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's reaper may be slow or absent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to judge
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != b"Z"


class Guard:
    """The forked watcher for one container; see the module docstring."""

    def __init__(self, write_fd: int, pid: int) -> None:
        self._fd = write_fd
        self.pid = pid

    @classmethod
    def start(cls, stop_commands: Sequence[Sequence[str]], client_pid: int) -> Guard:
        """Fork the guard for a container whose engine client is `client_pid`."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guard: never returns into kasctl's code
            status = 0
            try:
                os.close(write_fd)
                _guard(read_fd, stop_commands, client_pid)
            except BaseException:
                status = 1
            os._exit(status)
        os.close(read_fd)
        return cls(write_fd, pid)

    def release(self) -> None:
        """kasctl is ending normally: tell the guard, and reap it."""
        try:
            os.write(self._fd, DONE)
        finally:
            os.close(self._fd)
        os.waitpid(self.pid, 0)


def _guard(read_fd: int, stop_commands: Sequence[Sequence[str]], client_pid: int) -> None:
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, read_fd)
    os.closerange(read_fd + 1, 1 << 16)
    said = b""
    while chunk := os.read(read_fd, 16):
        said += chunk
    if said == DONE:
        return
    # kasctl is gone without a word. Its engine client lives on (reparented)
    # for as long as the container runs, and may even still be creating it:
    # keep stopping until the client has exited.
    deadline = time.monotonic() + GUARD_PATIENCE
    while time.monotonic() < deadline:
        for argv in stop_commands:
            subprocess.run(list(argv), stdin=subprocess.DEVNULL, check=False, timeout=60)
        if not pid_alive(client_pid):
            return
        time.sleep(1)
