"""A killed kasctl leaves no container behind, and the work dir stays usable.

Each case starts a real `kasctl build` of the Isar stand-in that pauses
midway (inside the builder's sub-id namespace, a mount active, sub-id-owned
files on disk), sends kasctl one signal, and then checks: the exit status,
that the engine lists no container labelled with the work dir, and that the
next build in the same work dir succeeds (it must first remove what the
interrupted one left).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kasctl import __version__

from .harness import IMAGE_WORKDIR, Project, Runner, make_project, make_runner, remove_tree

pytestmark = pytest.mark.e2e

PAUSE_MARK = Path("build") / IMAGE_WORKDIR / "paused"
DONE_MARK = Path("build/tmp/deploy/isar-standin-paused.done")


def containers(runner: Runner, work: Path) -> list[str]:
    """Names of the containers that carry this work dir's label, running or not."""
    fmt = '{{.Names}}\t{{.Label "io.kasctl.workdir"}}'
    if runner.mode.engine == "podman":
        fmt = '{{.Names}}\t{{index .Labels "io.kasctl.workdir"}}'
    listing = runner.run(
        [runner.mode.engine, "ps", "--all", "--filter", "label=io.kasctl.workdir", "--format", fmt],
        Path("/"),
    )
    assert listing.returncode == 0
    rows = [line.split("\t", 1) for line in listing.stdout.splitlines()]
    return [row[0] for row in rows if len(row) == 2 and row[1] == str(work)]


def set_pause(project: Project, seconds: int) -> None:
    cfg = project.work / project.config
    lines = [line for line in cfg.read_text().splitlines() if "STANDIN_PAUSE" not in line]
    cfg.write_text("\n".join(lines) + "\n" + f'    STANDIN_PAUSE = "{seconds}"\n')


@pytest.fixture
def paused_project(request: pytest.FixtureRequest) -> Iterator[tuple[Runner, Project]]:
    runner = make_runner(request.param)
    project = make_project(runner, extra_conf='STANDIN_PAUSE = "600"')
    yield runner, project
    for name in containers(runner, project.work):  # never leave one to the next test
        runner.run([runner.mode.engine, "rm", "--force", name], Path("/"))
    remove_tree(project.work)


def start_paused(runner: Runner, project: Project, log: Path) -> subprocess.Popen[bytes]:
    proc = runner.spawn(["kasctl", "build", project.config], project.work, log)
    deadline = time.monotonic() + 300
    while not (project.work / PAUSE_MARK).exists():
        if proc.poll() is not None:
            pytest.fail(f"the build ended before pausing:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the build did not reach its pause:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    assert containers(runner, project.work), "a paused build must have its container"
    return proc


def assert_next_build_works(runner: Runner, project: Project) -> None:
    set_pause(project, 0)
    again = runner.kasctl("build", project.config, cwd=project.work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (project.work / DONE_MARK).exists()
    assert not containers(runner, project.work)


ALL_MODES = ["rootless-podman", "rootful-podman", "system-docker", "rootless-docker"]


@pytest.mark.parametrize(
    ("paused_project", "signum"),
    [(m, signal.SIGTERM) for m in ALL_MODES]
    + [(m, signal.SIGINT) for m in ("rootless-podman", "system-docker")],
    indirect=["paused_project"],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else str(v),
)
def test_signal_stops_the_container(
    paused_project: tuple[Runner, Project], signum: signal.Signals, tmp_path: Path
) -> None:
    runner, project = paused_project
    log = tmp_path / "kasctl.log"
    proc = start_paused(runner, project, log)
    os.kill(proc.pid, signum)
    status = proc.wait(timeout=120)
    print(log.read_text()[-4000:])
    assert status == 128 + signum
    assert "kasctl: stopping container kasctl-" in log.read_text()
    assert not containers(runner, project.work), "no container may outlive kasctl"
    assert_next_build_works(runner, project)


@pytest.mark.parametrize("paused_project", ALL_MODES, indirect=True)
def test_sigkill_container_stops_on_its_own(
    paused_project: tuple[Runner, Project], tmp_path: Path
) -> None:
    runner, project = paused_project
    log = tmp_path / "kasctl.log"
    proc = start_paused(runner, project, log)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 60
    while containers(runner, project.work):
        assert time.monotonic() < deadline, "the container outlived kasctl by a minute"
        time.sleep(1)
    assert_next_build_works(runner, project)


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


@pytest.mark.parametrize("mode", ["rootless-podman", "system-docker"])
def test_next_run_removes_leftovers(mode: str) -> None:
    """A container whose kasctl died (with its guard) is reported and removed by the
    next run in the work dir; one from another host is reported and left alone."""
    runner = make_runner(mode)
    project = make_project(runner, fixture="oe-standin")
    engine = runner.mode.engine
    image = f"localhost/kasctl/kas-isar:{__version__}"
    started = []
    try:
        for name, host in (
            ("kasctl-leftover", os.uname().nodename),
            ("kasctl-elsewhere", "elsewhere"),
        ):
            name = f"{name}-{os.getpid()}"
            labels = {
                "io.kasctl.version": __version__,
                "io.kasctl.workdir": str(project.work),
                "io.kasctl.pid": str(dead_pid()),
                "io.kasctl.host": host,
            }
            argv = [engine, "run", "--detach", f"--name={name}", "--entrypoint=sleep"]
            argv += [f"--label={k}={v}" for k, v in labels.items()] + [image, "600"]
            assert runner.run(argv, Path("/")).returncode == 0
            started.append(name)
        result = runner.kasctl("build", project.config, cwd=project.work)
        assert result.returncode == 0, result.stderr[-3000:]
        leftover, elsewhere = started
        assert f"removing container {leftover}" in result.stderr
        assert f"container {elsewhere} of a kasctl on host elsewhere" in result.stderr
        assert containers(runner, project.work) == [elsewhere]
    finally:
        for name in started:
            runner.run([engine, "rm", "--force", name], Path("/"))
        remove_tree(project.work)
