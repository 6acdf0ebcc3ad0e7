"""Gathering host and engine facts: the only module of the planning path with side effects.

Each fact is read once per run and handed on in frozen dataclasses.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kasctl.config import BuildSystem
from kasctl.errors import HostError, UsageError
from kasctl.host.facts import EngineFacts, EngineKind, EngineMode, HostFacts, KvmDevice
from kasctl.inside.subids import Range, SubidEntry, is_number, merge, parse_subid_file, range_for

log = logging.getLogger("kasctl")

PODMAN_SECCOMP = "/usr/share/containers/seccomp.json"
#: Capability names by bit number (linux/capability.h), to read CapBnd.
CAPABILITIES = (
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
)


def missing_capabilities(status: str) -> tuple[str, ...]:
    """Capabilities absent from this process's bounding set (/proc/self/status text)."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return tuple(n for bit, n in enumerate(CAPABILITIES) if not mask >> bit & 1)
    return ()


#: ids below this are system and ordinary users by convention (and 65534 is nobody).
CONVENTIONAL_IDS = Range(0, 65536)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _login_defs(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and is_number(fields[1]):
            values[fields[0]] = int(fields[1])
    return values


def reserved_ids(
    db_ids: list[int], sub_entries: tuple[SubidEntry, ...], defs: Mapping[str, int], kind: str
) -> tuple[Range, ...]:
    """Host ids a rootful container's build must not create files with.

    Existing users or groups, every sub-id range, the conventional id range
    below 65536, and where useradd allocates ids and sub-ids in the future
    (login.defs), so a user added later does not inherit build files.
    """
    upper = "UID" if kind == "uid" else "GID"
    ranges = [CONVENTIONAL_IDS, *(Range(i, 1) for i in db_ids)]
    ranges += [e.range for e in sub_entries]
    lo, hi = defs.get(f"{upper}_MIN", 1000), defs.get(f"{upper}_MAX", 60000)
    ranges.append(Range(lo, hi - lo + 1))
    sub_lo = defs.get(f"SUB_{upper}_MIN", 100000)
    sub_hi = defs.get(f"SUB_{upper}_MAX", 600100000) + defs.get(f"SUB_{upper}_COUNT", 65536)
    ranges.append(Range(sub_lo, sub_hi - sub_lo))
    return tuple(merge(ranges))


def _subids(path: str) -> tuple[SubidEntry, ...]:
    try:
        return parse_subid_file(_read(path))
    except HostError as exc:
        log.warning("%s: %s (ignored; run `kasctl doctor`)", path, exc.message)
        return ()


def host_facts() -> HostFacts:
    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        user, home = entry.pw_name, entry.pw_dir
    except KeyError:
        user, home = str(uid), os.environ.get("HOME", "/")
    subuid_entries, subgid_entries = _subids("/etc/subuid"), _subids("/etc/subgid")
    defs = _login_defs(_read("/etc/login.defs"))
    passwd_ids = [int(f[2]) for f in _db("/etc/passwd")]
    group_ids = [int(f[2]) for f in _db("/etc/group")]
    restrict = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").strip() == "1"
    podman_profile = PODMAN_SECCOMP if os.path.isfile(PODMAN_SECCOMP) else None
    uts_profile, uts_problem = _uts_profile(podman_profile)
    return HostFacts(
        uid=uid,
        gid=gid,
        user=user,
        home=home,
        subuid=range_for(subuid_entries, user, uid),
        subgid=range_for(subgid_entries, user, uid),
        reserved_uids=reserved_ids(passwd_ids, subuid_entries, defs, "uid"),
        reserved_gids=reserved_ids(group_ids, subgid_entries, defs, "gid"),
        stdout_tty=sys.stdout.isatty(),
        stdin_tty=sys.stdin.isatty(),
        apparmor_restricts_userns=restrict,
        apparmor_rootlesskit_profile=os.path.exists("/etc/apparmor.d/rootlesskit"),
        podman_seccomp_profile=podman_profile,
        uts_seccomp_profile=uts_profile,
        uts_seccomp_problem=uts_problem,
        missing_caps=missing_capabilities(_read("/proc/self/status")),
        localtime=os.readlink("/etc/localtime") if os.path.islink("/etc/localtime") else None,
        subuid_entries=subuid_entries,
        sudo_uid=_env_id("SUDO_UID") if uid == 0 else None,
        sudo_gid=_env_id("SUDO_GID") if uid == 0 else None,
        hostname=os.uname().nodename,
        selinux_enforcing=_read("/sys/fs/selinux/enforce").strip() == "1",
        kvm=kvm_device("/dev/kvm"),
    )


def kvm_device(path: str) -> KvmDevice | None:
    """The host's /dev/kvm (group and mode), or None when it is not a character device."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return KvmDevice(gid=st.st_gid, mode=stat.S_IMODE(st.st_mode))


def _uts_profile(podman_profile: str | None) -> tuple[str | None, str]:
    """Podman's profile with the UTS rule (kasctl.host.seccomp), made once, or why not."""
    if podman_profile is None:
        return None, ""
    from kasctl.host import cache, seccomp

    try:
        return seccomp.uts_profile(podman_profile, cache.directory(os.environ)), ""
    except HostError as exc:
        return None, f"{exc.message}; fix: {exc.fix}" if exc.fix else exc.message


def _env_id(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if is_number(value) else None


def _db(path: str) -> list[list[str]]:
    rows = []
    for line in _read(path).splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and is_number(fields[2]):
            rows.append(fields)
    return rows


def choose_engine(
    explicit: str | None, build_system: BuildSystem, env: Mapping[str, str]
) -> EngineKind:
    """--engine, then KAS_CONTAINER_ENGINE (or the old KAS_DOCKER_ENGINE), then a default.

    The default prefers podman for isar-rootless (its keep-id keeps the host
    uid without any chown), docker otherwise, and whatever is installed.
    """
    choice = explicit or env.get("KAS_CONTAINER_ENGINE") or env.get("KAS_DOCKER_ENGINE")
    if choice:
        if choice not in ("docker", "podman"):
            raise UsageError(f"unknown container engine {choice!r}", fix="use docker or podman")
        return "docker" if choice == "docker" else "podman"
    order: tuple[EngineKind, ...] = (
        ("podman", "docker") if build_system is BuildSystem.ISAR_ROOTLESS else ("docker", "podman")
    )
    for kind in order:
        if shutil.which(kind):
            return kind
    raise HostError(
        "no container engine found (neither podman nor docker is on PATH)",
        fix="install podman (recommended for isar-rootless) or docker",
    )


def query_info(binary: str) -> dict[str, Any] | str:
    """The engine's `info` as JSON, or why there is none (its last line of stderr)."""
    try:
        out = subprocess.run(
            [binary, "info", "--format", "{{json .}}"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "no answer within 60 s"
    if out.returncode != 0:
        return (out.stderr.strip().splitlines() or ["no output"])[-1]
    info: dict[str, Any] = json.loads(out.stdout)
    return info


def mode_from_info(kind: EngineKind, info: Mapping[str, Any]) -> tuple[EngineMode, str, bool]:
    """(mode, version, AppArmor active) from what `info` says, never from version text."""
    if kind == "podman":
        security = info.get("host", {}).get("security", {})
        mode = EngineMode.ROOTLESS_PODMAN if security.get("rootless") else EngineMode.ROOTFUL_PODMAN
        return (
            mode,
            str(info.get("version", {}).get("Version", "")),
            bool(security.get("apparmorEnabled")),
        )
    options = info.get("SecurityOptions") or []
    rootless = any("name=rootless" in o for o in options)
    mode = EngineMode.ROOTLESS_DOCKER if rootless else EngineMode.SYSTEM_DOCKER
    return mode, str(info.get("ServerVersion", "")), any("name=apparmor" in o for o in options)


def engine_facts(kind: EngineKind, env: Mapping[str, str]) -> EngineFacts:
    """Ask the engine itself whether it is rootless (never guess from version text)."""
    binary = shutil.which(kind)
    if not binary:
        raise HostError(f"{kind} is not installed (not on PATH)", fix=f"install {kind}")
    if kind == "podman" and not (env.get("CONTAINER_HOST") or env.get("CONTAINER_CONNECTION")):
        # Local podman is rootless exactly when it runs as a non-root user;
        # no need to pay for `podman info` on every run.
        mode = EngineMode.ROOTLESS_PODMAN if os.getuid() != 0 else EngineMode.ROOTFUL_PODMAN
        return EngineFacts(mode=mode, binary=binary, version="", selinux=True)
    info = query_info(binary)
    if isinstance(info, str):
        where = env.get("DOCKER_HOST") or ("the docker daemon" if kind == "docker" else "podman")
        raise HostError(
            f"cannot reach {kind} ({where}): {info}",
            fix="start the engine (dockerd, or dockerd-rootless.sh with DOCKER_HOST) "
            "or choose the other one with --engine",
        )
    mode, version, apparmor = mode_from_info(kind, info)
    return EngineFacts(
        mode=mode,
        binary=binary,
        version=version,
        apparmor=apparmor,
        endpoint=env.get("DOCKER_HOST") if kind == "docker" else None,
        selinux=kind == "podman"
        or any("name=selinux" in o for o in info.get("SecurityOptions") or []),
    )
