"""Run-time flags that are not privileges, each shown needed by a run without it.

--log-driver=none: without it the engine keeps the build's whole output while
it runs (docker's json-file, podman's k8s-file: what `ENGINE logs` reads).
--kvm: /dev/kvm reaches the container and builder may open it, through the
device's group on a rootful engine; refused with its fix where builder could
not use it. The kvm tests change /dev/kvm's group and mode for their duration
(as root) and restore them.
"""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Project, Runner, make_project, make_runner

pytestmark = pytest.mark.e2e

MARK = "kasctl-log-driver-mark"
KVM = Path("/dev/kvm")
OPEN_KVM = "python3 -c \"import os; os.close(os.open('/dev/kvm', os.O_RDWR)); print('kvm-opened')\""


def _planned(runner: Runner, project: Project, *args: str) -> list[str]:
    dry = runner.kasctl(
        "shell",
        "--dry-run",
        "--json",
        *args,
        project.config,
        "-c",
        f"echo {MARK}; sleep 60",
        cwd=project.work,
    )
    assert dry.returncode == 0, dry.stderr
    argv: list[str] = json.loads(dry.stdout)["argv"]
    return argv


def _engine_logs_while_running(runner: Runner, argv: list[str], project: Project, tmp: Path) -> str:
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("--name="))
    log = tmp / f"{name}.out"
    proc = runner.spawn(argv, project.work, log)
    try:
        deadline = time.monotonic() + 120
        while MARK not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the container never printed its mark"
            time.sleep(0.2)
        logs = runner.run([runner.mode.engine, "logs", name], cwd=Path("/"))
        return logs.stdout + logs.stderr
    finally:
        runner.run([runner.mode.engine, "kill", name], cwd=Path("/"))
        proc.wait(timeout=60)


@pytest.mark.parametrize("mode", ["system-docker", "rootless-podman"])
def test_the_engine_keeps_no_build_output(
    mode: str, project_factory: list[Project], tmp_path: Path
) -> None:
    runner = make_runner(mode)
    project = make_project(runner)
    project_factory.append(project)
    argv = _planned(runner, project)
    assert "--log-driver=none" in argv

    assert MARK not in _engine_logs_while_running(runner, argv, project, tmp_path)

    argv.remove("--log-driver=none")
    assert MARK in _engine_logs_while_running(runner, argv, project, tmp_path), (
        "without the flag the engine stores the output"
    )


@pytest.fixture
def kvm_device() -> Iterator[None]:
    """/dev/kvm as found, restored after the test; skipped (failed in CI) where there is none."""
    if not KVM.is_char_device():
        if os.environ.get("CI") == "true":
            pytest.fail("/dev/kvm is missing on this CI machine")
        pytest.skip("no /dev/kvm")
    st = KVM.stat()
    try:
        grp.getgrnam("kvm")
    except KeyError:
        subprocess.run(["groupadd", "-r", "kvm"], check=True)
    try:
        yield
    finally:
        os.chown(KVM, st.st_uid, st.st_gid)
        KVM.chmod(stat.S_IMODE(st.st_mode))


def _set_kvm(mode: int) -> None:
    os.chown(KVM, 0, grp.getgrnam("kvm").gr_gid)
    KVM.chmod(mode)


def test_kvm_on_a_rootful_engine_through_the_device_group(
    kvm_device: None, project_factory: list[Project]
) -> None:
    _set_kvm(0o660)
    runner = make_runner("system-docker")
    project = make_project(runner)
    project_factory.append(project)

    used = runner.kasctl("--kvm", "shell", project.config, "-c", OPEN_KVM, cwd=project.work)
    assert used.returncode == 0 and "kvm-opened" in used.stdout

    without = runner.kasctl("shell", project.config, "-c", OPEN_KVM, cwd=project.work)
    assert without.returncode != 0 and "No such file" in without.stdout + without.stderr

    dry = runner.kasctl(
        "--kvm", "shell", "--dry-run", "--json", project.config, "-c", OPEN_KVM, cwd=project.work
    )
    argv: list[str] = json.loads(dry.stdout)["argv"]
    gid_env = next(a for a in argv if a.startswith("KASCTL_KVM_GID="))
    at = argv.index(gid_env)
    del argv[at - 1 : at + 1]
    no_group = runner.run(argv, cwd=project.work)
    assert no_group.returncode != 0
    assert "Permission denied" in no_group.stdout + no_group.stderr, "the group is what opens it"


def test_kvm_on_a_rootless_engine(kvm_device: None, project_factory: list[Project]) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner)
    project_factory.append(project)

    _set_kvm(0o660)
    refused = runner.kasctl("--kvm", "shell", project.config, "-c", OPEN_KVM, cwd=project.work)
    assert refused.returncode == 3
    assert "not open to every user" in refused.stderr and "chmod 0666" in refused.stderr

    _set_kvm(0o666)
    used = runner.kasctl("--kvm", "shell", project.config, "-c", OPEN_KVM, cwd=project.work)
    assert used.returncode == 0 and "kvm-opened" in used.stdout
