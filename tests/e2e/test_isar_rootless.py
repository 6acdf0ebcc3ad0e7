"""isar-rootless end to end: `kasctl build` with the Isar stand-in on real engines."""

from __future__ import annotations

import tarfile

import pytest

from .harness import Project, make_project, make_runner, owners

pytestmark = pytest.mark.e2e

ROOTLESS_MODES = ["rootless-podman", "system-docker"]


def _tar_owners(path: str) -> tuple[set[int], set[int]]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    return {m.uid for m in members}, {m.gid for m in members}


@pytest.mark.parametrize("mode", ROOTLESS_MODES)
def test_build_runs_isar_rootless_work_as_the_user(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl("build", project.config, cwd=project.work)

    assert result.returncode == 0, "the stand-in's last 'isar-standin:' line names the failing step"
    assert "isar-standin: done (rootless)" in result.stderr + result.stdout
    tarball = project.build / "tmp" / "deploy" / "isar-standin-rootfs.tar"
    assert tarball.is_file()
    uids, gids = _tar_owners(str(tarball))
    assert 0 in uids, "the rootfs must hold root-owned files"
    assert {1000, 65534} <= uids, "the nested namespace must map ordinary ids and nobody"
    assert {42, 65534} <= gids, "group shadow (setgid binary) and nogroup must be mapped"
    assert owners(project.work) == {(runner.uid, runner.gid)}, (
        "every file left in the work dir must belong to the invoking user"
    )


@pytest.mark.parametrize("mode", ROOTLESS_MODES)
def test_sudo_is_blocked_in_isar_rootless(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl("shell", project.config, "-c", "sudo true", cwd=project.work)

    assert result.returncode != 0
    assert "sudo is blocked" in result.stderr + result.stdout
