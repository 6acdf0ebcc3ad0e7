"""How kasctl tells the engine's mode: from what the engine's own `info` says.

Written against mutants that survived the rest of the suite (tests/MUTATION.md):
rootless docker taken for system docker gets the wrong grants, and a docker
that cannot be reached must say which one and how to start it. The engines
here are stand-in scripts on PATH that answer `info` as the real ones do.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest

from kasctl.build_system import BuildSystem
from kasctl.errors import HostError, UsageError
from kasctl.host import detect
from kasctl.host.facts import EngineMode

#: `docker info --format '{{json .}}'` of dockerd-rootless.sh on Debian 12 (abridged).
ROOTLESS_DOCKER_INFO: dict[str, Any] = {
    "ServerVersion": "20.10.24+dfsg1",
    "SecurityOptions": ["name=seccomp,profile=builtin", "name=rootless", "name=cgroupns"],
}
#: The same of the system dockerd, on a host with AppArmor and SELinux labelling.
SYSTEM_DOCKER_INFO: dict[str, Any] = {
    "ServerVersion": "26.1.5",
    "SecurityOptions": [
        "name=apparmor",
        "name=seccomp,profile=builtin",
        "name=selinux",
        "name=cgroupns",
    ],
}
#: `podman info --format '{{json .}}'` (abridged), rootless, AppArmor on.
ROOTLESS_PODMAN_INFO: dict[str, Any] = {
    "host": {"security": {"rootless": True, "apparmorEnabled": True}},
    "version": {"Version": "4.3.1"},
}


def test_docker_info_naming_rootless_is_rootless_docker() -> None:
    assert detect.mode_from_info("docker", ROOTLESS_DOCKER_INFO) == (
        EngineMode.ROOTLESS_DOCKER,
        "20.10.24+dfsg1",
        False,
    )


def test_docker_info_without_rootless_is_system_docker_and_names_apparmor() -> None:
    assert detect.mode_from_info("docker", SYSTEM_DOCKER_INFO) == (
        EngineMode.SYSTEM_DOCKER,
        "26.1.5",
        True,
    )


def test_docker_info_with_no_security_options_is_system_docker() -> None:
    for info in ({}, {"SecurityOptions": None}):
        assert detect.mode_from_info("docker", info) == (EngineMode.SYSTEM_DOCKER, "", False)


def test_podman_info_says_rootless_and_apparmor_itself() -> None:
    assert detect.mode_from_info("podman", ROOTLESS_PODMAN_INFO) == (
        EngineMode.ROOTLESS_PODMAN,
        "4.3.1",
        True,
    )
    rootful = {"host": {"security": {"rootless": False}}, "version": {"Version": "5.0"}}
    assert detect.mode_from_info("podman", rootful) == (EngineMode.ROOTFUL_PODMAN, "5.0", False)
    assert detect.mode_from_info("podman", {}) == (EngineMode.ROOTFUL_PODMAN, "", False)


def _engine(bin_dir: Path, name: str, info: dict[str, Any] | None, stderr: str = "") -> Path:
    """A stand-in engine: `NAME info --format {{json .}}` prints INFO, or fails with STDERR
    (shell builtins only: PATH holds nothing but the stand-ins)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    log = bin_dir / f"{name}.args"
    if info is None:
        body = f"printf '%s\\n' {shlex.quote(stderr)} >&2\nexit 1\n"
    else:
        body = f"printf '%s\\n' {shlex.quote(json.dumps(info))}\n"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >>{log}\n{body}')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", str(d))
    return d


def test_rootless_docker_behind_docker_host_is_rootless_docker(bin_dir: Path) -> None:
    log = _engine(bin_dir, "docker", ROOTLESS_DOCKER_INFO)
    env = {"DOCKER_HOST": "unix:///run/user/1001/docker.sock"}
    facts = detect.engine_facts("docker", env)
    assert facts.mode is EngineMode.ROOTLESS_DOCKER
    assert facts.binary == str(bin_dir / "docker")
    assert facts.version == "20.10.24+dfsg1"
    assert facts.endpoint == "unix:///run/user/1001/docker.sock"
    assert not facts.apparmor and not facts.selinux
    assert log.read_text() == "info --format {{json .}}\n"


def test_system_docker_with_apparmor_and_selinux_says_so(bin_dir: Path) -> None:
    _engine(bin_dir, "docker", SYSTEM_DOCKER_INFO)
    facts = detect.engine_facts("docker", {})
    assert facts.mode is EngineMode.SYSTEM_DOCKER
    assert facts.apparmor and facts.selinux
    assert facts.endpoint is None


def test_remote_podman_is_asked_and_its_endpoint_is_not_dockers(bin_dir: Path) -> None:
    log = _engine(bin_dir, "podman", ROOTLESS_PODMAN_INFO)
    facts = detect.engine_facts(
        "podman", {"CONTAINER_HOST": "ssh://u@h/run/podman.sock", "DOCKER_HOST": "tcp://x:2375"}
    )
    assert facts.mode is EngineMode.ROOTLESS_PODMAN
    assert facts.version == "4.3.1" and facts.apparmor
    assert facts.endpoint is None
    assert facts.selinux  # podman labels whenever the host enforces
    assert log.exists()


def test_local_podman_is_not_asked_its_mode_follows_the_uid(bin_dir: Path) -> None:
    log = _engine(bin_dir, "podman", ROOTLESS_PODMAN_INFO)
    facts = detect.engine_facts("podman", {})
    want = EngineMode.ROOTFUL_PODMAN if os.getuid() == 0 else EngineMode.ROOTLESS_PODMAN
    assert facts.mode is want
    assert facts.selinux
    assert not log.exists()


def test_a_docker_that_cannot_be_reached_names_it_and_the_fix(bin_dir: Path) -> None:
    _engine(bin_dir, "docker", None, stderr="Cannot connect to the Docker daemon")
    with pytest.raises(HostError) as info:
        detect.engine_facts("docker", {"DOCKER_HOST": "unix:///run/user/1001/docker.sock"})
    assert info.value.message == (
        "cannot reach docker (unix:///run/user/1001/docker.sock): "
        "Cannot connect to the Docker daemon"
    )
    assert info.value.fix and "dockerd-rootless.sh" in info.value.fix
    with pytest.raises(HostError, match=r"^cannot reach docker \(the docker daemon\): Cannot"):
        detect.engine_facts("docker", {})


def test_a_missing_engine_is_a_host_error(bin_dir: Path) -> None:
    with pytest.raises(HostError, match="docker is not installed") as info:
        detect.engine_facts("docker", {})
    assert info.value.fix == "install docker"


def test_engine_choice_explicit_then_environment_then_what_is_installed(bin_dir: Path) -> None:
    ir, oe = BuildSystem.ISAR_ROOTLESS, BuildSystem.OPENEMBEDDED
    assert detect.choose_engine("docker", ir, {"KAS_CONTAINER_ENGINE": "podman"}) == "docker"
    assert detect.choose_engine(None, ir, {"KAS_CONTAINER_ENGINE": "docker"}) == "docker"
    assert detect.choose_engine(None, oe, {"KAS_DOCKER_ENGINE": "podman"}) == "podman"
    with pytest.raises(UsageError, match="unknown container engine 'lxc'"):
        detect.choose_engine(None, oe, {"KAS_CONTAINER_ENGINE": "lxc"})
    with pytest.raises(HostError, match="no container engine found"):
        detect.choose_engine(None, oe, {})
    _engine(bin_dir, "docker", {})
    _engine(bin_dir, "podman", {})
    assert detect.choose_engine(None, ir, {}) == "podman"
    assert detect.choose_engine(None, oe, {}) == "docker"
    (bin_dir / "podman").unlink()
    assert detect.choose_engine(None, ir, {}) == "docker"
