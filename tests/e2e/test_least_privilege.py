"""Every privilege kasctl grants is needed: drop one and the Isar stand-in fails.

Each case takes the exact engine command kasctl would run (`--dry-run
--json`), removes one flag, runs it as the same user, and expects the
stand-in (or the entrypoint) to fail at the step that flag exists for.
A second test checks that this table covers every flag kasctl grants, so a
new flag cannot arrive without its drop-one case.
"""

from __future__ import annotations

import json

import pytest

from .harness import Project, make_project, make_runner

pytestmark = pytest.mark.e2e

SECCOMP = "--security-opt=seccomp=/usr/share/containers/seccomp.json"

#: (engine mode, flag) -> what the output must say without that flag.
DROP_ONE = {
    ("rootless-podman", "--userns=keep-id"): "Permission denied: '/work/build'",
    ("rootless-podman", "--user=root"): "the entrypoint must start as root",
    ("rootless-podman", "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("rootless-podman", "--security-opt=unmask=ALL"): "unshare: mount /proc failed",
    ("rootful-podman", "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("rootful-podman", "--security-opt=unmask=ALL"): "unshare: mount /proc failed",
    ("system-docker", "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("system-docker", "--security-opt=systempaths=unconfined"): "unshare: mount /proc failed",
    ("system-docker", SECCOMP): "isar-standin: FAILED: bubblewrap",
    ("rootless-docker", "--security-opt=systempaths=unconfined"): "unshare: mount /proc failed",
    ("rootless-docker", SECCOMP): "cannot create the builder's user namespace",
}
MODES = sorted({mode for mode, _ in DROP_ONE})


def _planned_argv(mode: str, project_factory: list[Project]) -> tuple[list[str], dict, Project]:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)
    dry = runner.kasctl("build", "--dry-run", "--json", project.config, cwd=project.work)
    assert dry.returncode == 0
    data = json.loads(dry.stdout)
    return data["argv"], data["plan"], project


@pytest.mark.parametrize("mode", MODES)
def test_every_granted_flag_has_a_drop_one_case(mode: str, project_factory: list[Project]) -> None:
    _, plan, _ = _planned_argv(mode, project_factory)
    granted = {g["flag"] for g in plan["grants"]}
    covered = {flag for m, flag in DROP_ONE if m == mode}
    assert granted == covered


@pytest.mark.parametrize(("mode", "flag"), sorted(DROP_ONE))
def test_workload_fails_without_the_flag(
    mode: str, flag: str, project_factory: list[Project]
) -> None:
    argv, _, project = _planned_argv(mode, project_factory)
    assert flag in argv
    argv.remove(flag)
    runner = make_runner(mode)

    result = runner.run(argv, cwd=project.work)

    assert result.returncode != 0
    assert DROP_ONE[(mode, flag)] in result.stdout + result.stderr
