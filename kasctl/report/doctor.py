"""`kasctl doctor`: will a build work on this host, and if not, what to change.

The facts come from kasctl.host.detect (`host_facts(full=True)` reads the
host, `probe_engine` asks each engine); here they are judged by pure
functions that each return one `Check`. The cheap, file-only checks that
make a build fail for certain are also run before every build (`preflight`),
so a CI job gets the same explanation instead of an engine error from deep
inside a container start.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.errors import HostError
from kasctl.host.facts import (
    EngineKind,
    EngineMode,
    EngineProbe,
    HostFacts,
    JobContainer,
    SystemFacts,
)
from kasctl.inside.subids import (
    FULL_RANGE,
    WORKING_RANGE,
    Range,
    overlaps,
    range_for,
    rootless_builder_range,
    sufficient_host_count,
    too_small_to_work,
)

Status = Literal["ok", "warn", "fail"]

#: Below this hard limit on open files, parallel bitbake tasks run out (1024 is
#: a common default for services); a rootless runtime cannot go above it.
MIN_NOFILE = 4096


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


# ------------------------------------------------------------------ judging


def _userns(system: SystemFacts, mode: EngineMode, bs: BuildSystem, uid: int) -> Check | None:
    needs = mode.rootless or bs is BuildSystem.ISAR_ROOTLESS
    if not needs:
        return Check("user namespaces", "ok", "not needed in this mode")
    if system.max_user_namespaces == 0:
        return Check(
            "user namespaces",
            "fail",
            "disabled: user.max_user_namespaces = 0",
            "sysctl -w user.max_user_namespaces=28633 (and in /etc/sysctl.d to keep it)",
        )
    if system.unprivileged_userns_clone == 0 and (uid != 0 or mode.rootless):
        return Check(
            "user namespaces",
            "fail",
            "unprivileged ones are disabled: kernel.unprivileged_userns_clone = 0",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        )
    return Check("user namespaces", "ok", f"max_user_namespaces = {system.max_user_namespaces}")


def _helpers(system: SystemFacts, mode: EngineMode) -> list[Check]:
    if not mode.rootless:
        return [Check("newuidmap/newgidmap", "ok", "not needed on the host in this mode")]
    checks = []
    for name, helper in (("newuidmap", system.newuidmap), ("newgidmap", system.newgidmap)):
        if helper.path is None:
            checks.append(
                Check(name, "fail", "not installed", "install the uidmap package (Debian/Ubuntu)")
            )
        elif not (helper.setuid_root or helper.file_caps):
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{helper.path} is neither setuid root nor has file capabilities",
                    f"chmod u+s {helper.path} (owned by root), or reinstall uidmap",
                )
            )
        else:
            how = "setuid root" if helper.setuid_root else "file capabilities"
            checks.append(Check(name, "ok", f"{helper.path}, {how}"))
    return checks


def _subid_checks(
    system: SystemFacts, host: HostFacts, mode: EngineMode, bs: BuildSystem
) -> list[Check]:
    if not mode.rootless:
        return [
            Check(
                "sub-ids",
                "ok",
                "not needed on the host in this mode (the container's own ids serve Isar)",
            )
        ]
    checks = [Check("sub-ids", "fail", e, "fix the line in that file") for e in system.subid_errors]
    for kind, entries in (("subuid", system.subuid), ("subgid", system.subgid)):
        name = f"/etc/{kind}"
        mine = [e for e in entries if e.owner in (host.user, str(host.uid))]
        rng = range_for(entries, host.user, host.uid)
        if rng is None:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"no range for {host.user} (uid {host.uid})",
                    _add_range_fix(host, system),
                )
            )
            continue
        clashes = overlaps(entries)
        own = [(a, b) for a, b in clashes if a in mine and b in mine]
        shared = [(a, b) for a, b in clashes if (a in mine) != (b in mine)]
        if own:
            a, b = own[0]
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{host.user}'s lines {a.line} and {b.line} overlap: "
                    "newuidmap refuses such maps",
                    f"keep one line for {host.user} in {name}, then `podman system migrate`",
                )
            )
            continue
        if shared:
            a, b = shared[0]
            other = b if a in mine else a
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{host.user}'s range overlaps {other.owner}'s (line {other.line}): "
                    "both users' builds would share host ids",
                    "give each user a range of its own",
                )
            )
        if len(mine) > 1:
            checks.append(
                Check(
                    name,
                    "warn",
                    f"{len(mine)} lines for {host.user}: the engine maps all, Isar uses the first",
                    f"merge them into one line of at least {sufficient_host_count(host.uid)} ids",
                )
            )
        checks.append(_subid_size(name, rng, host, bs))
    return checks


def _add_range_fix(host: HostFacts, system: SystemFacts) -> str:
    """A usermod line giving the user a big enough range after everyone else's."""
    taken = [e.range.end for e in (*system.subuid, *system.subgid)]
    first = max([100000, *taken])
    last = first + sufficient_host_count(host.uid) - 1
    return (
        f"usermod --add-subuids {first}-{last} --add-subgids {first}-{last} {host.user}, "
        "then `podman system migrate`"
    )


def _subid_size(name: str, rng: Range, host: HostFacts, bs: BuildSystem) -> Check:
    detail = f"{host.user}:{rng.start}:{rng.count}"
    if bs is not BuildSystem.ISAR_ROOTLESS:
        ok = rng.count >= FULL_RANGE
        return Check(
            name,
            "ok" if ok else "warn",
            detail,
            "" if ok else f"use at least {FULL_RANGE} ids so images' own users fit",
        )
    got = rootless_builder_range(rng, host.uid)
    if got is not None and got.count >= FULL_RANGE:
        return Check(name, "ok", f"{detail}; Isar gets {got.count} ids, 65534 included")
    need = sufficient_host_count(host.uid)
    if not too_small_to_work(got):
        assert got is not None
        return Check(
            name,
            "ok",
            f"{detail}; Isar gets {got.count} ids and maps nobody/nogroup (65534) on its "
            f"own, which works; {host.user}:{rng.start}:{need} would map it linearly",
        )
    return Check(
        name,
        "warn",
        f"{detail} leaves Isar {got.count if got else 0} ids: too few for a Debian rootfs's "
        f"system users and groups (at least {WORKING_RANGE})",
        f"use {host.user}:{rng.start}:{need} (then `podman system migrate`)",
    )


def _selinux_check(host: HostFacts, mode: EngineMode) -> Check:
    if not host.selinux_enforcing:
        return Check("SELinux", "ok", "not enforcing")
    does = (
        "kasctl runs podman's containers with --security-opt=label=disable"
        if mode.kind == "podman"
        else "kasctl passes --security-opt=label=disable where the docker daemon labels "
        "containers (--selinux-enabled)"
    )
    return Check(
        "SELinux",
        "ok",
        f"enforcing: a confined container could not read your bind-mounted files; {does} "
        "rather than relabel them",
    )


def _apparmor(host: HostFacts, mode: EngineMode, bs: BuildSystem) -> Check:
    if not host.apparmor_restricts_userns:
        return Check("AppArmor", "ok", "no user-namespace restriction")
    if not (mode.rootless or bs is BuildSystem.ISAR_ROOTLESS):
        return Check("AppArmor", "ok", "restricts user namespaces; not needed in this mode")
    if mode is EngineMode.ROOTLESS_DOCKER and host.apparmor_rootlesskit_profile:
        return Check("AppArmor", "ok", "restricts user namespaces; rootlesskit's profile allows")
    return Check(
        "AppArmor",
        "fail" if mode.rootless else "warn",
        "kernel.apparmor_restrict_unprivileged_userns = 1",
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
        "that allows userns for the engine (Ubuntu ships one for rootlesskit)",
    )


def _runtime(probe: EngineProbe, system: SystemFacts) -> Check:
    cgroup = probe.cgroup or system.cgroup
    if probe.runtime == "crun" and (system.cgroup != "v2" or cgroup == "v1"):
        return Check(
            "OCI runtime",
            "fail",
            f"crun on cgroup {system.cgroup}: it refuses hybrid and v1 hierarchies",
            'use runc: [engine] runtime = "runc" in containers.conf (install runc)',
        )
    return Check("OCI runtime", "ok", f"{probe.runtime or '?'} on cgroup {system.cgroup}")


def _rlimits(system: SystemFacts, host: HostFacts, probe: EngineProbe, mode: EngineMode) -> Check:
    if (
        mode is EngineMode.ROOTFUL_PODMAN
        and "SYS_RESOURCE" in host.missing_caps
        and system.podman_default_ulimits != ()
    ):
        return Check(
            "rlimits",
            "fail",
            "podman sets default ulimits, but this host lacks CAP_SYS_RESOURCE to raise them",
            "set `default_ulimits = []` under [containers] in /etc/containers/containers.conf",
        )
    detail = f"hard nofile {system.nofile_hard}, nproc {system.nproc_hard}"
    low = mode.rootless and 0 <= system.nofile_hard < MIN_NOFILE
    if low:
        return Check(
            "rlimits",
            "warn",
            f"{detail}: a rootless runtime cannot raise nofile above the hard limit; "
            "parallel bitbake tasks may run out of files",
            f"raise the hard nofile limit to {MIN_NOFILE} or more "
            "(limits.conf, or the CI runner's service)",
        )
    return Check("rlimits", "ok", detail)


def _tun_check(system: SystemFacts, mode: EngineMode) -> Check:
    if not mode.rootless:
        return Check("/dev/net/tun", "ok", "not needed in this mode")
    if system.tun == "ok":
        return Check("/dev/net/tun", "ok", "usable (slirp4netns/rootlesskit networking)")
    what = "missing" if system.tun == "missing" else "not readable and writable by you"
    return Check(
        "/dev/net/tun",
        "fail",
        f"{what}: rootless networking (slirp4netns, rootlesskit) needs it",
        "mknod /dev/net/tun c 10 200 && chmod 666 /dev/net/tun (or load the tun module)",
    )


def _engine_map(probe: EngineProbe, host: HostFacts, bs: BuildSystem) -> Check | None:
    if probe.mapped_uids is None or bs is not BuildSystem.ISAR_ROOTLESS:
        return None
    need = sufficient_host_count(host.uid) + 1
    if probe.mapped_uids >= need:
        return Check("engine id map", "ok", f"{probe.mapped_uids} uids mapped by podman")
    return Check(
        "engine id map",
        "warn",
        f"podman maps {probe.mapped_uids} uids, fewer than the {need} Isar needs here",
        "enlarge the ranges in /etc/subuid and /etc/subgid, then `podman system migrate` "
        "(podman keeps the map it made first)",
    )


def _image(probe: EngineProbe, image: str) -> Check:
    if not probe.image_present:
        return Check(
            "image",
            "warn",
            f"{image} is not in {probe.kind}'s store",
            "kasctl builds it on first use, or now: `kasctl image build`",
        )
    if probe.image_version != __version__:
        return Check(
            "image",
            "warn",
            f"{image} was built by kasctl {probe.image_version or '?'}, this is {__version__}",
            "rebuild it: `kasctl image build`",
        )
    return Check("image", "ok", f"{image}, built by kasctl {__version__}")


def _binfmt_check(system: SystemFacts) -> Check:
    if system.binfmt is None:
        return Check(
            "binfmt",
            "warn",
            "binfmt_misc is not mounted: no foreign-architecture targets",
            "only for foreign targets: install qemu-user-static and binfmt-support",
        )
    qemu = {n: v for n, v in system.binfmt.items() if n.startswith("qemu-")}
    usable = sorted(n.removeprefix("qemu-") for n, (on, fixed) in qemu.items() if on and fixed)
    if usable:
        return Check("binfmt", "ok", "foreign architectures: " + ", ".join(usable))
    if qemu:
        return Check(
            "binfmt",
            "warn",
            "qemu handlers lack the F (fix-binary) flag: they do not work inside containers",
            "install qemu-user-static (Debian registers them with F)",
        )
    return Check(
        "binfmt",
        "warn",
        "no qemu handlers: native-architecture targets only",
        "only for foreign targets: install qemu-user-static",
    )


def setup_check(
    container: str | None, job: JobContainer | None, kind: EngineKind, fuse: bool
) -> Check:
    """Where kasctl runs: a plain host, a CI job container of this daemon, or a nested engine.

    container: this container's id (from its own mounts), or None on a host.
    job: the engine's account of it (None when the engine was not asked).
    fuse: /dev/fuse is there (a nested podman's fuse-overlayfs needs it).
    """
    if container is None:
        return Check("setup", "ok", "a plain host (not in a container)")
    short = container[:12]
    if job is not None and job.mounts is not None:
        return Check(
            "setup",
            "ok",
            f"in CI job container {short}, run by this {kind}'s daemon: mount sources are "
            "passed as the paths on its host (from its account of this container's mounts)",
        )
    if kind == "podman":
        if fuse:
            return Check(
                "setup",
                "ok",
                f"podman nested in container {short}: paths are this container's own; "
                "/dev/fuse is there for fuse-overlayfs",
            )
        return Check(
            "setup",
            "warn",
            f"podman nested in container {short} without /dev/fuse: its storage must use "
            "the vfs driver (slow, a full copy per layer)",
            "start the job container with --device /dev/fuse (GitLab runner: `devices = "
            '["/dev/fuse"]` in [runners.docker]), and give its user a sub-id range',
        )
    return Check(
        "setup",
        "warn",
        f"in container {short}, which this {kind} daemon does not run (docker-in-docker?): "
        "mount sources are passed unchanged and must exist where that daemon runs",
        "mount the host's socket into the job instead (GitLab runner: `volumes = "
        '["/var/run/docker.sock:/var/run/docker.sock"]`), or share the paths with the daemon',
    )


def judge(host: HostFacts, probe: EngineProbe, bs: BuildSystem, image: str) -> list[Check]:
    """All checks for one engine and build system, in the order a fix is needed."""
    system = host.system
    if probe.binary is None:
        return [
            Check(
                probe.kind,
                "fail",
                "not installed",
                "install podman (recommended for isar-rootless) or docker",
            )
        ]
    if not probe.reachable or probe.mode is None:
        return [
            Check(
                probe.kind,
                "fail",
                f"{probe.binary} cannot reach its engine: {probe.error}",
                "start it (dockerd, or dockerd-rootless.sh with DOCKER_HOST set) or fix "
                "DOCKER_HOST/CONTAINER_HOST; for system docker, join the docker group",
            )
        ]
    mode = probe.mode
    checks = [
        Check(probe.kind, "ok", f"{probe.version}, {mode.value}, for {bs.value}"),
        *[c for c in [_userns(system, mode, bs, host.uid)] if c],
        *_helpers(system, mode),
        *_subid_checks(system, host, mode, bs),
        *[c for c in [_engine_map(probe, host, bs)] if c],
        _apparmor(host, mode, bs),
        _selinux_check(host, mode),
        _runtime(probe, system),
        _rlimits(system, host, probe, mode),
        _tun_check(system, mode),
        _image(probe, image),
        _binfmt_check(system),
    ]
    return checks


def preflight(host: HostFacts, mode: EngineMode, bs: BuildSystem) -> None:
    """Before a build: stop with doctor's explanation when it cannot work at all.

    It judges the very facts the plan was made from (no second read of the host).
    """
    system = host.system
    checks = [
        *[c for c in [_userns(system, mode, bs, host.uid)] if c],
        *_helpers(system, mode),
        *_subid_checks(system, host, mode, bs),
    ]
    for check in checks:
        if check.status == "fail":
            raise HostError(
                f"{check.name}: {check.detail} ({mode.value}, {bs.value})",
                fix=f"{check.fix}; `kasctl doctor` checks the whole host",
            )


def render(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status:<5} {c.name}: {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"      fix: {c.fix}")
    return "\n".join(lines)


def to_json(checks: Sequence[Check], **extra: object) -> str:
    return json.dumps({**extra, "checks": [asdict(c) for c in checks]}, indent=2)
