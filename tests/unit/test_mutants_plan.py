"""What a RunPlan hands the engine and the entrypoint (found by mutmut, tests/MUTATION.md).

Each test says what the container or the user would see: the variables the
entrypoint reads, the time zone and the credentials kas gets (by reference,
mounted read-only, never inlined), a worktree's .git where kas looks for it,
the name of the path an engine could not mount, and the warnings that say
which /etc file to fix and how.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.config.files import ConfigFile
from kasctl.config.read import Config
from kasctl.config.repo import Worktree
from kasctl.decide.credentials import USERDATA, CredentialOptions, collect
from kasctl.decide.plan import plan
from kasctl.engine.engines import render
from kasctl.errors import UsageError
from kasctl.host.facts import EngineMode, KvmDevice
from kasctl.inside.subids import Range
from tests.unit.test_plan import HOST, WORK_DIR, engine, make_plan, request  # the same host

ENTRYPOINT_SOURCE = Path(__file__).resolve().parent.parent.parent / "kasctl/inside/entrypoint.py"
IR, IP, OE = BuildSystem.ISAR_ROOTLESS, BuildSystem.ISAR_PRIVILEGED, BuildSystem.OPENEMBEDDED
RP, FP, SD, RD = (
    EngineMode.ROOTLESS_PODMAN,
    EngineMode.ROOTFUL_PODMAN,
    EngineMode.SYSTEM_DOCKER,
    EngineMode.ROOTLESS_DOCKER,
)
KVM_HOST = replace(HOST, kvm=KvmDevice(gid=108, mode=0o660))


# --------------------------------------------------------------------------
# the variables kasctl sets for its entrypoint
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "build_system", "kvm"),
    [(FP, IR, True), (RD, OE, False), (SD, IP, True)],
    ids=["rootful-isar-rootless-kvm", "rootless-docker", "isar-privileged-kvm"],
)
def test_every_variable_set_for_the_entrypoint_is_one_it_reads(
    mode: EngineMode, build_system: BuildSystem, kvm: bool
) -> None:
    env = dict(plan(request(build_system, kvm=kvm), KVM_HOST, engine(mode)).env)
    ours = {k for k in env if k.startswith("KASCTL_") or k in ("USER_ID", "GROUP_ID")}
    read = set(re.findall(r'"([A-Z_]+)"', ENTRYPOINT_SOURCE.read_text()))
    assert ours and ours <= read
    # the entrypoint warns of a stale image by comparing this with its own version
    assert env["KASCTL_VERSION"] == __version__


def test_kvm_gives_the_device_and_its_group_to_the_builder() -> None:
    with_kvm = plan(request(IR, kvm=True), KVM_HOST, engine(FP))
    assert "--device=/dev/kvm" in render(with_kvm)
    assert ("KASCTL_KVM_GID", "108") in with_kvm.env
    without = plan(request(IR), KVM_HOST, engine(FP))
    assert "--device=/dev/kvm" not in render(without)
    assert "KASCTL_KVM_GID" not in dict(without.env)


def test_kvm_open_to_all_needs_no_group() -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o666))
    p = plan(request(IR, kvm=True), host, engine(RP))
    assert "--device=/dev/kvm" in render(p)
    assert "KASCTL_KVM_GID" not in dict(p.env)


@pytest.mark.parametrize(
    ("sudo_uid", "sudo_gid"), [(None, 1002), (1001, None)], ids=["gid-only", "uid-only"]
)
def test_root_with_half_of_sudos_ids_stays_root(sudo_uid: int | None, sudo_gid: int | None) -> None:
    """The user behind sudo is taken only when both SUDO_UID and SUDO_GID name one."""
    host = replace(HOST, uid=0, gid=0, sudo_uid=sudo_uid, sudo_gid=sudo_gid)
    env = dict(make_plan(RD, OE, host=host).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == ("0", "0")


def test_the_container_gets_the_name_kasctl_chose() -> None:
    p = make_plan(SD, OE, name="kasctl-0123abcd")
    assert p.name == "kasctl-0123abcd"
    assert "--name=kasctl-0123abcd" in render(p)


def test_dry_run_json_is_the_whole_plan_with_the_mode_by_name() -> None:
    p = make_plan(RP, IR, env={"TERM": "xterm"})
    data = json.loads(json.dumps(p.to_json()))  # what `--dry-run --json` prints
    assert data["mode"] == "rootless-podman"
    assert data["image"] == p.image and data["command"] == list(p.command)
    assert ["TERM", "xterm"] in data["env"]
    assert {"source": str(WORK_DIR), "target": "/work", "readonly": False} in data["mounts"]


# --------------------------------------------------------------------------
# time zone: the user's TZ, else the host's
# --------------------------------------------------------------------------

BERLIN = "/usr/share/zoneinfo/Europe/Berlin"


def test_tz_the_user_sets_reaches_kas_once_and_beats_the_hosts_zone() -> None:
    p = make_plan(SD, OE, host=replace(HOST, localtime=BERLIN), env={"TZ": "Asia/Tokyo"})
    assert [v for k, v in p.env if k == "TZ"] == ["Asia/Tokyo"]
    assert "TZ=Asia/Tokyo" in render(p)


def test_without_tz_the_container_gets_the_hosts_zone() -> None:
    p = make_plan(SD, OE, host=replace(HOST, localtime=BERLIN))
    assert [v for k, v in p.env if k == "TZ"] == ["Europe/Berlin"]


# --------------------------------------------------------------------------
# credentials: mounted read-only where kas looks, named by a variable, never inlined
# --------------------------------------------------------------------------


def test_credentials_are_mounted_read_only_and_passed_by_reference(tmp_path: Path) -> None:
    secret = "machine example.invalid login u password s3cr3t-value"
    netrc = tmp_path / "netrc"
    netrc.write_text(secret + "\n")
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    env = {"NETRC_FILE": str(netrc)}
    shares = collect(CredentialOptions(ssh_dir=str(ssh)), env)
    for mode in (SD, RP):
        p = make_plan(mode, OE, env=env, shares=shares)
        assert [(m.source, m.readonly) for m in p.mounts if m.target == f"{USERDATA}/.netrc"] == [
            (str(netrc), True)
        ]
        assert [(m.source, m.readonly) for m in p.mounts if m.target == f"{USERDATA}/.ssh"] == [
            (str(ssh), True)
        ]
        argv = render(p)
        ro = "readonly" if mode.kind == "docker" else "ro=true"
        assert f"--mount=type=bind,source={netrc},target={USERDATA}/.netrc,{ro}" in argv
        assert f"NETRC_FILE={USERDATA}/.netrc" in argv
        assert not any("s3cr3t" in a for a in argv)


# --------------------------------------------------------------------------
# a git worktree's .git, where kas looks for it
# --------------------------------------------------------------------------

TREE = Worktree(common_dir=Path("/src/main/.git"), gitdir="worktrees/wt")


def _worktree_plan(repo_dir: Path) -> dict[str, tuple[str, bool]]:
    cfg = Config(
        files=(ConfigFile(path=repo_dir / "kas.yml", data={}),), repo_dir=repo_dir, build_system=OE
    )
    p = make_plan(
        SD, OE, config=cfg, worktree=TREE, worktree_gitfile="/tmp/kasctl-x/dotgit", writes_repo=True
    )
    return {m.target: (m.source, m.readonly) for m in p.mounts}


def test_a_worktree_that_is_the_work_dir_shows_its_git_file_at_work_too() -> None:
    mounts = _worktree_plan(WORK_DIR)
    assert mounts["/work/.git"] == ("/tmp/kasctl-x/dotgit", True)
    assert mounts["/repo/.git"] == ("/tmp/kasctl-x/dotgit", True)
    # a command that writes the repository may write its common dir too
    assert mounts["/repo-common"] == ("/src/main/.git", False)


def test_a_worktree_elsewhere_leaves_the_work_dirs_own_git_alone() -> None:
    assert "/work/.git" not in _worktree_plan(Path("/src/wt"))


# --------------------------------------------------------------------------
# a path an engine cannot mount: the error says which one and how to fix it
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "what", "path"),
    [
        ({"work_dir": Path("/home/kasci/a,b")}, "KAS_WORK_DIR", "/home/kasci/a,b"),
        ({"env": {"SSTATE_DIR": "/data/s,s"}}, "SSTATE_DIR", "/data/s,s"),
        (
            {
                "config": Config(
                    files=(ConfigFile(Path("/src/p,q/kas.yml"), {}),),
                    repo_dir=Path("/src/p,q"),
                    build_system=IR,
                )
            },
            "repository",
            "/src/p,q",
        ),
        (
            {
                "worktree": Worktree(common_dir=Path("/src/ma\nin/.git"), gitdir="worktrees/wt"),
                "worktree_gitfile": "/tmp/kasctl-x/dotgit",
            },
            "git common dir",
            "/src/ma\nin/.git",
        ),
    ],
    ids=["work-dir", "managed-dir", "repository", "worktree-common-dir"],
)
def test_an_unmountable_path_is_named_with_what_it_is(
    kw: dict[str, object], what: str, path: str
) -> None:
    with pytest.raises(UsageError) as info:
        make_plan(SD, IR, **kw)
    assert info.value.message == (
        f"{what} path {path!r} has a comma or a line break in its path, "
        "which container engines cannot mount"
    )
    assert info.value.fix and info.value.fix.startswith("rename or move it")


# --------------------------------------------------------------------------
# warnings: which /etc file, what to write there, what to run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [RP, RD], ids=lambda m: m.value)
@pytest.mark.parametrize(
    ("subuid", "subgid", "kind"),
    [
        (Range(100000, 900), Range(100000, 65536), "subuid"),
        (Range(100000, 65536), Range(100000, 900), "subgid"),
        (None, Range(100000, 900), "subgid"),  # each file is judged on its own
    ],
    ids=["subuid-small", "subgid-small", "no-subuid-subgid-small"],
)
def test_the_subid_warning_names_the_file_that_is_too_small(
    mode: EngineMode, subuid: Range | None, subgid: Range, kind: str
) -> None:
    host = replace(HOST, subuid=subuid, subgid=subgid)
    (warning,) = make_plan(mode, IR, host=host).warnings
    assert warning.startswith(f"/etc/{kind} gives kasci 900 ids, which leaves Isar 0:")


def test_the_subid_warning_says_how_many_ids_isar_gets_and_what_to_write() -> None:
    # 1501 sub-ids for uid 1001: builder's range is the 1000 ids below its own
    host = replace(HOST, subuid=Range(100000, 65536), subgid=Range(200000, 1501))
    (warning,) = make_plan(RP, IR, host=host).warnings
    assert "leaves Isar 1000:" in warning
    assert "(at least 1002)" in warning
    needed = HOST.uid + 65536
    assert f"kasci:200000:{needed} in /etc/subuid and /etc/subgid" in warning
    assert warning.endswith("then `podman system migrate`)")


def test_the_apparmor_warning_names_the_sysctl_and_both_fixes() -> None:
    restricted = replace(HOST, apparmor_restricts_userns=True)
    (warning,) = make_plan(RP, IR, host=restricted).warnings
    assert warning.startswith("this host restricts unprivileged user namespaces")
    assert "(kernel.apparmor_restrict_unprivileged_userns=1)" in warning
    assert "no rootlesskit AppArmor profile" in warning
    assert warning.endswith("install one that allows userns, or set the sysctl to 0")


def test_rootless_docker_keeps_the_users_id_by_the_uid_alone() -> None:
    """The nested keep-id namespace is for a non-root builder: its uid decides, not its gid."""
    RD = EngineMode.ROOTLESS_DOCKER
    in_root_group = plan(request(BuildSystem.ISAR_ROOTLESS), replace(HOST, gid=0), engine(RD))
    assert ("KASCTL_KEEP_ID", "1") in in_root_group.env and not in_root_group.init
    root_user = replace(HOST, uid=0, gid=1000)
    as_root = plan(request(BuildSystem.ISAR_ROOTLESS), root_user, engine(RD))
    assert "KASCTL_KEEP_ID" not in dict(as_root.env) and as_root.init
