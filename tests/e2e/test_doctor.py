"""`kasctl doctor` on the real host, and host problems a build must explain up front.

The users kasnum (sub-id lines by numeric uid), kasnosub (no sub-ids) and
kasdef (the distributions' default 65536 sub-ids) come from
.ci/setup-engines.sh. Each problem case checks: one clear message
with a fix, the exit status, no traceback, and no container or build dir made.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .harness import IN_CI, Runner, engine_modes, kasctl_bin, make_project, make_runner, remove_tree

pytestmark = pytest.mark.e2e

MODES = ["rootless-podman", "rootful-podman", "system-docker", "rootless-docker"]


def other_user(name: str) -> Runner:
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        if IN_CI:
            pytest.fail(f"user {name} is missing: run .ci/setup-engines.sh")
        pytest.skip(f"user {name} is missing")
    return Runner(engine_modes()["rootless-podman"], user)


def assert_clean_error(result_stderr: str, *words: str) -> None:
    assert "Traceback" not in result_stderr
    assert "kasctl: error:" in result_stderr and "kasctl: fix:" in result_stderr
    for word in words:
        assert word in result_stderr


@pytest.mark.parametrize("mode", MODES)
def test_doctor_says_ready_in_every_mode(mode: str) -> None:
    runner = make_runner(mode)
    result = runner.kasctl("doctor", "--json", cwd=Path("/"))
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["mode"] == mode
    assert report["build_system"] == "isar-rootless"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["image"]["status"] == "ok"
    if mode == "rootless-podman":
        # podman's own map, read from the engine: kasci's 165536 sub-ids + its uid
        assert checks["engine id map"]["detail"].startswith("165537 uids")
        assert checks["/etc/subuid"]["status"] == "ok"
    plain = runner.kasctl("doctor", cwd=Path("/"))
    assert plain.returncode == 0 and plain.stdout.rstrip().endswith("kasctl doctor: ready")


def test_doctor_reads_the_build_system_from_the_config() -> None:
    runner = make_runner("system-docker")
    project = make_project(runner, fixture="oe-standin")
    try:
        result = runner.kasctl("doctor", "--json", project.config, cwd=project.work)
        assert result.returncode == 0
        assert json.loads(result.stdout)["build_system"] == "openembedded"
    finally:
        remove_tree(project.work)


def test_numeric_subid_lines_work() -> None:
    """kasnum's /etc/subuid line names it by uid; podman maps it and doctor finds it."""
    runner = other_user("kasnum")
    result = runner.kasctl("doctor", "--json", "--engine", "podman", cwd=Path("/"))
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["/etc/subuid"]["status"] == "ok", checks["/etc/subuid"]
    assert checks["/etc/subuid"]["detail"].startswith("kasnum:500000:165536")
    assert checks["engine id map"]["detail"].startswith("165537 uids")
    # the image is not in kasnum's store; everything else is ready
    assert result.returncode == 0


def test_the_default_range_builds_without_a_warning() -> None:
    """65536 sub-ids: Isar maps nobody/nogroup on its own; doctor says so, a build just works."""
    runner = other_user("kasdef")
    image = "localhost/kasctl/kas-isar:" + _version()
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
    loaded = subprocess.run(
        [
            "runuser",
            "-u",
            "kasdef",
            "--",
            "env",
            f"XDG_RUNTIME_DIR=/run/user/{runner.uid}",
            "podman",
            "load",
            "--quiet",
        ],
        input=saved,
        capture_output=True,
        cwd="/",
    )
    assert loaded.returncode == 0, loaded.stderr
    doctor = runner.kasctl("doctor", "--json", "--engine", "podman", cwd=Path("/"))
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    for name in ("/etc/subuid", "/etc/subgid"):
        assert checks[name]["status"] == "ok", checks[name]
        assert "on its own" in checks[name]["detail"]
    project = make_project(runner)
    try:
        result = runner.kasctl("build", project.config, cwd=project.work)
        assert result.returncode == 0
        assert "isar-standin: done (rootless)" in result.stderr
        assert "kasctl: WARNING" not in result.stderr
    finally:
        remove_tree(project.work)


def _version() -> str:
    out = subprocess.run([kasctl_bin(), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


def test_no_subid_range_is_explained_before_any_container() -> None:
    runner = other_user("kasnosub")
    doctor = runner.kasctl("doctor", "--engine", "podman", cwd=Path("/"))
    assert doctor.returncode == 1
    assert "fail  /etc/subuid: no range for kasnosub" in doctor.stdout
    assert "usermod --add-subuids" in doctor.stdout
    project = make_project(runner)
    try:
        for args in (["build", "--dry-run"], ["build"]):
            result = runner.kasctl(*args, project.config, cwd=project.work)
            assert result.returncode == 3
            assert_clean_error(result.stderr, "no range for kasnosub", "usermod --add-subuids")
        assert not project.build.exists(), "nothing may be created for a build that cannot run"
    finally:
        remove_tree(project.work)


def test_engine_daemon_down() -> None:
    runner = make_runner("rootless-docker")
    dead = {"DOCKER_HOST": f"unix:///run/user/{runner.uid}/no-such-docker.sock"}
    doctor = runner.kasctl("doctor", "--engine", "docker", cwd=Path("/"), extra_env=dead)
    assert doctor.returncode == 1 and "cannot reach its engine" in doctor.stdout
    project = make_project(runner, fixture="oe-standin")
    try:
        result = runner.kasctl("build", project.config, cwd=project.work, extra_env=dead)
        assert result.returncode == 3
        assert_clean_error(result.stderr, "cannot reach docker", "no-such-docker.sock")
        assert not project.build.exists()
    finally:
        remove_tree(project.work)


def test_no_engine_installed() -> None:
    """PATH holds kasctl and git, and no engine."""
    runner = make_runner("rootless-podman")
    project = make_project(runner, fixture="oe-standin")
    tools = Path(tempfile.mkdtemp(prefix="kasctl-path-"))
    tools.chmod(0o755)
    for tool in ("git", "env"):
        found = shutil.which(tool)
        assert found
        os.symlink(found, tools / tool)
    path = {"PATH": f"{Path(kasctl_bin()).parent}:{tools}"}
    try:
        for env in (path, {**path, "KAS_CONTAINER_ENGINE": ""}):
            result = runner.run(
                [kasctl_bin(), "build", project.config], project.work, extra_env=env
            )
            assert result.returncode == 3
            # named engine: "podman is not installed"; none named: "no container engine"
            assert_clean_error(result.stderr, "podman", "on PATH")
        doctor = runner.run([kasctl_bin(), "doctor"], Path("/"), extra_env=path)
        assert doctor.returncode == 1 and "fail" in doctor.stdout
        assert not project.build.exists()
    finally:
        shutil.rmtree(tools)
        remove_tree(project.work)


def test_named_image_missing() -> None:
    runner = make_runner("system-docker")
    project = make_project(runner, fixture="oe-standin")
    try:
        missing = {"KAS_CONTAINER_IMAGE": "localhost/kasctl/no-such-image:1"}
        result = runner.kasctl("build", project.config, cwd=project.work, extra_env=missing)
        assert result.returncode == 2
        assert_clean_error(result.stderr, "no-such-image:1 (KAS_CONTAINER_IMAGE) is not in")
    finally:
        remove_tree(project.work)


def test_image_missing_and_cannot_be_built() -> None:
    """kasnum's podman store holds no image and no base; no registry answers, and
    without mmdebstrap the base cannot be made: one message, exit 3."""
    runner = other_user("kasnum")
    project = make_project(runner, fixture="oe-standin")
    tools = Path(tempfile.mkdtemp(prefix="kasctl-path-"))
    tools.chmod(0o755)
    for tool in ("git", "env", "podman"):
        found = shutil.which(tool)
        assert found
        os.symlink(found, tools / tool)
    path = {"PATH": f"{Path(kasctl_bin()).parent}:{tools}"}
    try:
        result = runner.run([kasctl_bin(), "build", project.config], project.work, extra_env=path)
        assert result.returncode == 3
        assert "is missing; building it now" in result.stderr
        assert_clean_error(result.stderr, "cannot be bootstrapped: mmdebstrap is not installed")
    finally:
        shutil.rmtree(tools)
        remove_tree(project.work)
