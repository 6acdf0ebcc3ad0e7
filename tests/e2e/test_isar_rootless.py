"""isar-rootless end to end: `kasctl build` with the Isar stand-in in every engine mode."""

from __future__ import annotations

import grp
import pwd
import subprocess
import tarfile

import pytest

from .harness import IMAGE_WORKDIR, Project, Runner, make_project, make_runner, owners

pytestmark = pytest.mark.e2e

MODES = ["rootless-podman", "rootful-podman", "system-docker", "rootless-docker"]


def _tar_owners(path: str) -> tuple[set[int], set[int]]:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    return {m.uid for m in members}, {m.gid for m in members}


def _build(runner: Runner, project: Project) -> None:
    result = runner.kasctl("build", project.config, cwd=project.work)
    assert result.returncode == 0, "the stand-in's last 'isar-standin:' line names the failing step"
    assert "isar-standin: done (rootless)" in result.stderr + result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_build_runs_isar_rootless_work_as_the_user(
    mode: str, project_factory: list[Project]
) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)

    _build(runner, project)

    tarball = project.build / "tmp" / "deploy" / "isar-standin-rootfs.tar"
    assert tarball.is_file()
    uids, gids = _tar_owners(str(tarball))
    assert 0 in uids, "the rootfs must hold root-owned files"
    assert {1000, 65534} <= uids, "the nested namespace must map ordinary ids and nobody"
    assert {42, 65534} <= gids, "group shadow (setgid binary) and nogroup must be mapped"
    assert owners(project.work) == {(runner.uid, runner.gid)}, (
        "every file left in the work dir must belong to the invoking user"
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_package_builds_with_sbuild_in_unshare_mode(
    mode: str, project_factory: list[Project]
) -> None:
    """What every Isar recipe's do_dpkg_build does: sbuild --chroot-mode=unshare on a tarball.

    sbuild's unshare backend needs `ip` in the image (it brings up lo in the
    build's network namespace) and sethostname for the build's UTS namespace.
    It also says, many times, that it cannot bind /dev/console into the
    chroot: a container without a terminal has none, kasctl gives it none
    (the host's would be a host device; a stand-in would only silence the
    message), and the package builds all the same.
    """
    runner = make_runner(mode)
    project = make_project(runner, extra_conf='STANDIN_PACKAGE = "1"')
    project_factory.append(project)

    _build(runner, project)

    deb = project.build / "tmp" / "deploy" / "isar-apt" / "standin-hello_1.0_amd64.deb"
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "./usr/bin/standin-hello" in listing.stdout
    task_dir = project.build / "tmp" / "work" / "debian-trixie-amd64" / "standin-hello"
    log = task_dir / "1.0-r0" / "temp" / "log.do_dpkg_build"
    assert "Status: successful" in log.read_text(), "sbuild's own verdict, in the task's log"
    assert owners(project.work) == {(runner.uid, runner.gid)}


def _named_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def _named_gid(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("mode", MODES)
def test_rootfs_lands_on_no_host_id_and_clean_removes_it(
    mode: str, project_factory: list[Project]
) -> None:
    runner = make_runner(mode)
    project = make_project(runner, extra_conf='STANDIN_KEEP_ROOTFS = "1"')
    project_factory.append(project)

    _build(runner, project)

    rootfs = project.build / IMAGE_WORKDIR / "rootfs"
    assert (rootfs / "usr" / "local" / "bin" / "standin-setgid").exists()
    found = owners(project.build)
    foreign = {(u, g) for u, g in found if (u, g) != (runner.uid, runner.gid)}
    assert foreign, "the kept rootfs must be owned by the builder's sub-ids"
    for uid, gid in found:
        assert uid == runner.uid or not _named_uid(uid), f"file owned by host user {uid}"
        assert gid == runner.gid or not _named_gid(gid), f"file owned by host group {gid}"

    listed = runner.kasctl("clean", "--dry-run", project.config, cwd=project.work)
    assert listed.returncode == 0
    assert listed.stdout.split() == [str(project.build / "tmp")]
    assert rootfs.exists(), "--dry-run removes nothing"

    cleaned = runner.kasctl("clean", project.config, cwd=project.work)
    assert cleaned.returncode == 0
    assert "/work/build/tmp" in cleaned.stdout, "kasctl's one-namespace cleaner did the work"
    assert not (project.build / "tmp").exists()
    assert owners(project.work) == {(runner.uid, runner.gid)}


@pytest.mark.parametrize("mode", MODES)
def test_sudo_is_blocked_in_isar_rootless(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl("shell", project.config, "-c", "sudo true", cwd=project.work)

    assert result.returncode != 0
    assert "sudo is blocked" in result.stderr + result.stdout
