"""Facts about the host and the engines: the planner's and doctor's inputs besides the config.

The one model of them, gathered once per run by `kasctl.host.detect`, then passed
explicitly; frozen so that the planner and the judges stay pure functions of them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from kasctl.inside.subids import Range, SubidEntry

EngineKind = Literal["docker", "podman"]


class EngineMode(enum.Enum):
    """The four ways an engine can run a container here; each needs other flags.

    And one more place a RunPlan can run: a Kubernetes pod (`--emit
    kubernetes`), whose grants are pod settings, rendered, never run.
    """

    ROOTLESS_PODMAN = "rootless-podman"
    ROOTFUL_PODMAN = "rootful-podman"
    SYSTEM_DOCKER = "system-docker"
    ROOTLESS_DOCKER = "rootless-docker"
    KUBERNETES = "kubernetes"

    @property
    def kind(self) -> EngineKind:
        return (
            "podman"
            if self in (EngineMode.ROOTLESS_PODMAN, EngineMode.ROOTFUL_PODMAN)
            else "docker"
        )

    @property
    def engine(self) -> bool:
        """A container engine on this host (not a cluster)."""
        return self is not EngineMode.KUBERNETES

    @property
    def rootless(self) -> bool:
        return self in (EngineMode.ROOTLESS_PODMAN, EngineMode.ROOTLESS_DOCKER)


@dataclass(frozen=True)
class JobContainer:
    """kasctl runs in a container (a CI job's), and what the engine knows of it."""

    #: The container's id, as its own mounts name it.
    id: str
    #: (path in the job container, path on the engine's host) per mount, from the
    #: engine's `inspect` of this container; None when the engine does not run it
    #: (its paths are then the engine's own, e.g. a podman inside the job).
    mounts: tuple[tuple[str, str], ...] | None = None
    #: The work dir's owner (uid, gid) as the job container sees it.
    work_owner: tuple[int, int] | None = None
    #: Anyone may create files in the work dir (GitLab's runner checks out world-writable).
    work_open: bool = False


@dataclass(frozen=True)
class EngineFacts:
    """What the engine's own `info` says about itself."""

    mode: EngineMode
    binary: str
    version: str
    #: AppArmor is active in the engine (docker lists it in SecurityOptions).
    apparmor: bool = False
    #: The engine's environment overrides (e.g. DOCKER_HOST) that reached it.
    endpoint: str | None = None
    #: The engine labels containers for SELinux (docker: daemon --selinux-enabled;
    #: podman does whenever the host enforces SELinux).
    selinux: bool = False
    #: kasctl runs inside a (CI job) container; None on a plain host.
    job: JobContainer | None = None

    @property
    def kind(self) -> EngineKind:
        return self.mode.kind


@dataclass(frozen=True)
class KvmDevice:
    """/dev/kvm on the host: who may open it."""

    gid: int
    mode: int


@dataclass(frozen=True)
class Helper:
    """newuidmap or newgidmap: found, and allowed to write maps for others."""

    path: str | None
    setuid_root: bool = False
    file_caps: bool = False


@dataclass(frozen=True)
class SystemFacts:
    """What the kernel and the host's files say; read without running anything."""

    max_user_namespaces: int | None = None
    #: Debian's older kernels: kernel.unprivileged_userns_clone (None: no such knob).
    unprivileged_userns_clone: int | None = None
    newuidmap: Helper = Helper(None)
    newgidmap: Helper = Helper(None)
    subuid: tuple[SubidEntry, ...] = ()
    subgid: tuple[SubidEntry, ...] = ()
    subid_errors: tuple[str, ...] = ()
    #: "v2", "hybrid" or "v1".
    cgroup: str = "v2"
    tun: Literal["ok", "missing", "denied"] = "ok"
    nofile_hard: int = -1
    nproc_hard: int = -1
    #: containers.conf asks the runtime to set ulimits (needs CAP_SYS_RESOURCE when rootful).
    podman_default_ulimits: tuple[str, ...] | None = None
    #: binfmt_misc handlers: name -> (enabled, fix-binary flag).
    binfmt: Mapping[str, tuple[bool, bool]] | None = None


@dataclass(frozen=True)
class EngineProbe:
    """What `kasctl doctor` learns from one engine, which may be missing or unreachable."""

    kind: EngineKind
    binary: str | None
    reachable: bool = False
    error: str = ""
    version: str = ""
    mode: EngineMode | None = None
    runtime: str = ""
    cgroup: str = ""
    #: The engine's own user namespace size (rootless podman reports it).
    mapped_uids: int | None = None
    image_version: str | None = None
    image_present: bool = False


@dataclass(frozen=True)
class HostFacts:
    """What the planner needs to know about the invoking user and the host."""

    uid: int
    gid: int
    user: str
    home: str
    #: The user's own /etc/subuid and /etc/subgid ranges (first match, as Isar reads them).
    subuid: Range | None = None
    subgid: Range | None = None
    #: Host ids that a rootful container's build must never create files with:
    #: users, groups, every sub-id range, and where useradd allocates in future.
    reserved_uids: tuple[Range, ...] = ()
    reserved_gids: tuple[Range, ...] = ()
    stdout_tty: bool = False
    stdin_tty: bool = False
    #: Ubuntu's kernel.apparmor_restrict_unprivileged_userns=1.
    apparmor_restricts_userns: bool = False
    #: The rootlesskit AppArmor profile exists (Ubuntu ships it for this case).
    apparmor_rootlesskit_profile: bool = False
    #: Podman's seccomp profile (containers-common), which allows pivot_root.
    podman_seccomp_profile: str | None = None
    #: That profile with sethostname/setdomainname allowed without CAP_SYS_ADMIN
    #: (kasctl.host.seccomp), or why it could not be made.
    uts_seccomp_profile: str | None = None
    uts_seccomp_problem: str = ""
    #: Capabilities the host's bounding set lacks (some VMs and nested containers).
    missing_caps: tuple[str, ...] = ()
    #: Where /etc/localtime points (the host's time zone), if it is a link.
    localtime: str | None = None
    #: The user behind sudo (SUDO_UID/SUDO_GID) when kasctl runs as root through it.
    sudo_uid: int | None = None
    sudo_gid: int | None = None
    #: This machine's name, put on each container: only a container started on
    #: this host can be judged left over by whether its kasctl pid still lives.
    hostname: str = ""
    #: SELinux is enforcing (/sys/fs/selinux/enforce).
    selinux_enforcing: bool = False
    #: /dev/kvm, when it is a character device.
    kvm: KvmDevice | None = None
    #: The kernel's and the host files' settings that doctor and the preflight judge.
    system: SystemFacts = field(default_factory=SystemFacts, compare=False)
