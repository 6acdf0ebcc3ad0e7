"""Two kasctl runs on one build dir: the second waits (or, with --no-wait, fails at once).

Real runs of the Isar stand-in (tests/fixtures/isar-standin, NOT Isar) on
real engines; the first holds the build dir with a shell that sleeps.
Also: GitLab's section markers around a real run's phases, in order.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from .harness import Project, kasctl_bin, make_project, make_runner

pytestmark = pytest.mark.e2e

MODES = ["rootless-podman", "system-docker"]


def _wait_for(log: Path, text: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.parametrize("mode", MODES)
def test_a_second_run_on_the_same_build_dir_waits_or_with_no_wait_fails(
    mode: str, project_factory: list[Project], tmp_path: Path
) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)
    first_log = tmp_path / "first.log"
    marker = "first-run-holds-the-build-dir"
    first = runner.spawn(
        [kasctl_bin(), "shell", project.config, "-c", f"echo {marker}; sleep 8"],
        project.work,
        first_log,
    )
    try:
        _wait_for(first_log, marker)

        refused = runner.kasctl("--no-wait", "build", project.config, cwd=project.work)
        assert refused.returncode == 4, refused.stderr
        assert f"build dir {project.build} is in use by kasctl `shell` (pid {first.pid}" in (
            refused.stderr
        )
        assert "Traceback" not in refused.stderr

        started = time.monotonic()
        waited = runner.kasctl("shell", project.config, "-c", "true", cwd=project.work)
        assert waited.returncode == 0, waited.stderr
        assert "is in use by kasctl `shell`" in waited.stderr and "waiting" in waited.stderr
        assert first.wait(timeout=60) == 0, first_log.read_text()
        assert time.monotonic() - started > 2, "it waited for the first run to end"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert not list(project.work.glob(".*kasctl-lock")), "no lock file is left behind"


def test_gitlab_sections_wrap_each_phase_of_a_real_run(project_factory: list[Project]) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl(
        "shell", project.config, "-c", "echo in-the-kas-run", cwd=project.work,
        extra_env={"GITLAB_CI": "true"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    # (the harness reads output as text, which turns the markers' \r into \n)
    events = re.findall(
        r"\x1b\[0Ksection_(start|end):\d+:([a-z_]+)(\[collapsed=true\])?\n\x1b\[0K", result.stdout
    )
    assert [(kind, name) for kind, name, _ in events] == [
        (kind, name)
        for name in (
            "kasctl_checks",
            "kasctl_image",
            "kasctl_start",
            "kasctl_kas",
            "kasctl_cleanup",
        )
        for kind in ("start", "end")
    ]
    collapsed = {name: bool(c) for kind, name, c in events if kind == "start"}
    assert collapsed["kasctl_kas"] is False, "the kas run stays open"
    assert collapsed["kasctl_checks"] is True
    kas_start = result.stdout.index("section_start", result.stdout.index("kasctl_start"))
    assert result.stdout.index("in-the-kas-run") > kas_start, "kas's output is in its section"
