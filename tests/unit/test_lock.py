"""One kasctl run per build dir: waited for, refused with --no-wait, never two at once, no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kasctl.errors import EXIT_BUSY, BusyError, HostError
from kasctl.host import lock

ROOT = Path(__file__).resolve().parent.parent.parent

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from kasctl.host import lock
    held = lock.acquire(Path(sys.argv[1]), "build")
    print("held", flush=True)
    sys.stdin.readline()  # hold until told
    held.release()
    """
)


def _holder(build: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(build)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_no_wait_refuses_a_held_build_dir_naming_the_holder(tmp_path: Path) -> None:
    build = tmp_path / "work" / "build"
    holder = _holder(build)
    try:
        with pytest.raises(BusyError) as info:
            lock.acquire(build, "build", wait=False)
    finally:
        holder.communicate("\n")
    assert info.value.exit_code == EXIT_BUSY == 4
    assert str(build) in info.value.message
    assert f"pid {holder.pid}" in info.value.message, "says which run holds it"
    assert "kasctl `build`" in info.value.message
    assert "--no-wait" in (info.value.fix or "")


def test_a_second_run_waits_says_so_and_starts_when_the_first_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = tmp_path / "build"
    holder = _holder(build)
    released_at: list[float] = []

    def release_later() -> None:
        time.sleep(0.5)
        released_at.append(time.monotonic())
        holder.communicate("\n")

    import threading

    t = threading.Thread(target=release_later)
    t.start()
    held = lock.acquire(build, "shell")
    got_at = time.monotonic()
    t.join()
    held.release()
    assert released_at and got_at >= released_at[0], "it waited for the holder"
    err = capsys.readouterr().err
    assert f"build dir {build} is in use by kasctl `build` (pid {holder.pid}" in err
    assert "waiting" in err and "--no-wait" in err


def test_a_killed_holder_leaves_the_build_dir_free(tmp_path: Path) -> None:
    build = tmp_path / "build"
    holder = _holder(build)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    held = lock.acquire(build, "build", wait=False)  # would raise BusyError if still held
    held.release()


def test_a_released_lock_leaves_no_file_and_nothing_in_the_build_dir(tmp_path: Path) -> None:
    build = tmp_path / "build"
    held = lock.acquire(build, "build")
    assert lock.lock_path(build).parent == tmp_path, "the lock is beside the build dir"
    assert not build.exists(), "taking the lock creates nothing inside the build dir"
    held.release()
    held.release()  # twice is harmless
    assert list(tmp_path.iterdir()) == []


def test_many_runs_at_once_never_overlap(tmp_path: Path) -> None:
    """Waiters that wake on a removed lock file take it again: never two holders at once."""
    build = tmp_path / "build"
    journal = tmp_path / "journal"
    worker = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from kasctl.host import lock
        build, journal = Path(sys.argv[1]), sys.argv[2]
        for _ in range(5):
            held = lock.acquire(build, "build")
            with open(journal, "a") as j:
                j.write(f"in {os.getpid()}\\n")
            time.sleep(0.003)
            with open(journal, "a") as j:
                j.write(f"out {os.getpid()}\\n")
            held.release()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, str(build), str(journal)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(6)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = journal.read_text().splitlines()
    assert len(lines) == 6 * 5 * 2
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("in ") and leave == "out " + enter[3:], lines
    assert not lock.lock_path(build).exists()


def test_an_unwritable_parent_is_a_host_error_naming_it(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        with pytest.raises(HostError) as info:
            lock.acquire(parent / "build", "build")
    finally:
        parent.chmod(0o755)
    assert str(parent) in info.value.message + (info.value.fix or "")
