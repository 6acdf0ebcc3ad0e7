"""kasctl.decide.plan.plan() and kasctl.engine.engines.render(): the engine x build-system matrix.

plan() is pure, so every cell is checked here without an engine: which
privileges each cell gets (the least that work, per MACHINE-NOTES), where
the repository and kas's directories are mounted, and what reaches the
container's environment. render() must put all of it on the command line.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest

from kasctl.build_system import BuildSystem
from kasctl.config.files import ConfigFile
from kasctl.config.read import Config
from kasctl.decide.plan import Mount, Request, RunPlan, plan
from kasctl.engine.engines import render
from kasctl.engine.image import ENTRYPOINT
from kasctl.errors import HostError, UsageError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts
from kasctl.input.commands import COMMANDS
from kasctl.inside.subids import Range

SECCOMP = "/usr/share/containers/seccomp.json"
UTS_SECCOMP = "/home/kasci/.cache/kasctl/seccomp/podman-uts-0123456789abcdef.json"
WORK_DIR = Path("/home/kasci/work")
REPO_DIR = Path("/src/proj")

HOST = HostFacts(
    uid=1001,
    gid=1001,
    user="kasci",
    home="/home/kasci",
    podman_seccomp_profile=SECCOMP,
    uts_seccomp_profile=UTS_SECCOMP,
    reserved_uids=(Range(0, 65536),),
    reserved_gids=(Range(0, 65536),),
)

MODES = [m for m in EngineMode if m.engine]  # the engine matrix; pods: test_kubernetes
SYSTEMS = list(BuildSystem)
CELLS = list(itertools.product(MODES, SYSTEMS))


def cell_id(cell: object) -> str:
    return cell.value if isinstance(cell, EngineMode | BuildSystem) else str(cell)


def engine(mode: EngineMode, **kw: object) -> EngineFacts:
    binary = "/usr/bin/podman" if mode.kind == "podman" else "/usr/bin/docker"
    return EngineFacts(mode=mode, binary=binary, version="x", **kw)  # type: ignore[arg-type]


def config(build_system: BuildSystem, *names: str) -> Config:
    files = tuple(
        ConfigFile(path=REPO_DIR / name, data={"header": {"version": 14}})
        for name in (names or ("kas.yml",))
    )
    return Config(files=files, repo_dir=REPO_DIR, build_system=build_system)


def request(build_system: BuildSystem, **kw: object) -> Request:
    values: dict[str, object] = {
        "command": "build",
        "build_system": build_system,
        "work_dir": WORK_DIR,
        "image": "localhost/kasctl/kas-isar:test",
        "name": "kasctl-unit",
        "config": config(build_system),
    }
    values.update(kw)
    return Request(**values)  # type: ignore[arg-type]


def make_plan(
    mode: EngineMode, build_system: BuildSystem, host: HostFacts = HOST, **kw: object
) -> RunPlan:
    return plan(request(build_system, **kw), host, engine(mode))


def flags(p: RunPlan) -> set[str]:
    return {g.flag for g in p.grants}


# --------------------------------------------------------------------------
# privileges per cell
# --------------------------------------------------------------------------

KEEP_ID = "--userns=keep-id"
AS_ROOT = "--user=root"
SYS_ADMIN = "--cap-add=SYS_ADMIN"
UNMASK = "--security-opt=unmask=ALL"
SYSTEMPATHS = "--security-opt=systempaths=unconfined"
PODMAN_SECCOMP = f"--security-opt=seccomp={SECCOMP}"
UTS = f"--security-opt=seccomp={UTS_SECCOMP}"
PRIVILEGED = "--privileged"

RP, FP, SD, RD = (
    EngineMode.ROOTLESS_PODMAN,
    EngineMode.ROOTFUL_PODMAN,
    EngineMode.SYSTEM_DOCKER,
    EngineMode.ROOTLESS_DOCKER,
)
OE, IP, IR = BuildSystem.OPENEMBEDDED, BuildSystem.ISAR_PRIVILEGED, BuildSystem.ISAR_ROOTLESS

#: The whole matrix: grants, the mode the container really runs in, the executor.
#: --user=root on rootless podman: keep-id would start the entrypoint as the host
#: user, and it must start as (namespaced) root (privileges.AS_ROOT).
MATRIX: dict[tuple[EngineMode, BuildSystem], tuple[set[str], EngineMode, tuple[str, ...]]] = {
    (RP, OE): ({KEEP_ID, AS_ROOT}, RP, ()),
    (FP, OE): (set(), FP, ()),
    (SD, OE): (set(), SD, ()),
    # the entrypoint nests a keep-id namespace: Docker's default profile refuses unshare
    (RD, OE): ({PODMAN_SECCOMP}, RD, ()),
    (RP, IP): ({PRIVILEGED}, FP, ("sudo", "--preserve-env")),
    (FP, IP): ({PRIVILEGED}, FP, ("sudo", "--preserve-env")),
    (SD, IP): ({PRIVILEGED}, SD, ()),
    # the environment is kept, but DOCKER_HOST must not lead back to the rootless daemon
    (RD, IP): (
        {PRIVILEGED},
        SD,
        ("sudo", "--preserve-env", "env", "-u", "DOCKER_HOST", "-u", "DOCKER_CONTEXT"),
    ),
    (RP, IR): ({KEEP_ID, AS_ROOT, SYS_ADMIN, UNMASK}, RP, ()),
    (FP, IR): ({SYS_ADMIN, UNMASK}, FP, ()),
    (SD, IR): ({SYS_ADMIN, SYSTEMPATHS, PODMAN_SECCOMP}, SD, ()),
    # no SYS_ADMIN: the entrypoint's nested keep-id namespace has a full bounding set;
    # sbuild's sethostname is allowed by the profile instead of by the capability
    (RD, IR): ({SYSTEMPATHS, UTS}, RD, ()),
}


def test_matrix_is_complete() -> None:
    assert set(MATRIX) == set(CELLS)


@pytest.mark.parametrize(("mode", "build_system"), CELLS, ids=cell_id)
def test_cell_grants_mode_and_executor(mode: EngineMode, build_system: BuildSystem) -> None:
    grants, real_mode, executor = MATRIX[mode, build_system]
    p = make_plan(mode, build_system)
    assert flags(p) == grants
    assert len(p.grants) == len(grants)  # no flag twice
    assert p.mode is real_mode
    assert p.executor == executor


@pytest.mark.parametrize(("mode", "build_system"), CELLS, ids=cell_id)
def test_every_grant_has_a_reason(mode: EngineMode, build_system: BuildSystem) -> None:
    for p in (
        make_plan(mode, build_system),
        plan(
            request(build_system),
            replace(HOST, apparmor_restricts_userns=True, apparmor_rootlesskit_profile=True),
            engine(mode, apparmor=True),
        ),
    ):
        for grant in p.grants:
            assert grant.reason.strip(), grant.flag


@pytest.mark.parametrize("mode", MODES, ids=cell_id)
def test_isar_rootless_is_never_privileged_nor_unconfined(mode: EngineMode) -> None:
    argv = render(make_plan(mode, IR))
    assert PRIVILEGED not in argv
    assert not any("seccomp=unconfined" in a for a in argv)
    assert not any(a.startswith("--cap-add") and a != SYS_ADMIN for a in argv)


@pytest.mark.parametrize("mode", MODES, ids=cell_id)
def test_openembedded_needs_no_capabilities(mode: EngineMode) -> None:
    p = make_plan(mode, OE)
    assert not any(f.startswith(("--cap-add", "--privileged")) for f in flags(p))
    assert not any("unconfined" in f or "unmask" in f for f in flags(p))
    if mode is RP:
        assert KEEP_ID in flags(p)


@pytest.mark.parametrize("mode", [SD, RD], ids=cell_id)
def test_privileged_docker_is_refused_where_the_host_lacks_a_capability(mode: EngineMode) -> None:
    host = replace(HOST, missing_caps=("SYS_RESOURCE",))
    with pytest.raises(HostError) as info:
        make_plan(mode, IP, host=host)
    assert "CAP_SYS_RESOURCE" in info.value.message
    assert info.value.fix and "podman" in info.value.fix
    make_plan(mode, IR, host=host)  # the rootless cells are not affected


def test_privileged_podman_works_where_the_host_lacks_a_capability() -> None:
    host = replace(HOST, missing_caps=("SYS_RESOURCE",))
    assert PRIVILEGED in flags(make_plan(FP, IP, host=host))


@pytest.mark.parametrize("mode", [SD, RD], ids=cell_id)
def test_docker_isar_rootless_without_podman_seccomp_profile(mode: EngineMode) -> None:
    host = replace(HOST, podman_seccomp_profile=None)
    with pytest.raises(HostError) as info:
        make_plan(mode, IR, host=host)
    assert info.value.fix and "containers-common" in info.value.fix
    assert info.value.exit_code == 3


def test_rootless_docker_isar_rootless_says_why_the_uts_profile_is_missing() -> None:
    host = replace(HOST, uts_seccomp_profile=None, uts_seccomp_problem="cannot write X")
    with pytest.raises(HostError) as info:
        make_plan(RD, IR, host=host)
    assert "cannot write X" in info.value.message
    assert info.value.exit_code == 3


@pytest.mark.parametrize("mode", [RP, FP], ids=cell_id)
def test_podman_isar_rootless_needs_no_seccomp_profile(mode: EngineMode) -> None:
    p = make_plan(mode, IR, host=replace(HOST, podman_seccomp_profile=None))
    assert not any("seccomp" in f for f in flags(p))


@pytest.mark.parametrize(
    ("sudo_cmd", "uid", "executor"),
    [
        ("sudo", 1001, ("sudo", "--preserve-env")),
        ("doas", 1001, ("doas", "--preserve-env")),
        ("run0", 1001, ("run0",)),
        ("sudo", 0, ()),  # already root: no executor
    ],
)
def test_isar_privileged_executor_on_rootless_podman(
    sudo_cmd: str, uid: int, executor: tuple[str, ...]
) -> None:
    p = make_plan(RP, IP, host=replace(HOST, uid=uid), sudo_cmd=sudo_cmd)
    assert p.mode is FP
    assert p.executor == executor
    assert render(p)[: len(executor) + 2] == [*executor, "/usr/bin/podman", "run"]


def test_docker_isar_rootless_with_apparmor_adds_unconfined_apparmor() -> None:
    p = plan(request(IR), HOST, engine(SD, apparmor=True))
    assert "--security-opt=apparmor=unconfined" in flags(p)


@pytest.mark.parametrize("mode", [SD, RD], ids=cell_id)
def test_docker_isar_rootless_names_at_most_one_apparmor_profile(mode: EngineMode) -> None:
    host = replace(HOST, apparmor_restricts_userns=True, apparmor_rootlesskit_profile=True)
    p = plan(request(IR), host, engine(mode, apparmor=True))
    assert len([f for f in flags(p) if "apparmor=" in f]) <= 1


# --------------------------------------------------------------------------
# sub-id avoid lists: only where the container shares the host's ids
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=cell_id)
def test_avoid_lists_only_for_rootful_isar_rootless(mode: EngineMode) -> None:
    host = replace(
        HOST,
        reserved_uids=(Range(0, 65536), Range(100000, 600065536)),
        reserved_gids=(Range(0, 70000),),
    )
    env = dict(make_plan(mode, IR, host=host).env)
    if mode.rootless:
        assert "KASCTL_AVOID_UIDS" not in env and "KASCTL_AVOID_GIDS" not in env
    else:
        assert env["KASCTL_AVOID_UIDS"] == "0:65536,100000:600065536"
        assert env["KASCTL_AVOID_GIDS"] == "0:70000"


# --------------------------------------------------------------------------
# builder's ids: keep-id on rootless docker, SUDO_UID through sudo
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "build_system"), CELLS, ids=cell_id)
def test_rootless_docker_nests_keep_id_instead_of_engine_init(
    mode: EngineMode, build_system: BuildSystem
) -> None:
    p = make_plan(mode, build_system)
    env = dict(p.env)
    # isar-privileged leaves rootless docker for system docker: no nesting there
    nests = p.mode is RD
    assert (env.get("KASCTL_KEEP_ID") == "1") == nests
    assert p.init is not nests
    assert (env["USER_ID"], env["GROUP_ID"]) == ("1001", "1001")


@pytest.mark.parametrize(
    ("uid", "gid", "sudo_uid", "sudo_gid", "expected"),
    [
        (1001, 1002, None, None, ("1001", "1002")),
        (0, 0, 1001, 1002, ("1001", "1002")),  # through sudo: the user behind it
        (0, 0, None, None, ("0", "0")),  # really root (KAS_ALLOW_ROOT=yes)
    ],
)
def test_builder_ids(
    uid: int, gid: int, sudo_uid: int | None, sudo_gid: int | None, expected: tuple[str, str]
) -> None:
    host = replace(HOST, uid=uid, gid=gid, sudo_uid=sudo_uid, sudo_gid=sudo_gid)
    env = dict(make_plan(RD, OE, host=host).env)
    assert (env["USER_ID"], env["GROUP_ID"]) == expected
    # root keeps root: nothing to nest
    assert ("KASCTL_KEEP_ID" in env) == (expected[0] != "0")


# --------------------------------------------------------------------------
# mounts, environment, command
# --------------------------------------------------------------------------


def repo_mount(p: RunPlan) -> Mount:
    (mount,) = [m for m in p.mounts if m.target == "/repo"]
    return mount


@pytest.mark.parametrize(
    ("command", "repo_rw", "readonly"),
    [
        ("build", None, True),
        ("clean", None, True),
        ("checkout", None, True),
        ("shell", None, False),
        ("lock", None, False),
        ("build", True, False),
        ("shell", False, True),
    ],
)
def test_repo_mount_mode(command: str, repo_rw: bool | None, readonly: bool) -> None:
    spec = COMMANDS[command]
    p = make_plan(SD, IR, command=command, repo_rw=repo_rw, writes_repo=spec.writes_repo)
    assert repo_mount(p) == Mount(str(REPO_DIR), "/repo", readonly)


def test_config_files_are_passed_below_the_repo_mount() -> None:
    cfg = config(IR, "kas.yml", "sub/extra.yml")
    assert cfg.container_paths("/repo") == ["/repo/kas.yml", "/repo/sub/extra.yml"]
    args = ("--update", "/repo/kas.yml:/repo/sub/extra.yml")
    p = make_plan(SD, IR, config=cfg, kas_args=args, bitbake_args=("-c", "fetch"))
    assert p.workdir == "/repo"
    assert p.command == ("build", *args, "--", "-c", "fetch")


def test_diff_mounts_the_second_repository_at_repo2() -> None:
    first = config(IR, "a.yml")
    second = Config(
        files=(ConfigFile(path=Path("/src/other/b.yml"), data={}),),
        repo_dir=Path("/src/other"),
        build_system=IR,
    )
    p = make_plan(SD, IR, command="diff", config=first, config2=second)
    targets = {m.target: m.source for m in p.mounts}
    assert targets["/repo"] == str(REPO_DIR)
    assert targets["/repo2"] == "/src/other"


@pytest.mark.parametrize("build_system", [IP, IR])
def test_clean_commands_are_told_the_isar_mode(build_system: BuildSystem) -> None:
    p = make_plan(SD, build_system, command="clean", cleans=True, config=None)
    assert p.command == ("clean", f"--{build_system.value}")
    assert make_plan(SD, OE, command="clean", cleans=True, config=None).command == ("clean",)


def test_without_config_no_repo_mount() -> None:
    p = make_plan(SD, OE, config=None, command="menu")
    assert [m.target for m in p.mounts] == ["/work"]
    assert p.workdir == "/work"
    assert p.command == ("menu",)


def test_work_dir_mount_and_builder_ids() -> None:
    p = make_plan(RP, IR)
    assert Mount(str(WORK_DIR), "/work") in p.mounts
    env = dict(p.env)
    assert env["KAS_WORK_DIR"] == "/work"
    assert (env["USER_ID"], env["GROUP_ID"]) == ("1001", "1001")
    assert env["KASCTL_BUILD_SYSTEM"] == "isar-rootless"


@pytest.mark.parametrize(
    ("var", "target"),
    [
        ("KAS_BUILD_DIR", "/build"),
        ("DL_DIR", "/downloads"),
        ("SSTATE_DIR", "/sstate"),
        ("KAS_BUILDTOOLS_DIR", "/buildtools"),
        ("KAS_REPO_REF_DIR", "/repo-ref"),
    ],
)
def test_managed_dir_outside_work_dir_is_mounted(var: str, target: str) -> None:
    p = make_plan(SD, IR, env={var: "/data/cache/x"})
    assert Mount("/data/cache/x", target) in p.mounts
    assert (var, target) in p.env


@pytest.mark.parametrize(
    ("value", "inside"),
    [
        (f"{WORK_DIR}/build", "/work/build"),
        (f"{WORK_DIR}/a/b/", "/work/a/b"),
        (f"{WORK_DIR}/x/../build", "/work/build"),
        (str(WORK_DIR), "/work"),
        (f"{WORK_DIR}/.cache", "/work/.cache"),
        pytest.param(
            f"{WORK_DIR}/build.",
            "/work/build.",
        ),
    ],
)
def test_managed_dir_inside_work_dir_is_not_mounted(value: str, inside: str) -> None:
    p = make_plan(SD, IR, env={"KAS_BUILD_DIR": value})
    assert not any(m.target == "/build" for m in p.mounts)
    assert [m.target for m in p.mounts] == ["/work", "/repo"]
    assert ("KAS_BUILD_DIR", inside) in p.env


@pytest.mark.parametrize("bad", [",", "\n"])
@pytest.mark.parametrize("where", ["work_dir", "repo", "managed"])
def test_paths_engines_cannot_mount_are_usage_errors(bad: str, where: str) -> None:
    kw: dict[str, object] = {}
    if where == "work_dir":
        kw["work_dir"] = Path(f"/home/kasci/wo{bad}rk")
    elif where == "repo":
        kw["config"] = replace(
            config(IR),
            repo_dir=Path(f"/src/pr{bad}oj"),
            files=(ConfigFile(Path(f"/src/pr{bad}oj/kas.yml"), {}),),
        )
    else:
        kw["env"] = {"SSTATE_DIR": f"/data/ss{bad}tate"}
    with pytest.raises(UsageError) as info:
        make_plan(SD, IR, **kw)
    assert info.value.exit_code == 2
    assert info.value.fix


def test_passthrough_and_proxy_variables() -> None:
    env = {
        "TERM": "xterm",
        "KAS_MACHINE": "qemuarm64",
        "https_proxy": "http://proxy:3128",
        "HOME": "/home/kasci",
        "SECRET_TOKEN": "x",
        "BB_NUMBER_THREADS": "",
    }
    with_proxies = dict(make_plan(SD, IR, env=env).env)
    assert with_proxies["TERM"] == "xterm"
    assert with_proxies["KAS_MACHINE"] == "qemuarm64"
    assert with_proxies["https_proxy"] == "http://proxy:3128"
    assert "HOME" not in with_proxies and "SECRET_TOKEN" not in with_proxies
    assert "BB_NUMBER_THREADS" not in with_proxies  # empty means unset
    without = dict(make_plan(SD, IR, env=env, proxies_from_env=False).env)
    assert "https_proxy" not in without and without["TERM"] == "xterm"


@pytest.mark.parametrize(
    ("stdout_tty", "stdin_tty", "tty", "interactive"),
    [
        (False, False, False, False),
        (True, False, False, False),
        (False, True, False, True),
        (True, True, True, True),
    ],
)
def test_tty_needs_both_ends(
    stdout_tty: bool, stdin_tty: bool, tty: bool, interactive: bool
) -> None:
    p = make_plan(SD, IR, host=replace(HOST, stdout_tty=stdout_tty, stdin_tty=stdin_tty))
    assert (p.tty, p.interactive) == (tty, interactive)
    argv = render(p)
    assert ("-t" in argv) == tty
    assert ("-i" in argv) == interactive


def test_plan_is_deterministic() -> None:
    assert make_plan(RP, IR) == make_plan(RP, IR)


# --------------------------------------------------------------------------
# render: the command line the engines run
# --------------------------------------------------------------------------


def env_pairs(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-e"]


@pytest.mark.parametrize(("mode", "build_system"), CELLS, ids=cell_id)
def test_render_holds_the_whole_plan(mode: EngineMode, build_system: BuildSystem) -> None:
    p = make_plan(
        mode,
        build_system,
        env={"TERM": "xterm", "DL_DIR": "/data/dl"},
        runtime_args=("--network=host",),
    )
    argv = render(p)
    head = [*p.executor, p.binary, "run"]
    assert argv[: len(head)] == head
    assert "--rm" in argv
    # the engine's init, except where the entrypoint must be PID 1 itself
    assert ("--init" in argv) == p.init
    assert f"--name={p.name}" in argv
    for grant in p.grants:
        assert grant.flag in argv
    assert env_pairs(argv) == [f"{k}={v}" for k, v in p.env]
    assert "-e" not in argv[argv.index(p.image) :]
    tail = [p.image, *p.entrypoint[1:], *p.command]
    assert argv[-len(tail) :] == tail
    # isar-rootless names kasctl's entrypoint, last before the image (after the runtime args)
    forced = [a for a in argv if a.startswith("--entrypoint")]
    if build_system is BuildSystem.ISAR_ROOTLESS:
        assert forced == ["--entrypoint=/usr/bin/python3"]
        assert argv[argv.index(p.image) - 1] == forced[0]
        assert p.entrypoint[1:] == ("-I", "/usr/lib/kasctl/entrypoint.py")
    else:
        assert forced == []
        assert p.entrypoint == ()
    assert argv.index("--network=host") < argv.index(p.image)
    assert "--workdir=/repo" in argv
    assert "-t" not in argv

    ro = ",readonly" if p.mode.kind == "docker" else ",ro=true"
    assert f"--mount=type=bind,source={REPO_DIR},target=/repo{ro}" in argv
    assert f"--mount=type=bind,source={WORK_DIR},target=/work" in argv
    assert "--mount=type=bind,source=/data/dl,target=/downloads" in argv
    # every mount flag is rendered, and nothing else names a bind source
    assert len([a for a in argv if a.startswith("--mount=")]) == len(p.mounts)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (SD, f"--mount=type=bind,source={REPO_DIR},target=/repo,readonly"),
        (RD, f"--mount=type=bind,source={REPO_DIR},target=/repo,readonly"),
        (RP, f"--mount=type=bind,source={REPO_DIR},target=/repo,ro=true"),
        (FP, f"--mount=type=bind,source={REPO_DIR},target=/repo,ro=true"),
    ],
    ids=cell_id,
)
def test_render_readonly_spelling(mode: EngineMode, expected: str) -> None:
    argv = render(make_plan(mode, IR))
    assert expected in argv


def test_render_shell_repo_is_writable() -> None:
    argv = render(make_plan(RP, IR, command="shell", writes_repo=True))
    assert f"--mount=type=bind,source={REPO_DIR},target=/repo" in argv


@pytest.mark.parametrize("mode", [RP, RD], ids=cell_id)
def test_the_distributions_default_range_gets_no_warning(mode: EngineMode) -> None:
    """65536 sub-ids leave nobody/nogroup to Isar's own mapping, and the build works."""
    default = replace(HOST, subuid=Range(100000, 65536), subgid=Range(100000, 65536))
    assert make_plan(mode, IR, host=default).warnings == ()


@pytest.mark.parametrize("mode", [RP, RD], ids=cell_id)
def test_one_warning_when_the_range_is_too_small_to_work(mode: EngineMode) -> None:
    tiny = replace(HOST, subuid=Range(100000, 65536), subgid=Range(100000, 900))
    warnings = make_plan(mode, IR, host=tiny).warnings
    assert len(warnings) == 1
    assert "/etc/subgid" in warnings[0] and str(HOST.uid + 65536) in warnings[0]
    roomy = replace(HOST, subuid=Range(100000, 165536), subgid=Range(100000, 165536))
    assert make_plan(mode, IR, host=roomy).warnings == ()


def test_no_subid_warning_where_the_engine_maps_no_user_namespace() -> None:
    small = replace(HOST, subuid=Range(100000, 500), subgid=Range(100000, 500))
    assert make_plan(SD, IR, host=small).warnings == ()
    assert make_plan(RP, OE, host=small).warnings == ()


@pytest.mark.parametrize("mode", MODES, ids=cell_id)
def test_warns_when_apparmor_restricts_userns_without_rootlesskit(mode: EngineMode) -> None:
    restricted = replace(HOST, apparmor_restricts_userns=True)
    assert any("apparmor_restrict" in w for w in make_plan(mode, IR, host=restricted).warnings)
    with_profile = replace(restricted, apparmor_rootlesskit_profile=True)
    assert not any("apparmor" in w for w in make_plan(mode, IR, host=with_profile).warnings)
    assert not any("apparmor" in w for w in make_plan(mode, OE, host=restricted).warnings)


def test_worktree_gets_its_common_dir_and_a_rewritten_dot_git(tmp_path: Path) -> None:
    from kasctl.config.repo import worktree_of
    from kasctl.decide.plan import worktree_gitfile_text

    main = tmp_path / "main"
    (main / ".git" / "worktrees" / "wt").mkdir(parents=True)
    (main / ".git" / "worktrees" / "wt" / "commondir").write_text("../..\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {main}/.git/worktrees/wt\n")

    tree = worktree_of(wt)
    assert tree is not None
    assert tree.common_dir == main / ".git"
    assert worktree_gitfile_text(tree) == "gitdir: /repo-common/worktrees/wt\n"
    assert worktree_of(main) is None  # a plain repository

    cfg = Config(files=(ConfigFile(path=wt / "kas.yml", data={}),), repo_dir=wt, build_system=OE)
    p = make_plan(SD, OE, config=cfg, worktree=tree, worktree_gitfile="/tmp/x/dotgit")
    targets = {m.target: (m.source, m.readonly) for m in p.mounts}
    assert targets["/repo-common"] == (str(main / ".git"), True)
    assert targets["/repo/.git"] == ("/tmp/x/dotgit", True)


def test_isar_rootless_starts_the_entrypoint_the_image_names() -> None:
    """The forced entrypoint is exactly the Dockerfile's ENTRYPOINT, split for --entrypoint."""
    dockerfile = Path(__file__).resolve().parent.parent.parent / "Dockerfile"
    lines = [line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT")]
    assert len(lines) == 1
    assert tuple(json.loads(lines[0].removeprefix("ENTRYPOINT"))) == ENTRYPOINT
    p = make_plan(RP, IR, runtime_args=("--entrypoint=/bin/sh",))
    argv = render(p)
    # the user's --runtime-args come first, so kasctl's --entrypoint is the one the engine takes
    assert argv.index("--entrypoint=/bin/sh") < argv.index(f"--entrypoint={ENTRYPOINT[0]}")
    assert argv[argv.index(p.image) :] == [p.image, *ENTRYPOINT[1:], *p.command]
