"""The other cells of the matrix: openembedded and isar-privileged in every engine mode,
and the lock-down of an isar-rootless container."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasctl.host.detect import missing_capabilities

from .harness import Project, make_project, make_runner, owners

pytestmark = pytest.mark.e2e

MODES = ["rootless-podman", "rootful-podman", "system-docker", "rootless-docker"]


@pytest.mark.parametrize("mode", MODES)
def test_openembedded_builds_as_the_user(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)

    result = runner.kasctl("build", project.config, cwd=project.work)

    assert result.returncode == 0
    assert "oe-standin: done" in result.stderr
    assert (project.build / "tmp" / "deploy" / "images" / "oe-standin.txt").is_file()
    assert owners(project.work) == {(runner.uid, runner.gid)}


@pytest.mark.parametrize("mode", MODES)
def test_isar_privileged_mounts_a_loop_device_as_real_root(
    mode: str, project_factory: list[Project]
) -> None:
    runner = make_runner(mode)
    project = make_project(runner, build_system="isar-privileged")
    project_factory.append(project)

    result = runner.kasctl("build", project.config, cwd=project.work)

    missing = missing_capabilities(Path("/proc/self/status").read_text())
    if "docker" in mode and missing:
        # docker --privileged cannot start on such a host: refused up front, clearly
        assert result.returncode == 3
        assert "bounding set lacks CAP_" in result.stderr
        assert "Traceback" not in result.stderr
        return
    assert result.returncode == 0
    assert "isar-standin: done (privileged)" in result.stderr
    assert (project.build / "tmp" / "deploy" / "isar-standin-privileged.img").is_file()


LOCKDOWN = """
set +e
echo "setid: $(find / -xdev -type f -perm /6000 2>/dev/null | sort | tr '\\n' ' ')"
sudo true; echo "sudo-true: $?"
/usr/bin/sudo true; echo "usr-bin-sudo: $?"
su -c true root </dev/null; echo "su: $?"
su -c true </dev/null; echo "su-self: $?"
echo "caps: $(grep CapEff /proc/self/status)"
"""


@pytest.mark.parametrize("mode", MODES)
def test_isar_rootless_container_is_locked(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl("shell", project.config, "-c", LOCKDOWN, cwd=project.work)

    assert result.returncode == 0
    report = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert report["setid"].split() == ["/usr/bin/newgidmap", "/usr/bin/newuidmap"]
    for attempt in ("sudo-true", "usr-bin-sudo", "su", "su-self"):
        assert report[attempt] != "0", f"{attempt} must fail"
    assert report["caps"].split() == ["CapEff:", "0000000000000000"]
