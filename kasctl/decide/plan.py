"""From config, host facts, engine facts and options to one frozen RunPlan.

`plan()` is pure: it reads no files and runs nothing, so every cell of the
engine x build-system matrix is unit-testable without an engine. Engines only
render a RunPlan to a command line and run it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.config.read import Config
from kasctl.config.repo import Worktree
from kasctl.decide import credentials
from kasctl.decide.credentials import Share
from kasctl.decide.privileges import Grant, decide
from kasctl.engine.image import ENTRYPOINT
from kasctl.errors import UsageError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts, JobContainer
from kasctl.inside.subids import (
    WORKING_RANGE,
    render_avoid,
    rootless_builder_range,
    sufficient_host_count,
    too_small_to_work,
)
from kasctl.layout import (
    AGENT_SOCKET,
    CACHE_SOCKET,
    MANAGED_DIRS,
    REPO,
    REPO2,
    REPO_COMMON,
    WORK,
    mountable,
    through,
)

#: Variables passed through unchanged when set on the host (kas-container's list).
PASSTHROUGH = (
    "TERM",
    "KAS_DISTRO",
    "KAS_MACHINE",
    "KAS_TARGET",
    "KAS_TASK",
    "KAS_CLONE_DEPTH",
    "KAS_PREMIRRORS",
    "DISTRO_APT_PREMIRRORS",
    "BB_NUMBER_THREADS",
    "PARALLEL_MAKE",
    "GIT_CREDENTIAL_USEHTTPPATH",
    "TZ",
    "SSTATE_MIRRORS",
)
PROXIES = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "NO_PROXY")

LABEL_PREFIX = "io.kasctl"
PATH_FIX = "rename or move it (or symlink it to a plain path and pass that)"


@dataclass(frozen=True)
class Volume:
    """A pod's volume: scratch (emptyDir), a claim, a secret's key, or the cloned source."""

    kind: str  # "scratch", "claim", "secret", "source"
    name: str
    #: A secret's key (mounted as one file), or None for the whole volume.
    key: str | None = None


@dataclass(frozen=True)
class PodRequest:
    """--emit kubernetes: where the pod gets the source, and the caches' claims."""

    remote: str
    commit: str
    downloads_claim: str = "kasctl-downloads"
    sstate_claim: str = "kasctl-sstate"
    storage_class: str | None = None
    cache_size: str = "50Gi"


@dataclass(frozen=True)
class PodLife:
    """How a build's pod lives, decided here (kasctl.engine.kubernetes only renders it)."""

    #: The ids that clone the source in the init container: builder's, never root.
    source_user: tuple[int, int]
    #: A failed build is not run again (backoffLimit; restartPolicy Never):
    #: its pod stays, with its logs, for the time to live.
    retries: int = 0
    #: Seconds a finished Job (and its pod, with its logs) stays before it is deleted.
    ttl_seconds: int = 86400
    #: The caches' claims: builds on several nodes share them.
    cache_access: str = "ReadWriteMany"


@dataclass(frozen=True)
class Mount:
    #: The path as kasctl sees it (and reads logs from).
    source: str
    target: str
    readonly: bool = False
    #: The same path as the engine's daemon sees it, when that differs: kasctl
    #: runs in a CI job container and the daemon on its host (_through_job).
    engine_source: str | None = None
    #: In a pod: the volume that holds it (kind, name, key), in place of a host path.
    volume: Volume | None = None

    @property
    def seen_by_engine(self) -> str:
        return self.engine_source or self.source


@dataclass(frozen=True)
class Request:
    """What the user asked for, already resolved to absolute host paths."""

    command: str
    build_system: BuildSystem
    work_dir: Path
    image: str
    name: str
    #: The config whose repository is mounted at /repo (and diff's second, at /repo2).
    config: Config | None = None
    config2: Config | None = None
    #: kas's arguments after the command, configs already rewritten to container paths.
    kas_args: tuple[str, ...] = ()
    #: The command writes into the repository (shell, lock, dump --inplace).
    writes_repo: bool = False
    #: A clean command, which may run without a config: it is told the build system.
    cleans: bool = False
    bitbake_args: tuple[str, ...] = ()
    repo_rw: bool | None = None
    runtime_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    proxies_from_env: bool = True
    sudo_cmd: str = "sudo"
    #: kasctl's own pid, recorded on the container so a leftover can be traced.
    pid: int = 0
    #: Checked credentials to share read-only (kasctl.decide.credentials.collect).
    shares: tuple[Share, ...] = ()
    #: The config repo is a git worktree: its common dir, and a host file holding
    #: the .git text that points there inside the container.
    worktree: Worktree | None = None
    worktree_gitfile: str | None = None
    #: -l LEVEL: passed to kas before its command (`kas -l LEVEL build ...`), as kas-container.
    kas_log_level: str | None = None
    #: --kvm: pass /dev/kvm and let builder open it.
    kvm: bool = False
    #: --emit kubernetes: the pod's source and caches.
    pod: PodRequest | None = None


@dataclass(frozen=True)
class RunPlan:
    mode: EngineMode
    binary: str
    executor: tuple[str, ...]
    image: str
    name: str
    labels: tuple[tuple[str, str], ...]
    mounts: tuple[Mount, ...]
    env: tuple[tuple[str, str], ...]
    grants: tuple[Grant, ...]
    workdir: str
    command: tuple[str, ...]
    tty: bool
    interactive: bool
    #: The engine's own init as PID 1 (signal forwarding, reaping); off where
    #: the entrypoint must be that init itself (rootless docker, see entrypoint).
    init: bool = True
    runtime_args: tuple[str, ...] = ()
    #: The engine keeps none of the build's output: it reaches the terminal
    #: straight through the attached streams, and a build's gigabytes of log
    #: would otherwise also be stored by the engine for as long as it runs
    #: (docker's json-file, podman's k8s-file), as kas-container avoids too.
    log_driver: str = "none"
    #: kasctl's entrypoint, started explicitly (isar-rootless: an image's own
    #: ENTRYPOINT must not skip its lock check); `--entrypoint` takes the first word.
    entrypoint: tuple[str, ...] = ()
    #: Problems that do not stop the run but will bite: shown once before it.
    warnings: tuple[str, ...] = ()
    #: (uid, gid) to give the work dir's top level to before the run: kasctl is
    #: root in a CI job container whose checkout is root's and closed to others
    #: (GitHub's container jobs), and builder must create build/ there.
    give_work_dir: tuple[int, int] | None = None
    #: A pod's source and caches (--emit kubernetes), as the request gave them.
    pod: PodRequest | None = None
    #: A pod's resources: requests (and the memory limit), from POD_RESOURCES.
    resources: tuple[tuple[str, str, str], ...] = ()
    #: A pod's life: who clones its source, no retries, its time to live.
    pod_life: PodLife | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        for mount in data["mounts"]:  # only said where they apply
            for key in ("engine_source", "volume"):
                if mount[key] is None:
                    del mount[key]
        return data


def _check_path(path: Path, what: str) -> str:
    return mountable(path, f"{what} path", fix=PATH_FIX)


def _managed_dirs(req: Request) -> tuple[list[Mount], list[tuple[str, str]]]:
    """Mount each managed dir outside the work dir; pass it as /work/... when inside."""
    mounts, env = [], []
    for var, target, _created in MANAGED_DIRS:
        value = req.env.get(var)
        if not value:
            continue
        path = Path(os.path.abspath(value))
        if path.is_relative_to(req.work_dir):
            rel = path.relative_to(req.work_dir).as_posix()
            env.append((var, WORK if rel == "." else f"{WORK}/{rel}"))
        else:
            mounts.append(Mount(_check_path(path, var), target))
            env.append((var, target))
    return mounts, env


#: builder's ids where no host user owns the build: a CI job container whose
#: checkout is root's, and a pod.
BUILD_USER = (1000, 1000)


def _user_ids(host: HostFacts, job: JobContainer | None = None) -> tuple[int, int]:
    """The ids builder gets: the invoking user's (through sudo: SUDO_UID's).

    As root in a CI job container (jobs run as root there), the work dir's
    owner's: the build's files belong to whoever owns the checkout; when
    that is root too (runners check out as root, world-writable), BUILD_USER:
    isar-rootless builds never run as root.

    keep-id (rootless podman) and no user namespace (rootful engines) show
    host ids unchanged inside; on rootless docker the entrypoint nests a
    namespace that does the same (KASCTL_KEEP_ID).
    """
    if host.uid == 0 and host.sudo_uid is not None and host.sudo_gid is not None:
        return host.sudo_uid, host.sudo_gid
    if host.uid == 0 and host.sudo_uid is None and job is not None:
        if job.work_owner and job.work_owner[0] != 0:
            return job.work_owner
        return BUILD_USER
    return host.uid, host.gid


def _subid_warnings(build_system: BuildSystem, mode: EngineMode, host: HostFacts) -> list[str]:
    """One warning when a rootless engine's sub-ids leave Isar too few ids to work at all.

    A range that only leaves nobody/nogroup (65534) unmappable in one run is
    not worth a warning on every build: Isar maps 65534 on its own, and the
    build works (doctor says so).
    """
    if build_system is not BuildSystem.ISAR_ROOTLESS or not mode.rootless:
        return []
    needed = sufficient_host_count(host.uid)
    for kind, rng in (("subuid", host.subuid), ("subgid", host.subgid)):
        if rng is None:
            continue  # no range at all: the preflight refuses the run
        got = rootless_builder_range(rng, host.uid)
        if too_small_to_work(got):
            return [
                f"/etc/{kind} gives {host.user} {rng.count} ids, which leaves Isar "
                f"{got.count if got else 0}: too few for the system users and groups of a "
                f"Debian rootfs (at least {WORKING_RANGE}); a range of {needed} ids would "
                f"suffice (e.g. {host.user}:{rng.start}:{needed} in /etc/subuid and "
                "/etc/subgid, then `podman system migrate`)"
            ]
    return []


def _apparmor_warnings(build_system: BuildSystem, host: HostFacts) -> list[str]:
    if (
        build_system is BuildSystem.ISAR_ROOTLESS
        and host.apparmor_restricts_userns
        and not host.apparmor_rootlesskit_profile
    ):
        return [
            "this host restricts unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns=1) and has no rootlesskit AppArmor "
            "profile: Isar's namespaces will likely be refused; install one that allows "
            "userns, or set the sysctl to 0"
        ]
    return []


Env = list[tuple[str, str]]


def plan(req: Request, host: HostFacts, engine: EngineFacts) -> RunPlan:
    """The RunPlan: the privilege decision, then one small pure function per concern."""
    privileges = decide(req.build_system, engine, host, req.sudo_cmd, kvm=req.kvm)
    mode = privileges.mode
    if mode is EngineMode.KUBERNETES:
        return _pod_plan(req, host, privileges.grants)
    keep_id = _keeps_id(mode, host)
    dir_mounts, dir_env = _managed_dirs(req)
    repo_mounts, workdir = _repositories(req)
    mounts = (
        Mount(_check_path(req.work_dir, "KAS_WORK_DIR"), WORK),
        *dir_mounts,
        *repo_mounts,
        *(Mount(s.source, s.target, readonly=True) for s in req.shares),
    )
    return RunPlan(
        mode=mode,
        binary=engine.binary,
        executor=privileges.executor,
        image=req.image,
        name=req.name,
        labels=_labels(req, host),
        mounts=_through_job(mounts, engine.job),
        env=(
            *_identity(
                req,
                _user_ids(host, engine.job),
                keep_id,
                privileges.kvm_gid,
                engine.job,
                repo_mounts,
            ),
            *dir_env,
            *_avoided_ids(req, mode, host),
            *_environment(req, host),
        ),
        grants=privileges.grants,
        workdir=workdir,
        command=_kas_command(req),
        tty=host.stdout_tty and host.stdin_tty,
        interactive=host.stdin_tty,
        init=not keep_id,
        warnings=tuple(
            _subid_warnings(req.build_system, mode, host)
            + _apparmor_warnings(req.build_system, host)
            + credentials.setting_warnings(req.env)
        ),
        runtime_args=req.runtime_args,
        entrypoint=ENTRYPOINT if req.build_system is BuildSystem.ISAR_ROOTLESS else (),
        give_work_dir=_work_dir_for_builder(host, engine.job),
    )


def _work_dir_for_builder(host: HostFacts, job: JobContainer | None) -> tuple[int, int] | None:
    """Whom the work dir must be given to so that builder can write it, or None."""
    if job is None or host.uid != 0 or host.sudo_uid is not None or job.work_open:
        return None
    ids = _user_ids(host, job)
    return ids if job.work_owner not in (None, ids) else None


#: A pod's resources, (kind, resource, amount): what a small Isar image build
#: needs; edit the emitted Job for bigger ones.
POD_RESOURCES = (
    ("requests", "cpu", "2"),
    ("requests", "memory", "4Gi"),
    ("requests", "ephemeral-storage", "20Gi"),
    ("limits", "memory", "16Gi"),
)
#: Where a pod's caches are mounted (and DL_DIR / SSTATE_DIR point).
POD_DOWNLOADS = "/downloads"
POD_SSTATE = "/sstate"


def _pod_plan(req: Request, host: HostFacts, grants: tuple[Grant, ...]) -> RunPlan:
    """The same build as a pod: volumes in place of host paths, builder the pod's own user."""
    if req.pod is None or req.config is None:  # flow.emit gives both
        raise AssertionError(
            "a pod plan needs the request's pod part and config"
        )  # pragma: no cover
    if req.runtime_args:
        raise UsageError(
            "--runtime-args are engine options; a pod has none",
            fix="leave them out, or edit the emitted Job",
        )
    pod = req.pod
    for share in req.shares:
        if share.target in (AGENT_SOCKET, CACHE_SOCKET):
            raise UsageError(
                f"{share.source} is a socket on this host, which a pod cannot reach",
                fix="leave out --ssh-agent / --git-credential-socket, and give the pod its "
                "credentials as a secret (--ssh-dir, --git-credential-store, NETRC_FILE)",
            )
    mounts = [
        Mount("", WORK, volume=Volume("scratch", "work")),
        Mount(
            "",
            REPO,
            not (req.writes_repo if req.repo_rw is None else req.repo_rw),
            volume=Volume("source", "source"),
        ),  # fmt: skip
        Mount("", POD_DOWNLOADS, volume=Volume("claim", pod.downloads_claim)),
        Mount("", POD_SSTATE, volume=Volume("claim", pod.sstate_claim)),
        *(
            Mount(
                "",
                s.target,
                True,
                volume=Volume(
                    "secret", _secret_name(s.target), None if Path(s.source).is_dir() else "value"
                ),
            )
            for s in req.shares
        ),
    ]
    env = [
        *_identity(req, BUILD_USER, keep_id=False, kvm_gid=None, job=None, repo_mounts=[]),
        ("DL_DIR", POD_DOWNLOADS),
        ("SSTATE_DIR", POD_SSTATE),
        # the volumes arrive root's (emptyDir on some runtimes, many storage
        # classes' claims): the entrypoint gives their top level to builder
        ("KASCTL_OWN_DIRS", ":".join((WORK, POD_DOWNLOADS, POD_SSTATE))),
        # the pod's grants hold only in a user namespace of its own (hostUsers:
        # false): the entrypoint refuses to start in the node's
        ("KASCTL_OWN_USERNS", "1"),
        *_environment(req, host),
    ]
    return RunPlan(
        mode=EngineMode.KUBERNETES,
        binary="",
        executor=(),
        image=req.image,
        name=req.name,
        labels=((f"{LABEL_PREFIX}.version", __version__),),
        mounts=tuple(mounts),
        env=tuple(env),
        grants=grants,
        workdir=REPO,
        command=_kas_command(req),
        tty=False,
        interactive=False,
        init=False,
        warnings=tuple(credentials.setting_warnings(req.env)),
        entrypoint=ENTRYPOINT if req.build_system is BuildSystem.ISAR_ROOTLESS else (),
        pod=pod,
        resources=POD_RESOURCES,
        pod_life=PodLife(source_user=BUILD_USER),
    )


def _secret_name(target: str) -> str:
    """A credential's secret: named after its file (/var/kas/userdata/.netrc -> kasctl-netrc)."""
    base = PurePosixPath(target).name.lower()  # a dot (.netrc) becomes '-', and goes
    return "kasctl-" + "".join(c if c.isalnum() else "-" for c in base).strip("-")


def _through_job(mounts: tuple[Mount, ...], job: JobContainer | None) -> tuple[Mount, ...]:
    """Each source as the daemon sees it, when kasctl runs in a job container it runs.

    The daemon resolves a bind mount's source on its own host, not in the
    job container: a path there is translated through the job container's
    own mounts (the engine's account of them); a path with none (it lives in
    the job container's own layer) cannot reach the build, and is refused.
    """
    if job is None or job.mounts is None:
        return mounts
    out = []
    for m in mounts:
        there = through(m.source, job.mounts)
        if there is None:
            raise UsageError(
                f"{m.source} (mounted at {m.target}) is only in this job container's own "
                "filesystem, so the engine's daemon, which runs on the host, cannot mount it",
                fix="put it on a volume or bind mount of the job container: the checkout's "
                "builds dir (GitLab runner: `[runners.docker] volumes`, or the builds volume "
                "the docker executor makes; GitHub: the workspace), or point KAS_WORK_DIR "
                "and the other dirs there",
            )
        out.append(replace(m, engine_source=there) if there != m.source else m)
    return tuple(out)


def _keeps_id(mode: EngineMode, host: HostFacts) -> bool:
    """Rootless docker: the entrypoint nests a namespace that keeps the user's id."""
    return mode is EngineMode.ROOTLESS_DOCKER and _user_ids(host)[0] != 0


def _identity(
    req: Request,
    ids: tuple[int, int],
    keep_id: bool,
    kvm_gid: int | None,
    job: JobContainer | None,
    repo_mounts: list[Mount],
) -> Env:
    """Who builder is (ids), and what the entrypoint is told about the run."""
    uid, gid = ids
    env = [
        ("USER_ID", str(uid)),
        ("GROUP_ID", str(gid)),
        ("KAS_WORK_DIR", WORK),
        ("KASCTL_BUILD_SYSTEM", req.build_system.value),
        ("KASCTL_VERSION", __version__),
    ]
    if keep_id:
        env.append(("KASCTL_KEEP_ID", "1"))
    if job is not None:  # the job's checkout belongs to the runner: git must accept it
        safe = [m.target for m in repo_mounts] + [WORK]
        env.append(("KASCTL_SAFE_DIRECTORIES", ":".join(dict.fromkeys(safe))))
    if kvm_gid is not None:
        env.append(("KASCTL_KVM_GID", str(kvm_gid)))
    return env


def _kas_command(req: Request) -> tuple[str, ...]:
    """kas's command line: `-l LEVEL` before the command, bitbake's args after `--`."""
    command: list[str] = [req.command, *req.kas_args]
    if req.kas_log_level is not None:  # kas takes -l only before its command
        command[:0] = ["-l", req.kas_log_level]
    if req.cleans and req.build_system.is_isar:
        command.append(f"--{req.build_system.value}")
    if req.bitbake_args:
        command += ["--", *req.bitbake_args]
    return tuple(command)


def _repositories(req: Request) -> tuple[list[Mount], str]:
    """The configs' repositories (read-only unless the command writes), and the start dir."""
    mounts = []
    writable = req.writes_repo if req.repo_rw is None else req.repo_rw
    for cfg, target in ((req.config, REPO), (req.config2, REPO2)):
        if cfg is not None:
            mounts.append(Mount(_check_path(cfg.repo_dir, "repository"), target, not writable))
    if req.config is None:
        return mounts, WORK
    if req.worktree is not None and req.worktree_gitfile is not None:
        common = _check_path(req.worktree.common_dir, "git common dir")
        mounts.append(Mount(common, REPO_COMMON, not writable))
        mounts.append(Mount(req.worktree_gitfile, f"{REPO}/.git", True))
        if req.config.repo_dir == req.work_dir:
            mounts.append(Mount(req.worktree_gitfile, f"{WORK}/.git", True))
    return mounts, REPO


def _avoided_ids(req: Request, mode: EngineMode, host: HostFacts) -> Env:
    """No user namespace around isar-rootless: the ids its namespaces use are real host ids."""
    if req.build_system is not BuildSystem.ISAR_ROOTLESS or mode.rootless:
        return []
    return [
        ("KASCTL_AVOID_UIDS", render_avoid(host.reserved_uids)),
        ("KASCTL_AVOID_GIDS", render_avoid(host.reserved_gids)),
    ]


def _environment(req: Request, host: HostFacts) -> Env:
    """kas-container's passed-through variables, the credentials' and the host's settings."""
    names = PASSTHROUGH + (PROXIES if req.proxies_from_env else ())
    env = [(n, req.env[n]) for n in names if req.env.get(n) and n != "TZ"]
    env += credentials.environment(req.shares, req.env)
    env += [("TZ", req.env["TZ"])] if req.env.get("TZ") else []
    env += credentials.host_settings(req.env, host.localtime)
    return env


def _labels(req: Request, host: HostFacts) -> tuple[tuple[str, str], ...]:
    """What a later kasctl needs to find this container again and judge it left over."""
    return (
        (f"{LABEL_PREFIX}.version", __version__),
        (f"{LABEL_PREFIX}.workdir", str(req.work_dir)),
        (f"{LABEL_PREFIX}.pid", str(req.pid)),
        (f"{LABEL_PREFIX}.host", host.hostname),
    )


def worktree_gitfile_text(worktree: Worktree) -> str:
    """What /repo/.git says inside the container: the common dir is at /repo-common."""
    return f"gitdir: {REPO_COMMON}/{worktree.gitdir}\n"
