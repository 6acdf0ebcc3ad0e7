"""Every flag kasctl grants is needed: drop one and the stand-in build fails.

Each case takes the exact engine command kasctl would run (`--dry-run
--json`), removes one flag, runs it as the same user, and expects the
stand-in (or the entrypoint, or the engine) to fail where that flag matters.
A second test checks that this table covers every flag kasctl grants in
every cell, so a new flag cannot arrive without its drop-one case.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest

from kasctl.detect import missing_capabilities

from .harness import Project, make_project, make_runner

pytestmark = pytest.mark.e2e

SECCOMP = "--security-opt=seccomp=/usr/share/containers/seccomp.json"
#: kasctl's derived profile (podman's + sethostname/setdomainname, kasctl.seccomp),
#: kept in the user's cache: matched by its name, not its full path.
UTS_SECCOMP = "--security-opt=seccomp=*/podman-uts-*.json"
OE, PRIV, ROOTLESS = "openembedded", "isar-privileged", "isar-rootless"
NO_PROC = "unshare: mount /proc failed"
NO_NEST = "cannot create the builder's user namespace"
NO_LOOP = "isar-standin: FAILED: sudo mount -o loop"
HOST_LACKS_CAPS = bool(missing_capabilities(Path("/proc/self/status").read_text()))

#: (engine mode, build system, flag) -> what the output says without that flag.
DROP_ONE = {
    ("rootless-podman", OE, "--userns=keep-id"): "Permission denied: '/work/build'",
    ("rootless-podman", OE, "--user=root"): "the entrypoint must start as root",
    ("rootless-docker", OE, SECCOMP): NO_NEST,
    ("rootless-podman", PRIV, "--privileged"): NO_LOOP,
    ("rootful-podman", PRIV, "--privileged"): NO_LOOP,
    ("rootless-podman", ROOTLESS, "--userns=keep-id"): "Permission denied: '/work/build'",
    ("rootless-podman", ROOTLESS, "--user=root"): "the entrypoint must start as root",
    ("rootless-podman", ROOTLESS, "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("rootless-podman", ROOTLESS, "--security-opt=unmask=ALL"): NO_PROC,
    ("rootful-podman", ROOTLESS, "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("rootful-podman", ROOTLESS, "--security-opt=unmask=ALL"): NO_PROC,
    ("system-docker", ROOTLESS, "--cap-add=SYS_ADMIN"): "isar-standin: FAILED: mmdebstrap",
    ("system-docker", ROOTLESS, "--security-opt=systempaths=unconfined"): NO_PROC,
    ("system-docker", ROOTLESS, SECCOMP): "isar-standin: FAILED: bubblewrap",
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
