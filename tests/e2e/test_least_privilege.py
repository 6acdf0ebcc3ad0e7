"""Every flag kasctl grants is needed: drop one and the stand-in build fails, for its reason.

Each case takes the exact engine command kasctl would run (`--dry-run
--json`), removes one flag, runs it as the same user, and expects the error
the kernel or the tool gives where that flag matters (newuidmap's EPERM,
"Mount too revealing", bubblewrap's pivot_root refusal, ...), not only the
name of a step, which a failure for another reason (a network error, say)
would print too. Next to them, a control runs each cell's full command and
must succeed. A further test checks that the table covers every flag kasctl
grants in every cell, so a new flag cannot arrive without its drop-one case.
Where a grant has two halves (the rootless-docker profile: pivot_root and
sethostname; the rootfs's own proc mount next to unshare's --mount-proc;
the executor that reaches the rootful engine), each half is shown alone.
AppArmor's grants (apparmor=unconfined, apparmor=rootlesskit) cannot be
shown here: these machines have no AppArmor; unit tests cover when they are
granted.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from kasctl.host.detect import missing_capabilities

from .harness import Project, make_project, make_runner

pytestmark = pytest.mark.e2e

SECCOMP = "--security-opt=seccomp=/usr/share/containers/seccomp.json"
#: kasctl's derived profile (podman's + sethostname/setdomainname, kasctl.host.seccomp),
#: kept in the user's cache: matched by its name, not its full path.
UTS_SECCOMP = "--security-opt=seccomp=*/podman-uts-*.json"
OE, PRIV, ROOTLESS = "openembedded", "isar-privileged", "isar-rootless"
#: The kernel's and the tools' own words for each missing privilege.
NO_PROC = "unshare: mount /proc failed: Operation not permitted"
ROOTFS_PROC = "rootfs/proc: fsmount() failed: VFS: Mount too revealing"
NO_NEST = "cannot create the builder's user namespace (Operation not permitted)"
NO_UID_MAP = "newuidmap: write to uid_map failed: Operation not permitted"
NO_PIVOT_ROOT = "bwrap: pivot_root: Operation not permitted"
NO_LOOP = "failed to setup loop device"
NOT_THE_OWNER = "Permission denied: '/work/build'"
HOST_LACKS_CAPS = bool(missing_capabilities(Path("/proc/self/status").read_text()))

#: (engine mode, build system, flag) -> what the output says without that flag.
DROP_ONE = {
    ("rootless-podman", OE, "--userns=keep-id"): NOT_THE_OWNER,
    ("rootless-podman", OE, "--user=root"): "the entrypoint must start as root",
    ("rootless-docker", OE, SECCOMP): NO_NEST,
    ("rootless-podman", PRIV, "--privileged"): NO_LOOP,
    ("rootful-podman", PRIV, "--privileged"): NO_LOOP,
    ("rootless-podman", ROOTLESS, "--userns=keep-id"): NOT_THE_OWNER,
    ("rootless-podman", ROOTLESS, "--user=root"): "the entrypoint must start as root",
    ("rootless-podman", ROOTLESS, "--cap-add=SYS_ADMIN"): NO_UID_MAP,
    ("rootless-podman", ROOTLESS, "--security-opt=unmask=ALL"): NO_PROC,
    ("rootful-podman", ROOTLESS, "--cap-add=SYS_ADMIN"): NO_UID_MAP,
    ("rootful-podman", ROOTLESS, "--security-opt=unmask=ALL"): NO_PROC,
    ("system-docker", ROOTLESS, "--cap-add=SYS_ADMIN"): NO_UID_MAP,
    ("system-docker", ROOTLESS, "--security-opt=systempaths=unconfined"): NO_PROC,
    ("system-docker", ROOTLESS, SECCOMP): NO_PIVOT_ROOT,
    ("rootless-docker", ROOTLESS, "--security-opt=systempaths=unconfined"): NO_PROC,
    ("rootless-docker", ROOTLESS, UTS_SECCOMP): NO_NEST,
}
if not HOST_LACKS_CAPS:  # docker --privileged cannot start where the host lacks a capability
    DROP_ONE[("system-docker", PRIV, "--privileged")] = NO_LOOP
    DROP_ONE[("rootless-docker", PRIV, "--privileged")] = NO_LOOP

CELLS = sorted(
    {(mode, bs) for mode, bs, _ in DROP_ONE}
    | {(m, bs) for m in ("rootful-podman", "system-docker") for bs in (OE,)}
)


def _key(flag: str) -> str:
    """A granted flag as DROP_ONE names it."""
    return UTS_SECCOMP if fnmatch.fnmatchcase(flag, UTS_SECCOMP) else flag


def _planned(
    mode: str, build_system: str, made: list[Project], extra_conf: str = ""
) -> tuple[list[str], dict, Project]:
    runner = make_runner(mode)
    if build_system == OE:
        project = make_project(runner, fixture="oe-standin")
    else:
        project = make_project(runner, build_system=build_system, extra_conf=extra_conf)
    made.append(project)
    dry = runner.kasctl("build", "--dry-run", "--json", project.config, cwd=project.work)
    assert dry.returncode == 0
    data = json.loads(dry.stdout)
    return data["argv"], data["plan"], project


@pytest.mark.parametrize(("mode", "build_system"), CELLS)
def test_every_granted_flag_has_a_drop_one_case(
    mode: str, build_system: str, project_factory: list[Project]
) -> None:
    _, plan, _ = _planned(mode, build_system, project_factory)
    granted = {_key(g["flag"]) for g in plan["grants"]}
    covered = {flag for m, bs, flag in DROP_ONE if (m, bs) == (mode, build_system)}
    assert granted == covered


@pytest.mark.parametrize(("mode", "build_system", "flag"), sorted(DROP_ONE))
def test_build_fails_without_the_flag(
    mode: str, build_system: str, flag: str, project_factory: list[Project]
) -> None:
    argv, _, project = _planned(mode, build_system, project_factory)
    (given,) = [a for a in argv if _key(a) == flag]
    argv.remove(given)

    result = make_runner(mode).run(argv, cwd=project.work)

    assert result.returncode != 0
    assert DROP_ONE[(mode, build_system, flag)] in result.stdout + result.stderr


def test_rootless_docker_package_build_needs_the_uts_rule(project_factory: list[Project]) -> None:
    """The sethostname half of the rootless-docker profile: a package build, with and without.

    The same command with podman's plain profile in place of kasctl's derived
    one fails where sbuild names its build's UTS namespace.
    """
    argv, _, project = _planned(
        "rootless-docker", ROOTLESS, project_factory, extra_conf='STANDIN_PACKAGE = "1"'
    )
    runner = make_runner("rootless-docker")
    (derived,) = [a for a in argv if _key(a) == UTS_SECCOMP]

    control = runner.run(argv, cwd=project.work)
    assert control.returncode == 0
    assert "isar-standin: done (rootless)" in control.stderr + control.stdout

    argv[argv.index(derived)] = SECCOMP
    result = runner.run(argv, cwd=project.work)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "hostname: you must be root to change the host name" in out
    assert "isar-standin: FAILED: sbuild --chroot-mode=unshare" in out


DONE = {
    OE: "oe-standin: done",
    PRIV: "isar-standin: done (privileged)",
    ROOTLESS: "isar-standin: done (rootless)",
}


@pytest.mark.parametrize(("mode", "build_system"), CELLS)
def test_control_the_full_command_builds(
    mode: str, build_system: str, project_factory: list[Project]
) -> None:
    """The command the drop-one cases start from succeeds as it is."""
    argv, _, project = _planned(mode, build_system, project_factory)

    result = make_runner(mode).run(argv, cwd=project.work)

    assert result.returncode == 0
    assert DONE[build_system] in result.stdout + result.stderr


PROC_FLAG = {
    "rootless-podman": "--security-opt=unmask=ALL",
    "rootful-podman": "--security-opt=unmask=ALL",
    "system-docker": "--security-opt=systempaths=unconfined",
    "rootless-docker": "--security-opt=systempaths=unconfined",
}


@pytest.mark.parametrize("mode", sorted(PROC_FLAG))
def test_the_rootfs_proc_mount_needs_the_unmasked_proc_too(
    mode: str, project_factory: list[Project]
) -> None:
    """Without unshare's --mount-proc, Isar's own proc mount into the rootfs is refused."""
    argv, _, project = _planned(
        mode, ROOTLESS, project_factory, extra_conf='STANDIN_NO_MOUNT_PROC = "1"'
    )
    runner = make_runner(mode)
    control = runner.run(argv, cwd=project.work)
    assert control.returncode == 0, "the build without --mount-proc works with the flag"

    argv.remove(PROC_FLAG[mode])
    result = runner.run(argv, cwd=project.work)

    assert result.returncode != 0
    assert ROOTFS_PROC in result.stdout + result.stderr


def test_rootless_docker_profile_pivot_root_half(
    project_factory: list[Project], tmp_path: Path
) -> None:
    """kasctl's rootless-docker profile with only pivot_root refused: bubblewrap fails."""
    argv, _, project = _planned("rootless-docker", ROOTLESS, project_factory)
    (derived,) = [a for a in argv if _key(a) == UTS_SECCOMP]
    profile = json.loads(Path(derived.split("=", 2)[2]).read_text())
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "pivot_root"]
    profile["syscalls"].append({"names": ["pivot_root"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    without = project.work / "no-pivot-root.json"
    without.write_text(json.dumps(profile))
    without.chmod(0o644)
    argv[argv.index(derived)] = f"--security-opt=seccomp={without}"

    result = make_runner("rootless-docker").run(argv, cwd=project.work)

    assert result.returncode != 0
    assert NO_PIVOT_ROOT in result.stdout + result.stderr


def test_the_privileged_executor_is_needed(project_factory: list[Project]) -> None:
    """isar-privileged on rootless podman: without `sudo --preserve-env` the container is
    the user's rootless one, where the builder does not even own the work dir (and no loop
    device could be set up)."""
    argv, _, project = _planned("rootless-podman", PRIV, project_factory)
    assert argv[:2] == ["sudo", "--preserve-env"]

    result = make_runner("rootless-podman").run(argv[2:], cwd=project.work)

    assert result.returncode != 0
    assert NOT_THE_OWNER in result.stdout + result.stderr
