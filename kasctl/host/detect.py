"""The one gatherer of host and engine facts (the model is kasctl.host.facts).

Each fact is read once per run and handed on in frozen dataclasses: the
planner, the preflight and `kasctl doctor` judge the same facts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import resource
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from kasctl.build_system import BuildSystem
from kasctl.errors import HostError, UsageError
from kasctl.host.facts import (
    EngineFacts,
    EngineKind,
    EngineMode,
    EngineProbe,
    Helper,
    HostFacts,
    JobContainer,
    KvmDevice,
    SystemFacts,
)
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


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _helper(name: str) -> Helper:
    path = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        return Helper(None)
    st = os.stat(path)
    try:
        caps = bool(os.getxattr(path, "security.capability"))
    except OSError:
        caps = False
    return Helper(path, bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0, caps)


def _subids(root: Path, path: str) -> tuple[tuple[SubidEntry, ...], str | None]:
    try:
        return parse_subid_file(_read(root, path) or ""), None
    except HostError as exc:
        return (), f"{root / path.lstrip('/')}: {exc.message}"


def _cgroup(root: Path) -> str:
    base = root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").exists():
        return "v2"
    return "hybrid" if (base / "unified").is_dir() else "v1"


def _tun(root: Path) -> Literal["ok", "missing", "denied"]:
    path = root / "dev/net/tun"
    try:
        if not stat.S_ISCHR(path.stat().st_mode):
            return "missing"
    except OSError:
        return "missing"
    return "ok" if os.access(path, os.R_OK | os.W_OK) else "denied"


def _default_ulimits(root: Path, home: str) -> tuple[str, ...] | None:
    """containers.conf's default_ulimits, the later file winning (None: not set)."""
    import tomllib  # only for the full check, not for every build's preflight

    found: tuple[str, ...] | None = None
    for path in (
        root / "usr/share/containers/containers.conf",
        root / "etc/containers/containers.conf",
        Path(home) / ".config/containers/containers.conf",
    ):
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            continue
        value = data.get("containers", {}).get("default_ulimits")
        if isinstance(value, list):
            found = tuple(str(v) for v in value)
    return found


def _binfmt(root: Path) -> dict[str, tuple[bool, bool]] | None:
    base = root / "proc/sys/fs/binfmt_misc"
    if not (base / "status").exists():
        return None
    handlers = {}
    for entry in sorted(base.iterdir()):
        if entry.name in ("status", "register"):
            continue
        try:
            text = entry.read_text()
        except OSError:
            continue
        flags = next(
            (ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags:")), ""
        )
        handlers[entry.name] = (text.startswith("enabled"), "F" in flags)
    return handlers


def system_facts(home: str, root: Path = Path("/"), full: bool = True) -> SystemFacts:
    """The kernel's and the host files' settings; `full=False`: only what `preflight` needs."""
    subuid, uid_err = _subids(root, "/etc/subuid")
    subgid, gid_err = _subids(root, "/etc/subgid")
    facts = SystemFacts(
        max_user_namespaces=_int(_read(root, "/proc/sys/user/max_user_namespaces")),
        unprivileged_userns_clone=_int(_read(root, "/proc/sys/kernel/unprivileged_userns_clone")),
        newuidmap=_helper("newuidmap"),
        newgidmap=_helper("newgidmap"),
        subuid=subuid,
        subgid=subgid,
        subid_errors=tuple(e for e in (uid_err, gid_err) if e),
    )
    if not full:
        return facts
    return replace(
        facts,
        cgroup=_cgroup(root),
        tun=_tun(root),
        nofile_hard=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        nproc_hard=resource.getrlimit(resource.RLIMIT_NPROC)[1],
        podman_default_ulimits=_default_ulimits(root, home),
        binfmt=_binfmt(root),
    )


def host_facts(root: str | Path = "/", *, full: bool = False) -> HostFacts:
    """Read the host once: the user, its sub-ids, the kernel's and the host files' settings.

    `full` adds what only `kasctl doctor` judges (cgroups, /dev/net/tun,
    rlimits, containers.conf, binfmt handlers); a run reads only what the
    planner and the preflight need. `root` is where the host's files are
    read from (tests point it at a tree of their own).
    """
    root = Path(root)
    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        user, home = entry.pw_name, entry.pw_dir
    except KeyError:
        user, home = str(uid), os.environ.get("HOME", "/")
    system = system_facts(home, root, full=full)
    for error in system.subid_errors:
        log.warning("%s (ignored; run `kasctl doctor`)", error)
    defs = _login_defs(_read(root, "/etc/login.defs") or "")
    passwd_ids = [int(f[2]) for f in _db(root, "/etc/passwd")]
    group_ids = [int(f[2]) for f in _db(root, "/etc/group")]
    restrict = _read(root, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns") or ""
    podman = root / PODMAN_SECCOMP.lstrip("/")
    podman_profile = str(podman) if podman.is_file() else None
    uts_profile, uts_problem = _uts_profile(podman_profile)
    localtime = root / "etc/localtime"
    return HostFacts(
        uid=uid,
        gid=gid,
        user=user,
        home=home,
        subuid=range_for(system.subuid, user, uid),
        subgid=range_for(system.subgid, user, uid),
        reserved_uids=reserved_ids(passwd_ids, system.subuid, defs, "uid"),
        reserved_gids=reserved_ids(group_ids, system.subgid, defs, "gid"),
        stdout_tty=sys.stdout.isatty(),
        stdin_tty=sys.stdin.isatty(),
        apparmor_restricts_userns=restrict.strip() == "1",
        apparmor_rootlesskit_profile=(root / "etc/apparmor.d/rootlesskit").exists(),
        podman_seccomp_profile=podman_profile,
        uts_seccomp_profile=uts_profile,
        uts_seccomp_problem=uts_problem,
        missing_caps=missing_capabilities(_read(root, "/proc/self/status") or ""),
        localtime=os.readlink(localtime) if localtime.is_symlink() else None,
        sudo_uid=_env_id("SUDO_UID") if uid == 0 else None,
        sudo_gid=_env_id("SUDO_GID") if uid == 0 else None,
        hostname=os.uname().nodename,
        selinux_enforcing=(_read(root, "/sys/fs/selinux/enforce") or "").strip() == "1",
        kvm=kvm_device(str(root / "dev/kvm")),
        system=system,
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


def _db(root: Path, path: str) -> list[list[str]]:
    rows = []
    for line in (_read(root, path) or "").splitlines():
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


#: A container's id, as the source paths of the hostname/hosts/resolv.conf files
#: the engine mounts into it show it (docker: .../containers/ID/hostname,
#: podman: .../overlay-containers/ID/userdata/hostname).
_CONTAINER_ID = re.compile(r"[/-]containers/([0-9a-f]{64})/")


def own_container_id(mountinfo: str) -> str | None:
    """This container's id from its mount table, or None: not in an engine's container.

    Marker files are no proof: /.dockerenv is also found on machines made
    from a container image (VMs among them) that run their own daemon.
    """
    hit = _CONTAINER_ID.search(mountinfo)
    return hit.group(1) if hit else None


def container_id(root: Path = Path("/")) -> str | None:
    return own_container_id(_read(root, "proc/self/mountinfo") or "")


def parse_mounts(inspected: str) -> tuple[tuple[str, str], ...] | None:
    """`inspect --format '{{json .Mounts}}'` output -> (destination, source) pairs."""
    try:
        mounts = json.loads(inspected)
    except ValueError:
        return None
    if not isinstance(mounts, list):
        return None
    pairs = []
    for m in mounts:
        if isinstance(m, dict) and m.get("Destination") and m.get("Source"):
            pairs.append((str(m["Destination"]), str(m["Source"])))
    return tuple(pairs)


def job_container(binary: str, cid: str, work_dir: Path | None) -> JobContainer:
    """The engine's account of the container kasctl runs in (cid: container_id())."""
    owner = None
    open_to_all = False
    if work_dir is not None:
        with contextlib.suppress(OSError):
            st = os.stat(work_dir)
            owner = (st.st_uid, st.st_gid)
            open_to_all = st.st_mode & 0o003 == 0o003  # others may create entries
    result = subprocess.run(
        [binary, "inspect", "--type", "container", "--format", "{{json .Mounts}}", cid],
        capture_output=True,
        text=True,
    )
    mounts = parse_mounts(result.stdout) if result.returncode == 0 else None
    return JobContainer(id=cid, mounts=mounts, work_owner=owner, work_open=open_to_all)


def engine_facts(
    kind: EngineKind,
    env: Mapping[str, str],
    work_dir: Path | None = None,
    container: str | None = None,
) -> EngineFacts:
    """Ask the engine itself whether it is rootless (never guess from version text).

    container: the id of the container kasctl runs in (container_id()), whose
    mounts the engine is then asked for; None on a plain host.
    """
    binary = shutil.which(kind)
    if not binary:
        raise HostError(f"{kind} is not installed (not on PATH)", fix=f"install {kind}")
    if kind == "podman" and not (env.get("CONTAINER_HOST") or env.get("CONTAINER_CONNECTION")):
        # Local podman is rootless exactly when it runs as a non-root user;
        # no need to pay for `podman info` on every run.
        mode = EngineMode.ROOTLESS_PODMAN if os.getuid() != 0 else EngineMode.ROOTFUL_PODMAN
        return EngineFacts(
            mode=mode,
            binary=binary,
            version="",
            selinux=True,
            job=job_container(binary, container, work_dir) if container else None,
        )
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
        job=job_container(binary, container, work_dir) if container else None,
        mode=mode,
        binary=binary,
        version=version,
        apparmor=apparmor,
        endpoint=env.get("DOCKER_HOST") if kind == "docker" else None,
        selinux=kind == "podman"
        or any("name=selinux" in o for o in info.get("SecurityOptions") or []),
    )


def probe_engine(kind: EngineKind, env: Mapping[str, str], image: str) -> EngineProbe:
    """Ask one engine about itself and the image; never raises."""
    binary = shutil.which(kind, path=env.get("PATH"))
    if binary is None:
        return EngineProbe(kind, None)
    info = query_info(binary)
    if isinstance(info, str):
        return EngineProbe(kind, binary, error=info)
    mode, version, _apparmor = mode_from_info(kind, info)
    if kind == "podman":
        host = info.get("host", {})
        maps = (host.get("idMappings") or {}).get("uidmap") or []
        runtime = str(host.get("ociRuntime", {}).get("name", ""))
        cgroup = str(host.get("cgroupVersion", ""))
        mapped = sum(int(m.get("size", 0)) for m in maps) if mode.rootless else None
    else:
        runtime = str(info.get("DefaultRuntime", ""))
        cgroup = f"v{info.get('CgroupVersion', '')}"
        mapped = None
    probe = EngineProbe(
        kind,
        binary,
        reachable=True,
        version=version,
        mode=mode,
        runtime=runtime,
        cgroup=cgroup,
        mapped_uids=mapped,
    )
    fmt = '{{index .Config.Labels "io.kasctl.version"}}'
    image_out = subprocess.run(
        [binary, "image", "inspect", "--format", fmt, image],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    present = image_out.returncode == 0
    built_by = image_out.stdout.strip() if present else None
    return replace(probe, image_present=present, image_version=built_by)
