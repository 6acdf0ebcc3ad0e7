"""What kasctl reads about the engine and the host: the engine's own `info`, and the
host's files below a root directory.

Written against mutants that survived the rest of the suite (tests/MUTATION.md):
rootless docker taken for system docker gets the wrong grants, and a docker
that cannot be reached must say which one and how to start it. The engines
here are stand-in scripts on PATH that answer `info` as the real ones do. The
host is a fake root in tmp_path (etc/subuid, etc/login.defs, proc/self/status,
...) and a fake invoking user (os.getuid, pwd), so that no test depends on the
machine it runs on.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from kasctl.build_system import BuildSystem
from kasctl.errors import HostError, UsageError
from kasctl.host import detect
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts, JobContainer, KvmDevice
from kasctl.inside.subids import Range

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


def _engine(
    bin_dir: Path,
    name: str,
    info: dict[str, Any] | None,
    stderr: str = "",
    inspect: tuple[str, str] | None = None,
) -> Path:
    """A stand-in engine: `NAME info --format {{json .}}` prints INFO, or fails with STDERR;
    with INSPECT (container id, mounts JSON), `inspect` of that container's mounts prints
    them and any other `inspect` fails (shell builtins only: PATH holds nothing but the
    stand-ins)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    log = bin_dir / f"{name}.args"
    if info is None:
        body = f"printf '%s\\n' {shlex.quote(stderr)} >&2\nexit 1\n"
    else:
        body = f"printf '%s\\n' {shlex.quote(json.dumps(info))}\n"
    if inspect is not None:
        cid, mounts = inspect
        asked = f"inspect --type container --format {{{{json .Mounts}}}} {cid}"
        body = (
            f'if [ "$1" = inspect ]; then\n  [ "$*" = "{asked}" ] || exit 1\n'
            f"  printf '%s\\n' {shlex.quote(mounts)}\n  exit 0\nfi\n{body}"
        )
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


def test_podman_behind_a_named_connection_is_asked(bin_dir: Path) -> None:
    log = _engine(bin_dir, "podman", ROOTLESS_PODMAN_INFO)
    facts = detect.engine_facts("podman", {"CONTAINER_CONNECTION": "build-host"})
    assert facts.mode is EngineMode.ROOTLESS_PODMAN and facts.version == "4.3.1"
    assert log.exists()


@pytest.mark.parametrize(
    ("uid", "mode"),
    [
        (0, EngineMode.ROOTFUL_PODMAN),
        (1, EngineMode.ROOTLESS_PODMAN),
        (1001, EngineMode.ROOTLESS_PODMAN),
    ],
)
def test_local_podman_is_not_asked_its_mode_follows_the_uid(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch, uid: int, mode: EngineMode
) -> None:
    log = _engine(bin_dir, "podman", ROOTLESS_PODMAN_INFO)
    monkeypatch.setattr(os, "getuid", lambda: uid)
    facts = detect.engine_facts("podman", {})
    assert facts == EngineFacts(mode=mode, binary=str(bin_dir / "podman"), version="", selinux=True)
    assert not log.exists()


def test_a_docker_that_cannot_be_reached_names_it_and_the_fix(bin_dir: Path) -> None:
    _engine(bin_dir, "docker", None, stderr="Cannot connect to the Docker daemon")
    with pytest.raises(HostError) as info:
        detect.engine_facts("docker", {"DOCKER_HOST": "unix:///run/user/1001/docker.sock"})
    assert info.value.message == (
        "cannot reach docker (unix:///run/user/1001/docker.sock): "
        "Cannot connect to the Docker daemon"
    )
    assert info.value.fix == (
        "start the engine (dockerd, or dockerd-rootless.sh with DOCKER_HOST) "
        "or choose the other one with --engine"
    )
    with pytest.raises(HostError, match=r"^cannot reach docker \(the docker daemon\): Cannot"):
        detect.engine_facts("docker", {})


def test_a_remote_podman_that_cannot_be_reached_names_podman(bin_dir: Path) -> None:
    _engine(bin_dir, "podman", None, stderr="Error: unable to connect to Podman socket")
    with pytest.raises(HostError) as info:
        detect.engine_facts("podman", {"CONTAINER_HOST": "ssh://u@h/run/podman.sock"})
    assert info.value.message == (
        "cannot reach podman (podman): Error: unable to connect to Podman socket"
    )


def test_a_missing_engine_is_a_host_error(bin_dir: Path) -> None:
    with pytest.raises(HostError, match="docker is not installed") as info:
        detect.engine_facts("docker", {})
    assert info.value.fix == "install docker"


def test_engine_choice_explicit_then_environment_then_what_is_installed(bin_dir: Path) -> None:
    ir, oe = BuildSystem.ISAR_ROOTLESS, BuildSystem.OPENEMBEDDED
    assert detect.choose_engine("docker", ir, {"KAS_CONTAINER_ENGINE": "podman"}) == "docker"
    assert detect.choose_engine(None, ir, {"KAS_CONTAINER_ENGINE": "docker"}) == "docker"
    assert detect.choose_engine(None, oe, {"KAS_DOCKER_ENGINE": "podman"}) == "podman"
    with pytest.raises(UsageError, match="unknown container engine 'lxc'") as usage:
        detect.choose_engine(None, oe, {"KAS_CONTAINER_ENGINE": "lxc"})
    assert usage.value.fix == "use docker or podman"
    with pytest.raises(HostError) as none:
        detect.choose_engine(None, oe, {})
    assert none.value.message == "no container engine found (neither podman nor docker is on PATH)"
    assert none.value.fix == "install podman (recommended for isar-rootless) or docker"
    _engine(bin_dir, "docker", {})
    _engine(bin_dir, "podman", {})
    assert detect.choose_engine(None, ir, {}) == "podman"
    assert detect.choose_engine(None, oe, {}) == "docker"
    (bin_dir / "podman").unlink()
    assert detect.choose_engine(None, ir, {}) == "docker"
    (bin_dir / "docker").unlink()
    _engine(bin_dir, "podman", {})
    assert detect.choose_engine(None, oe, {}) == "podman"


# --------------------------------------------------------------------------
# query_info: what the engine's `info` answers, or why there is no answer
# --------------------------------------------------------------------------

SLEEP = shutil.which("sleep")


def _standin(bin_dir: Path, name: str, body: str) -> str:
    """A stand-in engine running BODY (a sh script) whatever its arguments."""
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\n{body}")
    script.chmod(0o755)
    return str(script)


def test_info_is_the_json_the_engine_prints(bin_dir: Path) -> None:
    log = _engine(bin_dir, "docker", SYSTEM_DOCKER_INFO)
    assert detect.query_info(str(bin_dir / "docker")) == SYSTEM_DOCKER_INFO
    assert log.read_text() == "info --format {{json .}}\n"


def test_a_failing_info_gives_its_last_line_of_stderr(bin_dir: Path) -> None:
    _engine(bin_dir, "docker", None, stderr="WARNING: a warning\nError: permission denied\n")
    assert detect.query_info(str(bin_dir / "docker")) == "Error: permission denied"


def test_a_failing_info_that_says_nothing_says_no_output(bin_dir: Path) -> None:
    for stderr in ("", "  \n"):
        binary = _standin(bin_dir, "podman", f"printf '{stderr}' >&2\nexit 125\n")
        assert detect.query_info(binary) == "no output"


def test_info_never_reads_kasctls_stdin(bin_dir: Path, tmp_path: Path) -> None:
    """kasctl's stdin is the build's (an interactive shell's); the engine gets /dev/null."""
    binary = _standin(
        bin_dir,
        "docker",
        'if read -r line; then echo "read stdin: $line" >&2; exit 1; fi\n'
        f"printf '%s\\n' {shlex.quote(json.dumps(ROOTLESS_DOCKER_INFO))}\n",
    )
    typed = tmp_path / "typed"
    typed.write_text("the user's input\n")
    saved = os.dup(0)
    try:
        with typed.open() as f:
            os.dup2(f.fileno(), 0)
        assert detect.query_info(binary) == ROOTLESS_DOCKER_INFO
    finally:
        os.dup2(saved, 0)
        os.close(saved)


def test_an_engine_that_hangs_is_given_up_on_after_the_60_s_the_message_names(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock runs faster here: the 60 s timeout becomes 0.2 s, and must be there."""
    assert SLEEP, "sleep(1) is needed to stand for a hung engine"
    binary = _standin(bin_dir, "docker", f"exec {SLEEP} 30\n")
    asked: list[object] = []
    run = subprocess.run

    def faster(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        asked.append(kwargs["timeout"])
        return run(*args, **{**kwargs, "timeout": 0.2})

    monkeypatch.setattr(subprocess, "run", faster)
    assert detect.query_info(binary) == "no answer within 60 s"
    assert asked == [60]


# --------------------------------------------------------------------------
# missing_capabilities: the bounding set of /proc/self/status, by kernel name
# --------------------------------------------------------------------------

#: The kernel's capability numbers (include/uapi/linux/capability.h, append-only ABI).
KERNEL_CAPABILITIES = """
#define CAP_CHOWN            0
#define CAP_DAC_OVERRIDE     1
#define CAP_DAC_READ_SEARCH  2
#define CAP_FOWNER           3
#define CAP_FSETID           4
#define CAP_KILL             5
#define CAP_SETGID           6
#define CAP_SETUID           7
#define CAP_SETPCAP          8
#define CAP_LINUX_IMMUTABLE  9
#define CAP_NET_BIND_SERVICE 10
#define CAP_NET_BROADCAST    11
#define CAP_NET_ADMIN        12
#define CAP_NET_RAW          13
#define CAP_IPC_LOCK         14
#define CAP_IPC_OWNER        15
#define CAP_SYS_MODULE       16
#define CAP_SYS_RAWIO        17
#define CAP_SYS_CHROOT       18
#define CAP_SYS_PTRACE       19
#define CAP_SYS_PACCT        20
#define CAP_SYS_ADMIN        21
#define CAP_SYS_BOOT         22
#define CAP_SYS_NICE         23
#define CAP_SYS_RESOURCE     24
#define CAP_SYS_TIME         25
#define CAP_SYS_TTY_CONFIG   26
#define CAP_MKNOD            27
#define CAP_LEASE            28
#define CAP_AUDIT_WRITE      29
#define CAP_AUDIT_CONTROL    30
#define CAP_SETFCAP          31
#define CAP_MAC_OVERRIDE     32
#define CAP_MAC_ADMIN        33
#define CAP_SYSLOG           34
#define CAP_WAKE_ALARM       35
#define CAP_BLOCK_SUSPEND    36
#define CAP_AUDIT_READ       37
#define CAP_PERFMON          38
#define CAP_BPF              39
#define CAP_CHECKPOINT_RESTORE 40
"""
DEFINE = re.compile(r"^#define\s+CAP_([A-Z_]+)\s+(\d+)\s*$", re.MULTILINE)


def _kernel_names(header: str) -> dict[int, str]:
    return {int(bit): name for name, bit in DEFINE.findall(header)}


KERNEL_NAMES = _kernel_names(KERNEL_CAPABILITIES)
ALL_CAPS = (1 << 41) - 1


def _status(cap_bnd: int) -> str:
    """/proc/self/status as the kernel prints it, around the CapBnd line."""
    return (
        "Name:\tpython3\nUmask:\t0022\nState:\tR (running)\n"
        f"CapInh:\t0000000000000000\nCapPrm:\t{ALL_CAPS:016x}\nCapEff:\t{ALL_CAPS:016x}\n"
        f"CapBnd:\t{cap_bnd:016x}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    )


def test_the_embedded_capability_numbers_are_this_hosts_kernel_headers() -> None:
    header = Path("/usr/include/linux/capability.h")
    if not header.is_file():
        pytest.skip("no linux/capability.h (linux-libc-dev) to compare with")
    on_host = _kernel_names(header.read_text())
    assert {b: n for b, n in on_host.items() if b in KERNEL_NAMES} == KERNEL_NAMES


def test_a_bounding_set_lacking_one_capability_names_it_as_the_kernel_does() -> None:
    for bit, name in KERNEL_NAMES.items():
        assert detect.missing_capabilities(_status(ALL_CAPS & ~(1 << bit))) == (name,), bit


def test_a_full_bounding_set_lacks_nothing_and_newer_bits_are_no_loss() -> None:
    assert detect.missing_capabilities(_status(ALL_CAPS)) == ()
    assert detect.missing_capabilities(_status((1 << 64) - 1)) == ()


def test_missing_capabilities_come_in_bit_order_and_an_empty_set_lacks_all() -> None:
    lacking = ALL_CAPS & ~(1 << 21) & ~(1 << 24) & ~(1 << 0)
    assert detect.missing_capabilities(_status(lacking)) == ("CHOWN", "SYS_ADMIN", "SYS_RESOURCE")
    assert detect.missing_capabilities(_status(0)) == tuple(KERNEL_NAMES[b] for b in range(41))


def test_a_status_without_a_bounding_set_lacks_nothing() -> None:
    assert detect.missing_capabilities("") == ()
    assert detect.missing_capabilities("Name:\tx\nCapEff:\t0000000000000000\n") == ()


# --------------------------------------------------------------------------
# reserved_ids: every id a rootful build must not create files with
# --------------------------------------------------------------------------

#: Debian's login.defs values, which are also shadow's defaults for a missing key.
DEFAULT_RESERVED = (Range(0, 65536), Range(100000, 600065536))


def test_reserved_ids_without_login_defs_use_shadows_defaults() -> None:
    for kind in ("uid", "gid"):
        assert detect.reserved_ids([], (), {}, kind) == DEFAULT_RESERVED


def test_reserved_ids_read_the_login_defs_keys_of_their_own_kind() -> None:
    defs = {
        "UID_MIN": 70000,
        "UID_MAX": 80000,
        "SUB_UID_MIN": 700000000,
        "SUB_UID_MAX": 700100000,
        "SUB_UID_COUNT": 1000,
        "GID_MIN": 75000,
        "GID_MAX": 85000,
        "SUB_GID_MIN": 800000000,
        "SUB_GID_MAX": 800100000,
        "SUB_GID_COUNT": 2000,
    }
    assert detect.reserved_ids([], (), defs, "uid") == (
        Range(0, 65536),
        Range(70000, 10001),  # UID_MIN..UID_MAX, both ends included
        Range(700000000, 101000),  # SUB_UID_MIN..SUB_UID_MAX + SUB_UID_COUNT
    )
    assert detect.reserved_ids([], (), defs, "gid") == (
        Range(0, 65536),
        Range(75000, 10001),
        Range(800000000, 102000),
    )


def test_reserved_ids_with_only_a_high_uid_max_reserve_up_to_it() -> None:
    assert detect.reserved_ids([], (), {"UID_MAX": 90000}, "uid")[0] == Range(0, 90001)


# --------------------------------------------------------------------------
# host_facts: the invoking user and the host, from a fake root
# --------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str], links: dict[str, str] | None = None) -> str:
    """A fake host root: FILES (path below the root: text) and LINKS (path: target)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, target in (links or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return str(root)


def _as(monkeypatch: pytest.MonkeyPatch, uid: int, gid: int, entry: tuple[str, str] | None) -> None:
    """Run as UID/GID, whose passwd entry is ENTRY (name, home) or none at all."""
    monkeypatch.setattr(os, "getuid", lambda: uid)
    monkeypatch.setattr(os, "getgid", lambda: gid)

    def getpwuid(n: int) -> pwd.struct_passwd:
        if entry is None or n != uid:
            raise KeyError(f"getpwuid(): uid not found: {n}")
        return pwd.struct_passwd((entry[0], "x", uid, gid, "", entry[1], "/bin/sh"))

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)


@pytest.fixture
def terminal() -> Iterator[IO[str]]:
    """A real terminal (the slave side of a pty), to stand for stdin or stdout."""
    master, slave = os.openpty()
    try:
        with open(slave, "w") as tty:
            yield tty
    finally:
        os.close(master)


@pytest.fixture
def no_terminal() -> Iterator[IO[str]]:
    with open(os.devnull) as f:
        yield f


@pytest.fixture
def kasctl_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="kasctl")
    return caplog


LOGIN_DEFS = """\
# /etc/login.defs - Configuration control definitions for the login package.
MAIL_DIR        /var/mail
PASS_MAX_DAYS\t99999
UID_MIN\t\t\t 2000
UID_MAX\t\t\t70000
GID_MIN\t\t\t 3000
GID_MAX\t\t\t80000
SUB_UID_MIN\t\t   700000000
SUB_UID_MAX\t\t700100000
SUB_UID_COUNT\t\t     1000
SUB_GID_MIN\t\t   800000000
SUB_GID_MAX\t\t800100000
SUB_GID_COUNT\t\t     2000
UMASK\t\t022 but three fields
"""
PASSWD = """\
root:x:0:0:root:/root:/bin/bash
builder:x:1001:1002::/home/builder:/bin/bash
far:x:90000:90000::/home/far:/bin/sh
short:x:90002
noid:x:notanumber:0::/:/bin/sh
super:x:\u00b2:0::/:/bin/sh
nocolons

"""
GROUP = "root:x:0:\nbuilder:x:1002:\nfar:x:95000:\n"
PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
}
A_HOST = {
    "etc/subuid": "# comment\nother:100000:65536\nbuilder:165536:65536\nbuilder:900000:10\n",
    "etc/subgid": "1001:300000:70000\n",
    "etc/login.defs": LOGIN_DEFS,
    "etc/passwd": PASSWD,
    "etc/group": GROUP,
    "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
    "etc/apparmor.d/rootlesskit": "# rootlesskit profile\n",
    "usr/share/containers/seccomp.json": json.dumps(PROFILE),
    "proc/self/status": _status(ALL_CAPS & ~(1 << 24)),
    "sys/fs/selinux/enforce": "1",
}
A_HOSTS_LINKS = {"etc/localtime": "/usr/share/zoneinfo/Europe/Berlin", "dev/kvm": "/dev/null"}


def test_host_facts_read_every_fact_from_below_the_root(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    terminal: IO[str],
    no_terminal: IO[str],
    kasctl_log: pytest.LogCaptureFixture,
) -> None:
    root = _tree(tmp_path / "root", A_HOST, A_HOSTS_LINKS)
    _as(monkeypatch, 1001, 1002, ("builder", "/home/builder"))
    monkeypatch.setenv("SUDO_UID", "1000")  # only root's own sudo_uid is read
    monkeypatch.setenv("SUDO_GID", "1000")
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stdin", no_terminal)

    facts = detect.host_facts(root)

    profile = f"{root}/usr/share/containers/seccomp.json"
    assert facts == HostFacts(
        uid=1001,
        gid=1002,
        user="builder",
        home="/home/builder",
        subuid=Range(165536, 65536),  # the first line naming the user
        subgid=Range(300000, 70000),  # by uid number
        reserved_uids=(
            Range(0, 70001),  # 0..65535 and UID_MIN..UID_MAX
            Range(90000, 1),  # passwd's far
            Range(90002, 1),  # and short (three fields are enough)
            Range(100000, 131072),  # every subuid line, the user's or not
            Range(900000, 10),
            Range(700000000, 101000),  # SUB_UID_MIN..SUB_UID_MAX + SUB_UID_COUNT
        ),
        reserved_gids=(
            Range(0, 80001),
            Range(95000, 1),  # group's far
            Range(300000, 70000),
            Range(800000000, 102000),
        ),
        stdout_tty=True,
        stdin_tty=False,
        apparmor_restricts_userns=True,
        apparmor_rootlesskit_profile=True,
        podman_seccomp_profile=profile,
        uts_seccomp_profile=facts.uts_seccomp_profile,  # below, by what it holds
        uts_seccomp_problem="",
        missing_caps=("SYS_RESOURCE",),
        localtime="/usr/share/zoneinfo/Europe/Berlin",
        sudo_uid=None,
        sudo_gid=None,
        hostname=socket.gethostname(),
        selinux_enforcing=True,
        kvm=KvmDevice(gid=os.stat("/dev/null").st_gid, mode=0o666),
    )
    assert [(e.owner, e.range) for e in facts.system.subuid] == [
        ("other", Range(100000, 65536)),
        ("builder", Range(165536, 65536)),
        ("builder", Range(900000, 10)),
    ]
    uts = Path(str(facts.uts_seccomp_profile))
    assert uts.parent == Path(os.environ["XDG_CACHE_HOME"]) / "kasctl" / "seccomp"
    rules = json.loads(uts.read_text())["syscalls"]
    assert {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"} in rules
    assert any(
        r["names"] == ["sethostname", "setdomainname"] and r["action"] == "SCMP_ACT_ALLOW"
        for r in rules
    )
    assert kasctl_log.records == []


def test_an_empty_root_gives_shadows_defaults_and_no_features(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    terminal: IO[str],
    no_terminal: IO[str],
    kasctl_log: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _as(monkeypatch, 4321, 4322, None)  # e.g. an LDAP user nss cannot resolve
    monkeypatch.setenv("HOME", "/home/ldap-user")
    monkeypatch.setattr(sys, "stdout", no_terminal)
    monkeypatch.setattr(sys, "stdin", terminal)

    facts = detect.host_facts(str(root))

    assert facts == HostFacts(
        uid=4321,
        gid=4322,
        user="4321",
        home="/home/ldap-user",
        reserved_uids=DEFAULT_RESERVED,
        reserved_gids=DEFAULT_RESERVED,
        stdin_tty=True,
        hostname=socket.gethostname(),
    )
    assert facts.system.subuid == ()
    assert kasctl_log.records == []

    monkeypatch.delenv("HOME")
    assert detect.host_facts(str(root)).home == "/"


def test_the_users_sub_ids_may_be_listed_under_the_uid_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(
        tmp_path / "root",
        {"etc/subuid": "1001:500000:65536\n", "etc/subgid": "builder:600000:65536\n"},
    )
    _as(monkeypatch, 1001, 1001, ("builder", "/home/builder"))
    facts = detect.host_facts(root)
    assert (facts.subuid, facts.subgid) == (Range(500000, 65536), Range(600000, 65536))


def test_root_through_sudo_names_the_invoking_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "root", {"etc/passwd": PASSWD})
    _as(monkeypatch, 0, 0, ("root", "/root"))
    monkeypatch.setenv("SUDO_UID", "1000")
    monkeypatch.setenv("SUDO_GID", "1001")
    facts = detect.host_facts(root)
    assert (facts.user, facts.home) == ("root", "/root")
    assert (facts.sudo_uid, facts.sudo_gid) == (1000, 1001)

    monkeypatch.setenv("SUDO_UID", "nobody")
    monkeypatch.delenv("SUDO_GID")
    facts = detect.host_facts(root)
    assert (facts.sudo_uid, facts.sudo_gid) == (None, None)


def test_switches_that_read_0_and_plain_files_where_links_or_devices_belong_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(
        tmp_path / "root",
        {
            "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "0\n",
            "sys/fs/selinux/enforce": "0",
            "etc/localtime": "TZif2 (a copied zone file, not a link)",
            "dev/kvm": "",
        },
        {"usr/share/containers/seccomp.json": "/nonexistent/seccomp.json"},
    )
    _as(monkeypatch, 1001, 1001, ("builder", "/home/builder"))
    facts = detect.host_facts(root)
    assert not facts.apparmor_restricts_userns
    assert not facts.selinux_enforcing
    assert facts.localtime is None
    assert facts.kvm is None
    assert facts.podman_seccomp_profile is None  # a dangling link is no profile
    assert facts.uts_seccomp_profile is None and facts.uts_seccomp_problem == ""


def test_a_malformed_subuid_file_is_ignored_with_a_warning_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kasctl_log: pytest.LogCaptureFixture,
) -> None:
    root = _tree(
        tmp_path / "root",
        {"etc/subuid": "builder:100000\n", "etc/subgid": "builder:165536:65536\n"},
    )
    _as(monkeypatch, 1001, 1001, ("builder", "/home/builder"))
    facts = detect.host_facts(root)
    assert facts.subuid is None and facts.system.subuid == ()
    assert facts.reserved_uids == DEFAULT_RESERVED
    assert facts.subgid == Range(165536, 65536)
    (record,) = kasctl_log.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"{root}/etc/subuid: line 1 is not NAME:START:COUNT: 'builder:100000' "
        "(ignored; run `kasctl doctor`)"
    )


def test_a_podman_profile_kasctl_cannot_read_says_why_and_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "root", {"usr/share/containers/seccomp.json": "{not json"})
    _as(monkeypatch, 1001, 1001, ("builder", "/home/builder"))
    facts = detect.host_facts(root)
    profile = f"{root}/usr/share/containers/seccomp.json"
    assert facts.podman_seccomp_profile == profile
    assert facts.uts_seccomp_profile is None
    assert facts.uts_seccomp_problem.startswith(
        f"{profile} is not a seccomp profile kasctl can read ("
    )
    assert facts.uts_seccomp_problem.endswith(
        "; fix: reinstall containers-common (Debian 12: golang-github-containers-common)"
    )


def test_no_cache_for_the_derived_profile_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tree(tmp_path / "root", {"usr/share/containers/seccomp.json": json.dumps(PROFILE)})
    _as(monkeypatch, 1001, 1001, ("builder", "/home/builder"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "relative/home")
    facts = detect.host_facts(root)
    assert facts.uts_seccomp_profile is None
    assert facts.uts_seccomp_problem.startswith("no directory to keep the derived seccomp")
    assert facts.uts_seccomp_problem.endswith(
        "; fix: set HOME or XDG_CACHE_HOME to your own writable directory"
    )


def test_a_profile_gone_before_it_is_read_is_a_problem_without_a_fix(tmp_path: Path) -> None:
    gone = tmp_path / "seccomp.json"  # it was there when host_facts looked
    assert detect._uts_profile(str(gone)) == (
        None,
        f"cannot read the seccomp profile {gone}: No such file or directory",
    )
    assert detect._uts_profile(None) == (None, "")


def test_kvm_device_gives_the_group_and_permission_bits_of_a_character_device(
    tmp_path: Path,
) -> None:
    assert detect.kvm_device("/dev/null") == KvmDevice(gid=os.stat("/dev/null").st_gid, mode=0o666)
    (tmp_path / "kvm").write_text("")
    assert detect.kvm_device(str(tmp_path / "kvm")) is None
    assert detect.kvm_device(str(tmp_path / "missing")) is None


def test_host_facts_without_a_root_read_this_host() -> None:
    assert detect.host_facts() == detect.host_facts("/")


# --------------------------------------------------- the CI job container kasctl runs in

JOB_CID = "c0ffee" + "1" * 58
JOB_MOUNTS = '[{"Destination":"/builds/g/p","Source":"/srv/builds/g/p"}]'


def _job_engine(bin_dir: Path, name: str, info: dict[str, Any] | None) -> Path:
    """A stand-in engine that also answers `inspect` of JOB_CID's mounts (and nothing else)."""
    return _engine(bin_dir, name, info, inspect=(JOB_CID, JOB_MOUNTS))


@pytest.mark.parametrize(
    ("kind", "info"), [("podman", None), ("docker", SYSTEM_DOCKER_INFO)], ids=["podman", "docker"]
)
def test_in_a_job_container_the_engine_is_asked_for_its_mounts(
    bin_dir: Path, tmp_path: Path, kind: str, info: dict[str, Any] | None
) -> None:
    _job_engine(bin_dir, kind, info)
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    facts = detect.engine_facts(kind, {}, work, JOB_CID)  # type: ignore[arg-type]
    st = work.stat()
    assert facts.job == JobContainer(
        id=JOB_CID,
        mounts=(("/builds/g/p", "/srv/builds/g/p"),),
        work_owner=(st.st_uid, st.st_gid),
        work_open=True,
    )
    assert detect.engine_facts(kind, {}, work, None).job is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "open_to_all"), [(0o777, True), (0o773, True), (0o771, False), (0o776, False)]
)
def test_a_work_dir_is_open_when_others_may_create_entries(
    bin_dir: Path, tmp_path: Path, mode: int, open_to_all: bool
) -> None:
    """Creating an entry takes write and search permission on the directory."""
    _job_engine(bin_dir, "docker", SYSTEM_DOCKER_INFO)
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(mode)
    job = detect.job_container(str(bin_dir / "docker"), JOB_CID, work)
    work.chmod(0o755)
    assert job.work_open is open_to_all


def test_without_a_work_dir_or_an_answer_the_job_container_is_known_by_its_id(
    bin_dir: Path, tmp_path: Path
) -> None:
    _job_engine(bin_dir, "docker", SYSTEM_DOCKER_INFO)
    docker = str(bin_dir / "docker")
    answered = (("/builds/g/p", "/srv/builds/g/p"),)
    assert detect.job_container(docker, JOB_CID, None) == JobContainer(JOB_CID, answered)
    assert detect.job_container(docker, JOB_CID, tmp_path / "gone").work_owner is None
    other = "d" * 64  # the engine does not run it: no account of its mounts
    assert detect.job_container(docker, other, None) == JobContainer(id=other, mounts=None)
