"""The one place that decides which privileges a container gets, and why.

Every flag is a `Grant` carrying its reason (which cell needs it and which
failure it prevents), so `--explain` can print it and a drop-one test can
remove it and watch the workload fail. Engines never add privileges.

Cells: 4 engine modes x 3 build systems. What a real Isar build needs in each
was measured step by step (see README, "Privileges per cell").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from kasctl.build_system import BuildSystem
from kasctl.errors import HostError, UsageError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts


@dataclass(frozen=True)
class Grant:
    """One engine flag (or pod setting) and the reason it is there."""

    #: The engine flag, or for a pod the setting as --explain shows it.
    flag: str
    reason: str
    #: For a pod: where the setting goes ("pod" spec or the "container"'s
    #: securityContext), its field and its value; None for engine flags.
    setting: tuple[str, str, object] | None = None


@dataclass(frozen=True)
class Privileges:
    grants: tuple[Grant, ...]
    #: The mode the container really runs in (isar-privileged moves rootless
    #: engines to their rootful counterpart through the privileged executor).
    mode: EngineMode
    #: Command prefix that reaches the rootful engine, e.g. ("sudo", "--preserve-env").
    executor: tuple[str, ...] = ()
    #: The group builder joins to open /dev/kvm (--kvm on a rootful engine), if any.
    kvm_gid: int | None = None


KEEP_ID = Grant(
    "--userns=keep-id",
    "rootless podman: keep the host uid as builder's uid, so files written to the "
    "bind mounts belong to the host user (without it kas cannot create /work/build)",
)
AS_ROOT = Grant(
    "--user=root",
    "rootless podman with keep-id would start the entrypoint as the host user; it must "
    "start as (namespaced) root to give builder the host ids and write /etc/subuid",
)
SYS_ADMIN = Grant(
    "--cap-add=SYS_ADMIN",
    "isar-rootless: newuidmap cannot write the nested uid_map and the engine's seccomp "
    "profile refuses unshare/mount without CAP_SYS_ADMIN in the container's namespace",
)
UNMASK = Grant(
    "--security-opt=unmask=ALL",
    "isar-rootless on podman: a fresh proc mount into the rootfs fails ('fsmount() failed: "
    "VFS: Mount too revealing') while /proc has masked paths",
)
SYSTEMPATHS = Grant(
    "--security-opt=systempaths=unconfined",
    "isar-rootless on docker: a fresh proc mount (unshare --mount-proc, mount -t proc) "
    "fails while /proc has masked paths",
)
PRIVILEGED = Grant(
    "--privileged",
    "isar-privileged: Isar runs sudo for loop devices, binfmt_misc and mounts as real root",
)


#: The seccomp profile a pod's isar-rootless build needs, as a Localhost
#: profile below the kubelet's seccomp root (/var/lib/kubelet/seccomp): podman's
#: own profile (containers-common's /usr/share/containers/seccomp.json), which
#: allows unshare, mount and pivot_root to a container holding CAP_SYS_ADMIN.
POD_SECCOMP_PROFILE = "kasctl-isar-rootless.json"

POD_USERNS = Grant(
    "hostUsers: false",
    "a pod: it runs in a user namespace of its own, so its root and the capabilities "
    "below hold in that namespace only, never on the node (Kubernetes' user namespaces); "
    "where a cluster drops the setting, the entrypoint refuses to start (KASCTL_OWN_USERNS)",
    ("pod", "hostUsers", False),
)
POD_SYS_ADMIN = Grant(
    "capabilities.add: [SYS_ADMIN]",
    SYS_ADMIN.reason,
    ("container", "capabilities", {"add": ["SYS_ADMIN"]}),
)
POD_UNMASKED = Grant(
    "procMount: Unmasked",
    "isar-rootless: a fresh proc mount into the rootfs fails ('fsmount() failed: VFS: "
    "Mount too revealing') while the runtime masks paths of /proc",
    ("container", "procMount", "Unmasked"),
)
POD_SECCOMP = Grant(
    f"seccompProfile: Localhost {POD_SECCOMP_PROFILE}",
    "isar-rootless: bubblewrap calls pivot_root and the build nests user and mount "
    "namespaces; containerd's default profile (RuntimeDefault there, and Docker's) refuses "
    "pivot_root under any capability",
    ("container", "seccompProfile", {"type": "Localhost", "localhostProfile": POD_SECCOMP_PROFILE}),
)


NEST_REASON = (
    "rootless docker: the entrypoint nests a user namespace in which builder's uid is the "
    "container's root (so the build's files belong to the host user); Docker's default "
    "seccomp profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN, podman's allows it"
)
PIVOT_ROOT_REASON = (
    "isar-rootless on docker: bubblewrap calls pivot_root, which Docker's default "
    "seccomp profile refuses; podman's confined profile allows it"
)


def _seccomp(host: HostFacts, reason: str = PIVOT_ROOT_REASON) -> Grant:
    if not host.podman_seccomp_profile:
        raise HostError(
            "this cell needs a seccomp profile that allows pivot_root and unshare "
            "(Docker's default profile refuses both without CAP_SYS_ADMIN)",
            fix="install containers-common (Debian 12: golang-github-containers-common), which "
            "ships /usr/share/containers/seccomp.json, or pass --engine podman",
        )
    return Grant(f"--security-opt=seccomp={host.podman_seccomp_profile}", reason)


SETHOSTNAME_REASON = (
    "isar-rootless on rootless docker: sbuild's unshare backend sets the host name of "
    "each package build's UTS namespace, and podman's profile allows sethostname and "
    "setdomainname only to a container granted CAP_SYS_ADMIN, which this cell is not; "
    "this profile is podman's with those two calls allowed (kasctl.host.seccomp)"
)


def _uts_seccomp(host: HostFacts, reason: str) -> Grant:
    """Podman's profile plus sethostname/setdomainname without CAP_SYS_ADMIN."""
    _seccomp(host)  # the same refusal where podman's profile is missing
    if not host.uts_seccomp_profile:
        raise HostError(
            "cannot make the seccomp profile this cell needs: " + host.uts_seccomp_problem
        )
    return Grant(f"--security-opt=seccomp={host.uts_seccomp_profile}", reason)


def _apparmor(engine: EngineFacts, host: HostFacts) -> tuple[Grant, ...]:
    """At most one AppArmor profile: the last one given would win anyway."""
    if host.apparmor_restricts_userns and host.apparmor_rootlesskit_profile:
        return (
            Grant(
                "--security-opt=apparmor=rootlesskit",
                "the host restricts unprivileged user namespaces "
                "(kernel.apparmor_restrict_unprivileged_userns=1); the rootlesskit profile "
                "allows them and the mounts nested namespaces make",
            ),
        )
    if engine.apparmor:
        return (
            Grant(
                "--security-opt=apparmor=unconfined",
                "isar-rootless with AppArmor active: the default container profile denies "
                "the mounts that nested namespaces make",
            ),
        )
    return ()


def _selinux(engine: EngineFacts, host: HostFacts) -> tuple[Grant, ...]:
    """label=disable where SELinux would keep the container from the user's files."""
    if not (host.selinux_enforcing and engine.selinux):
        return ()
    return (
        Grant(
            "--security-opt=label=disable",
            "SELinux is enforcing: a confined container may not read the bind-mounted work "
            "dir and repository (user_home_t and the like); relabelling them (:z) would "
            "change your files' labels on the host, so the container runs unlabelled instead",
        ),
    )


KVM_DEVICE = "/dev/kvm"


def _kvm(mode: EngineMode, host: HostFacts) -> tuple[tuple[Grant, ...], int | None]:
    """--kvm: the device, and the group builder needs to open it (None: no group needed)."""
    kvm = host.kvm
    if kvm is None:
        raise HostError(
            f"--kvm was given, but {KVM_DEVICE} is not on this host",
            fix="enable KVM (load kvm_intel or kvm_amd; on a VM, nested virtualisation), "
            "or drop --kvm (QEMU then emulates, much slower)",
        )
    grant = Grant(
        f"--device={KVM_DEVICE}",
        "--kvm: QEMU in the build (runqemu, testimage) uses KVM for hardware virtualisation",
    )
    if kvm.mode & 0o006 == 0o006:
        return (grant,), None
    if not mode.rootless and kvm.gid != 0 and kvm.mode & 0o060 == 0o060:
        return (grant,), kvm.gid
    mode_text = f"{kvm.mode:04o}, group {kvm.gid}"
    if mode.rootless:
        raise HostError(
            f"{KVM_DEVICE} ({mode_text}) is not open to every user, and on a rootless engine "
            "the builder cannot have its group: the user namespace does not map it",
            fix=f"make it rw for all (chmod 0666 {KVM_DEVICE}, or a udev rule "
            'KERNEL=="kvm", MODE="0666", as systemd sets it), or use a rootful engine',
        )
    raise HostError(
        f"{KVM_DEVICE} ({mode_text}) can be opened by root only, and the builder is not root",
        fix=f"give it a kvm group: groupadd -r kvm; chgrp kvm {KVM_DEVICE}; "
        f"chmod 0660 {KVM_DEVICE} (or chmod 0666)",
    )


def _check_privileged_possible(mode: EngineMode, host: HostFacts) -> None:
    """docker --privileged asks runc for every capability (a --cap-drop is ignored then),
    and runc fails ('unable to apply caps') when the host's own bounding set lacks one;
    podman leaves those out by itself."""
    if mode.kind == "docker" and host.missing_caps:
        missing = ", ".join(f"CAP_{c}" for c in host.missing_caps)
        raise HostError(
            f"docker cannot start a --privileged container on this host: its capability "
            f"bounding set lacks {missing} (a VM or nested container)",
            fix="use podman for isar-privileged (--engine podman), or build isar-rootless",
        )


def _privileged_executor(mode: EngineMode, host: HostFacts, sudo_cmd: str) -> tuple[str, ...]:
    if host.uid == 0:
        return ()
    prefix = ("run0",) if sudo_cmd == "run0" else (sudo_cmd, "--preserve-env")
    if mode.kind == "podman":
        return prefix
    if mode is EngineMode.ROOTLESS_DOCKER:
        # the environment is preserved, but it must not lead back to the
        # rootless daemon: the system socket is docker's default
        return (*prefix, "env", "-u", "DOCKER_HOST", "-u", "DOCKER_CONTEXT")
    return ()


def decide(
    build_system: BuildSystem,
    engine: EngineFacts,
    host: HostFacts,
    sudo_cmd: str = "sudo",
    kvm: bool = False,
) -> Privileges:
    """The grants for one cell, plus what the run asked for (--kvm) and the host needs."""
    cell = _cell(build_system, engine, host, sudo_cmd)
    extra = _selinux(engine, host)
    kvm_gid = None
    if kvm and not engine.mode.engine:
        raise UsageError(
            "--kvm passes this host's /dev/kvm, which a pod does not have",
            fix="leave out --kvm; a cluster gives pods /dev/kvm through a device plugin",
        )
    if kvm:
        kvm_grants, kvm_gid = _kvm(cell.mode, host)
        extra += kvm_grants
    return replace(cell, grants=cell.grants + extra, kvm_gid=kvm_gid)


def _cell(
    build_system: BuildSystem, engine: EngineFacts, host: HostFacts, sudo_cmd: str
) -> Privileges:
    """The grants for one cell; exhaustive over build systems and engine modes."""
    mode = engine.mode
    if mode is EngineMode.KUBERNETES:
        return _pod(build_system)
    match build_system:
        case BuildSystem.OPENEMBEDDED:
            if mode is EngineMode.ROOTLESS_PODMAN:
                return Privileges((KEEP_ID, AS_ROOT), mode)
            if mode is EngineMode.ROOTLESS_DOCKER:
                return Privileges((_seccomp(host, NEST_REASON),), mode)
            return Privileges((), mode)
        case BuildSystem.ISAR_PRIVILEGED:
            executor = _privileged_executor(mode, host, sudo_cmd)
            real = {
                EngineMode.ROOTLESS_PODMAN: EngineMode.ROOTFUL_PODMAN,
                EngineMode.ROOTLESS_DOCKER: EngineMode.SYSTEM_DOCKER,
            }.get(mode, mode)
            _check_privileged_possible(real, host)
            return Privileges((PRIVILEGED,), real, executor)
        case BuildSystem.ISAR_ROOTLESS:
            match mode:
                case EngineMode.ROOTLESS_PODMAN:
                    return Privileges((KEEP_ID, AS_ROOT, SYS_ADMIN, UNMASK), mode)
                case EngineMode.ROOTFUL_PODMAN:
                    return Privileges((SYS_ADMIN, UNMASK), mode)
                case EngineMode.SYSTEM_DOCKER:
                    grants = (SYS_ADMIN, SYSTEMPATHS, _seccomp(host), *_apparmor(engine, host))
                    return Privileges(grants, mode)
                case EngineMode.ROOTLESS_DOCKER:
                    # No SYS_ADMIN: the entrypoint nests the builder in a user
                    # namespace of its own (keep-id), and a new user namespace
                    # starts with a full bounding set, so Isar's nested
                    # namespaces get their capabilities there. The seccomp
                    # profile and the /proc masks still apply to every level.
                    seccomp = _uts_seccomp(
                        host, f"{PIVOT_ROOT_REASON}; {NEST_REASON}; and {SETHOSTNAME_REASON}"
                    )
                    grants = (SYSTEMPATHS, seccomp, *_apparmor(engine, host))
                    return Privileges(grants, mode)
    raise AssertionError(f"unhandled cell {build_system} x {mode}")  # pragma: no cover


def _pod(build_system: BuildSystem) -> Privileges:
    """A pod's settings: always its own user namespace; isar-rootless adds what it needs."""
    mode = EngineMode.KUBERNETES
    match build_system:
        case BuildSystem.OPENEMBEDDED:
            return Privileges((POD_USERNS,), mode)
        case BuildSystem.ISAR_ROOTLESS:
            return Privileges((POD_USERNS, POD_SYS_ADMIN, POD_UNMASKED, POD_SECCOMP), mode)
        case BuildSystem.ISAR_PRIVILEGED:
            raise UsageError(
                "isar-privileged needs a privileged pod, which kasctl does not render: it "
                "would be root on the node",
                fix="build with isar-rootless (build_system: isar-rootless, or --isar-rootless)",
            )
    raise AssertionError(f"unhandled build system {build_system}")  # pragma: no cover


def refuse_root(host: HostFacts, env: Mapping[str, str], in_job: bool = False) -> None:
    """Builds run as a normal user: root only through sudo (which keeps the user's ids).

    Root in a CI job container is that job's own user (runners start jobs as
    root), not the host's administrator: the build then runs as the work
    dir's owner (kasctl.decide.plan).
    """
    if (
        host.uid == 0
        and host.sudo_uid is None
        and not in_job
        and env.get("KAS_ALLOW_ROOT") != "yes"
    ):
        raise UsageError(
            "refusing to run as root: builds should run as a normal user",
            fix="run as your own user (or through sudo, which keeps your ids), "
            "or set KAS_ALLOW_ROOT=yes if you really mean it",
        )
