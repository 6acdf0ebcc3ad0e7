"""kasctl in a CI job container: found from its own mounts; paths passed as the daemon sees them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kasctl.build_system import BuildSystem
from kasctl.decide import privileges
from kasctl.decide.plan import BUILD_USER, plan
from kasctl.engine.engines import render
from kasctl.errors import UsageError
from kasctl.host import detect
from kasctl.host.facts import EngineMode, JobContainer
from kasctl.layout import through

from .test_plan import HOST, engine, request

CID = "3f1c" + "a" * 60
#: /proc/self/mountinfo of a docker job container (trimmed), as docker 20.10 writes it.
DOCKER_MOUNTINFO = f"""\
1012 905 0:63 / / rw,relatime master:280 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X
1013 1012 0:66 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1030 1012 8:1 /var/lib/docker/volumes/gcl-build-1-build/_data /builds/group/proj rw - ext4 /dev/sda1
1031 1012 8:1 /var/lib/docker/containers/{CID}/resolv.conf /etc/resolv.conf rw - ext4 /dev/sda1 rw
1032 1012 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw - ext4 /dev/sda1 rw
"""
PODMAN_MOUNTINFO = (
    "650 600 0:52 /containers/storage/overlay-containers/"
    + CID
    + "/userdata/hostname /etc/hostname rw - tmpfs tmpfs rw\n"
)
#: A machine made from a container image (it has /.dockerenv), running its own daemon.
VM_MOUNTINFO = "22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"


@pytest.mark.parametrize(
    ("mountinfo", "found"),
    [(DOCKER_MOUNTINFO, CID), (PODMAN_MOUNTINFO, CID), (VM_MOUNTINFO, None), ("", None)],
)
def test_the_container_is_known_by_the_files_its_engine_mounted(
    mountinfo: str, found: str | None
) -> None:
    assert detect.own_container_id(mountinfo) == found


def test_a_vm_with_a_dockerenv_file_is_no_job_container(tmp_path: Path) -> None:
    (tmp_path / ".dockerenv").touch()
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(VM_MOUNTINFO)
    assert detect.container_id(tmp_path) is None


def test_the_daemons_account_of_the_mounts_is_read() -> None:
    inspected = (
        '[{"Type":"volume","Name":"gcl-build-1-build",'
        '"Source":"/var/lib/docker/volumes/gcl-build-1-build/_data",'
        '"Destination":"/builds/group/proj","RW":true},'
        '{"Type":"bind","Source":"/var/run/docker.sock",'
        '"Destination":"/var/run/docker.sock","RW":true}]\n'
    )
    assert detect.parse_mounts(inspected) == (
        ("/builds/group/proj", "/var/lib/docker/volumes/gcl-build-1-build/_data"),
        ("/var/run/docker.sock", "/var/run/docker.sock"),
    )
    assert detect.parse_mounts("not json") is None
    assert detect.parse_mounts('{"a": 1}') is None


def test_through_takes_the_longest_mount_holding_the_path() -> None:
    pairs = [("/builds", "/srv/builds"), ("/builds/g/p/cache", "/cache"), ("/", "/overlay")]
    assert through("/builds/g/p", pairs) == "/srv/builds/g/p"
    assert through("/builds/g/p/cache/dl", pairs) == "/cache/dl"
    assert through("/buildsx", pairs) == "/overlay/buildsx"
    assert through("/etc", [("/builds", "/srv")]) is None


JOB_WORK = Path("/builds/group/proj")
VOLUME = "/var/lib/docker/volumes/gcl-build-1-build/_data"
ROOT_HOST = replace(HOST, uid=0, gid=0, user="root", home="/root")


def _job(**kw: object) -> JobContainer:
    values: dict[str, object] = {
        "id": CID,
        "mounts": ((str(JOB_WORK), VOLUME), ("/var/run/docker.sock", "/var/run/docker.sock")),
        "work_owner": (0, 0),
    }
    values.update(kw)
    return JobContainer(**values)  # type: ignore[arg-type]


def _plan(job: JobContainer, **kw: object):  # type: ignore[no-untyped-def]
    config = request(BuildSystem.ISAR_ROOTLESS).config
    assert config is not None
    req = request(
        BuildSystem.ISAR_ROOTLESS,
        work_dir=JOB_WORK,
        config=replace(config, repo_dir=JOB_WORK),
        **kw,
    )
    return plan(req, ROOT_HOST, engine(EngineMode.SYSTEM_DOCKER, job=job))


def test_mount_sources_are_passed_as_the_host_paths_the_daemon_resolves() -> None:
    argv = render(_plan(_job()))
    mounts = [a for a in argv if a.startswith("--mount=")]
    assert f"--mount=type=bind,source={VOLUME},target=/work" in mounts
    assert all(str(JOB_WORK) not in m for m in mounts), mounts


def test_kasctl_itself_still_reads_the_job_containers_paths() -> None:
    p = _plan(_job())
    work = next(m for m in p.mounts if m.target == "/work")
    assert (work.source, work.seen_by_engine) == (str(JOB_WORK), VOLUME)
    assert {"source": str(JOB_WORK), "target": "/work", "readonly": False,
            "engine_source": VOLUME} in p.to_json()["mounts"]  # fmt: skip


def test_a_path_only_in_the_job_containers_layer_is_refused_naming_it() -> None:
    job = _job(mounts=(("/cache", "/srv/cache"),))
    with pytest.raises(UsageError) as info:
        _plan(job)
    assert str(JOB_WORK) in info.value.message
    assert "only in this job container" in info.value.message
    assert "volumes" in (info.value.fix or ""), "names the runner setting that fixes it"


def test_an_engine_that_does_not_run_the_job_container_gets_paths_unchanged() -> None:
    p = _plan(_job(mounts=None))  # e.g. podman inside the job: its paths are the job's own
    assert all(m.engine_source is None for m in p.mounts)


def test_as_root_in_a_job_the_build_runs_as_the_checkouts_owner_or_the_job_builder() -> None:
    env = dict(_plan(_job(work_owner=(1234, 1235))).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == ("1234", "1235")
    env = dict(_plan(_job(work_owner=(0, 0))).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == tuple(str(i) for i in BUILD_USER)
    assert BUILD_USER[0] != 0, "isar-rootless never builds as root"


def test_in_a_job_the_checkout_is_a_git_safe_directory_for_the_builder() -> None:
    env = dict(_plan(_job()).env)
    assert env["KASCTL_SAFE_DIRECTORIES"].split(":") == ["/repo", "/work"]
    plain = dict(
        plan(request(BuildSystem.ISAR_ROOTLESS), HOST, engine(EngineMode.SYSTEM_DOCKER)).env
    )
    assert "KASCTL_SAFE_DIRECTORIES" not in plain


def test_root_is_refused_on_a_host_but_not_in_a_job_container() -> None:
    with pytest.raises(UsageError, match="refusing to run as root"):
        privileges.refuse_root(ROOT_HOST, {})
    privileges.refuse_root(ROOT_HOST, {}, in_job=True)


def test_doctor_says_which_setup_it_runs_in() -> None:
    from kasctl.report.doctor import setup_check

    host = setup_check(None, None, "docker", fuse=False)
    assert (host.status, host.detail) == ("ok", "a plain host (not in a container)")
    job = setup_check(CID, _job(), "docker", fuse=False)
    assert job.status == "ok" and "CI job container 3f1caaaaaaaa" in job.detail
    assert "paths on its host" in job.detail
    dind = setup_check(CID, _job(mounts=None), "docker", fuse=False)
    assert dind.status == "warn" and "docker.sock" in dind.fix
    nested = setup_check(CID, _job(mounts=None), "podman", fuse=True)
    assert nested.status == "ok" and "podman nested" in nested.detail
    no_fuse = setup_check(CID, _job(mounts=None), "podman", fuse=False)
    assert no_fuse.status == "warn" and "/dev/fuse" in no_fuse.fix


def test_a_root_owned_closed_checkout_is_given_to_the_build_user_an_open_one_is_not() -> None:
    assert _plan(_job(work_owner=(0, 0), work_open=False)).give_work_dir == BUILD_USER
    assert _plan(_job(work_owner=(0, 0), work_open=True)).give_work_dir is None
    assert _plan(_job(work_owner=(1234, 1235), work_open=False)).give_work_dir is None
    plain = plan(request(BuildSystem.ISAR_ROOTLESS), HOST, engine(EngineMode.SYSTEM_DOCKER))
    assert plain.give_work_dir is None, "never outside a job container"


def test_the_checkouts_owner_is_judged_by_its_uid() -> None:
    """A checkout of uid 1234 in group root is that user's; one of root in group 1234 is root's."""
    env = dict(_plan(_job(work_owner=(1234, 0))).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == ("1234", "0")
    env = dict(_plan(_job(work_owner=(0, 1234))).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == tuple(str(i) for i in BUILD_USER)


def test_through_sudo_in_a_job_the_work_dir_is_not_given_away() -> None:
    """sudo keeps the user's ids: that user already owns what it asked kasctl to build."""
    host = replace(ROOT_HOST, sudo_uid=1234, sudo_gid=1235)
    req = request(
        BuildSystem.ISAR_ROOTLESS,
        work_dir=JOB_WORK,
        config=replace(request(BuildSystem.ISAR_ROOTLESS).config, repo_dir=JOB_WORK),  # type: ignore[arg-type]
    )
    p = plan(req, host, engine(EngineMode.SYSTEM_DOCKER, job=_job(work_owner=(0, 0))))
    assert p.give_work_dir is None
    assert (dict(p.env)["USER_ID"], dict(p.env)["GROUP_ID"]) == ("1234", "1235")


def test_the_refusal_of_a_job_layer_path_says_what_to_change() -> None:
    with pytest.raises(UsageError) as info:
        _plan(_job(mounts=(("/cache", "/srv/cache"),)))
    assert info.value.message == (
        f"{JOB_WORK} (mounted at /work) is only in this job container's own filesystem, so "
        "the engine's daemon, which runs on the host, cannot mount it"
    )
    fix = info.value.fix or ""
    assert fix.startswith("put it on a volume or bind mount of the job container")
    for fact in ("GitLab runner: `[runners.docker] volumes`", "GitHub: the workspace",
                 "point KAS_WORK_DIR and the other dirs there"):  # fmt: skip
        assert fact in fix


def test_the_plan_names_a_daemons_path_only_where_it_differs() -> None:
    """--dry-run --json: engine_source appears for the paths the daemon sees elsewhere only."""
    same = (str(JOB_WORK), str(JOB_WORK))  # the job's builds dir bound at the same path
    p = _plan(_job(mounts=(same, ("/", "/overlay"))))
    work = next(m for m in p.mounts if m.target == "/work")
    assert work.engine_source is None
    assert "engine_source" not in next(m for m in p.to_json()["mounts"] if m["target"] == "/work")


def test_the_container_id_is_read_from_its_own_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(DOCKER_MOUNTINFO)
    assert detect.container_id(tmp_path) == CID
    assert detect.container_id(tmp_path / "nothing-here") is None


def test_mounts_without_both_ends_are_left_out() -> None:
    inspected = (
        '[{"Destination":"/a"}, {"Source":"/b"}, "a string", 7, {"Destination":"/c","Source":"/d"}]'
    )
    assert detect.parse_mounts(inspected) == (("/c", "/d"),)
