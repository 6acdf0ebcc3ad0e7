"""A failed build names its cause: stand-in builds that fail the way rootless builds do.

Each case is a real `kasctl build` of the Isar stand-in (tests/fixtures/
isar-standin, NOT Isar) that fails for real, in a container or image set up
the way users get wrong: a CI runner's no-new-privileges, a company seccomp
profile, a /proc mask, an image without kasctl's bwrap wrapper, an image
whose entrypoint wrote no sub-id range, a layer that still calls sudo, and
podman's plain profile on rootless docker. kasctl must end with the failed
task, the host path of its log, and the one-line cause and fix it read from
the build dir's own logs.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from .harness import Project, Runner, make_project, make_runner

pytestmark = pytest.mark.e2e

PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")


def _failed_build(runner: Runner, project: Project, *kasctl_args: str) -> tuple[list[str], Path]:
    result = runner.kasctl("build", *kasctl_args, project.config, cwd=project.work)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("kasctl:")]
    start = lines.index(next(line for line in lines if "the build failed" in line))
    summary = lines[start:]
    logs = [line.split("log: ", 1)[1] for line in summary if "log: " in line]
    assert logs, summary
    return summary, Path(logs[0])


def _check(summary: list[str], log: Path, project: Project, task: str, line: str) -> str:
    """The task, its log on the host holding the failing line, and the cause; returns it."""
    assert summary[0] == "kasctl: the build failed in 1 task:"
    assert summary[1].endswith(f".bb:{task}")
    assert log.is_relative_to(project.build), "the log is named by its host path"
    assert line in log.read_text(errors="replace"), "the cause comes from the task's own log"
    cause = next(s for s in summary if s.startswith("kasctl:     cause: "))
    assert any(s.startswith("kasctl:     fix: ") for s in summary)
    return cause


def test_no_new_privileges_stops_newuidmap(project_factory: list[Project]) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner)
    project_factory.append(project)

    summary, log = _failed_build(runner, project, "--runtime-args=--security-opt=no-new-privileges")

    cause = _check(summary, log, project, "do_bootstrap", "write to uid_map failed")
    assert "no-new-privileges" in cause


def test_a_masked_proc_is_named(project_factory: list[Project]) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner)
    project_factory.append(project)

    summary, log = _failed_build(runner, project, "--runtime-args=--security-opt=mask=/proc/acpi")

    cause = _check(summary, log, project, "do_rootfs_install", "mount /proc failed")
    assert "/proc" in cause


def test_a_profile_that_refuses_pivot_root_is_named(project_factory: list[Project]) -> None:
    runner = make_runner("system-docker")
    project = make_project(runner)
    project_factory.append(project)
    profile = json.loads(PODMAN_PROFILE.read_text())
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "pivot_root"]
    profile["syscalls"].append({"names": ["pivot_root"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=project.work, delete=False) as f:
        json.dump(profile, f)
    Path(f.name).chmod(0o644)

    summary, log = _failed_build(runner, project, f"--runtime-args=--security-opt=seccomp={f.name}")

    cause = _check(summary, log, project, "do_rootfs_install", "pivot_root")
    assert "pivot_root" in cause


def test_bubblewrap_refusing_isar_rootfs_cmd_is_named(project_factory: list[Project]) -> None:
    """The image's real bwrap, without kasctl's wrapper, still refuses Isar's rootfs_cmd.

    When this test fails because the build succeeds, bubblewrap accepts the
    mount again, and container/bwrap-merged-usr can go.
    """
    runner = make_runner("rootless-podman")
    project = make_project(runner, extra_conf='STANDIN_BWRAP = "/usr/lib/kasctl/bwrap.real"')
    project_factory.append(project)

    summary, log = _failed_build(runner, project)

    line = "Can't mount on symlink destination /bin"
    cause = _check(summary, log, project, "do_rootfs_install", line)
    assert "merged-/usr" in cause


def test_no_sub_id_range_in_the_container_is_named(project_factory: list[Project]) -> None:
    # as an image whose entrypoint wrote no range for the builder would leave it
    conf = 'STANDIN_SUBUID_FILE = "/dev/null"\n    STANDIN_SUBGID_FILE = "/dev/null"'
    runner = make_runner("system-docker")
    project = make_project(runner, extra_conf=conf)
    project_factory.append(project)

    summary, log = _failed_build(runner, project)

    cause = _check(summary, log, project, "do_bootstrap", "No sub-id range specified")
    assert "sub-id range" in cause


def test_a_recipe_calling_sudo_is_named(project_factory: list[Project]) -> None:
    runner = make_runner("rootless-docker")
    project = make_project(runner, extra_conf='STANDIN_LEGACY_SUDO = "1"')
    project_factory.append(project)

    summary, log = _failed_build(runner, project)

    cause = _check(summary, log, project, "do_install", "sudo is blocked")
    assert re.search(r"standin-legacy\.bb called sudo", cause), cause
    assert str(project.repo) in cause, "the recipe is named by its host path"


def test_sethostname_refused_to_sbuild_is_named(project_factory: list[Project]) -> None:
    """Rootless docker with podman's plain profile: the package build cannot name its UTS ns."""
    runner = make_runner("rootless-docker")
    project = make_project(runner, extra_conf='STANDIN_PACKAGE = "1"')
    project_factory.append(project)

    summary, log = _failed_build(
        runner, project, f"--runtime-args=--security-opt=seccomp={PODMAN_PROFILE}"
    )

    cause = _check(summary, log, project, "do_dpkg_build", "hostname: you must be root")
    assert "sethostname" in cause
