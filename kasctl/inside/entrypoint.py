"""kasctl's container entrypoint: prepare the builder user, then become it and run kas.

Runs as root at every container start, so it is stdlib-only and does its work
in-process (no usermod/groupmod/chown subprocesses). Steps:

0. in a pod (KASCTL_OWN_USERNS=1), refuse the node's own user namespace
   (`require_own_userns`);
1. give `builder` the host user's uid and gid (USER_ID / GROUP_ID), so that
   files written to the bind mounts belong to that user on the host; where
   the engine maps the host user to the container's root (rootless docker,
   KASCTL_KEEP_ID=1), nest one user namespace in which builder's uid is
   that root, as podman's --userns=keep-id does (see `nest_keep_id`);
2. write /etc/subuid and /etc/subgid for builder from the container's OWN
   /proc/self/uid_map and gid_map (kasctl.inside.subids), so that Isar's nested
   namespaces get the largest range this container can actually map;
3. per build system: isar-privileged re-enables sudo for builder;
   isar-rootless leaves the image locked (no sudo, no setuid binaries but
   newuidmap/newgidmap) and checks that it is;
4. drop to builder and exec `kas COMMAND ...` (or the command for `shell`).

Used directly (no USER_ID: not started by kasctl, e.g. as a GitLab CI job
image) it runs what it is given as root, as kas's own image does, and in a
GitLab job (GITLAB_CI set) first marks the checkout as a git safe.directory:
the runner's checkout belongs to another uid, which git refuses to work in.

Errors go to stderr as one `kasctl-entrypoint: error: ...` line, exit 125
(the engines' own "the container could not start" status).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping

from kasctl import __version__, spec
from kasctl.errors import KasctlError
from kasctl.inside.subids import (
    Extent,
    choose_range,
    keep_id_extents,
    parse_avoid,
    parse_id_map,
    render_id_map,
)

BUILDER = "builder"
HOME = "/builder"
USERDATA = "/var/kas/userdata"
LIBDIR = "/usr/lib/kasctl"
#: The real sudo, kept without its setuid bit while the image is locked.
SUDO_REAL = f"{LIBDIR}/sudo.real"
SUDOERS_RULE = "/etc/sudoers.d/kasctl-builder"
#: The commands kasctl passes in (kasctl.spec, the one table of commands).
KAS_COMMANDS = frozenset(spec.KAS_COMMANDS)
#: kas's log levels, which may stand before the command (`-l LEVEL build ...`).
LOG_LEVELS = frozenset(spec.LOG_LEVELS)
EXIT_START = 125
#: System-wide git config: read by every user, root included.
GITCONFIG = "/etc/gitconfig"
#: GitLab's variables naming the job's checkout (GIT_CLONE_PATH: a custom clone dir).
GITLAB_CHECKOUT_VARS = ("CI_PROJECT_DIR", "GIT_CLONE_PATH")
#: Cleans kasctl does itself in isar-rootless (purge stays with kas).
CLEANS = frozenset(spec.CLEANER_COMMANDS)


class EntrypointError(KasctlError):
    pass


def _int_env(name: str) -> int | None:
    value = os.environ.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise EntrypointError(f"{name}={value!r} is not a number")
    return int(value)


def _rewrite_db(path: str, name: str, fields: dict[int, str]) -> None:
    """Set fields of `name`'s line in a colon-separated file like /etc/passwd."""
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        parts = line.split(":")
        if parts[0] == name:
            for index, value in fields.items():
                parts[index] = value
            lines[i] = ":".join(parts)
            break
    else:
        raise EntrypointError(f"{path} has no entry for {name}")
    tmp = f"{path}.kasctl"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)


def remap_builder(uid: int, gid: int, home_owner: tuple[int, int] | None = None) -> None:
    """Give builder the host user's ids (duplicates allowed, like usermod -o).

    `home_owner` is who must own /builder in THIS namespace for builder to
    own it (differs only when builder runs in a nested one).
    """
    _rewrite_db("/etc/passwd", BUILDER, {2: str(uid), 3: str(gid)})
    _rewrite_db("/etc/group", BUILDER, {2: str(gid)})
    owner_uid, owner_gid = home_owner or (uid, gid)
    for root, dirs, files in os.walk(HOME):
        for entry in dirs + files:
            os.lchown(os.path.join(root, entry), owner_uid, owner_gid)
    os.lchown(HOME, owner_uid, owner_gid)


def install_ssh_dir(owner: tuple[int, int]) -> None:
    """--ssh-dir arrives read-only and owned by the host user; ssh wants it private and
    owned by builder, so it gets a copy in builder's home."""
    source = f"{USERDATA}/.ssh"
    if not os.path.isdir(source):
        return
    target = f"{HOME}/.ssh"
    import shutil  # only with --ssh-dir: shutil costs more than the rest of the imports

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True)
    for root, _dirs, files in os.walk(target):
        os.chmod(root, 0o700)
        os.lchown(root, *owner)
        for name in files:
            path = os.path.join(root, name)
            os.lchown(path, *owner)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def own_maps() -> dict[str, tuple[Extent, ...]]:
    maps = {}
    for kind in ("uid", "gid"):
        with open(f"/proc/self/{kind}_map") as f:
            maps[kind] = parse_id_map(f.read())
    return maps


def write_subids(uid: int, gid: int, maps: dict[str, tuple[Extent, ...]]) -> tuple[str, str]:
    """Write builder's one line to /etc/subuid and /etc/subgid from the id maps builder sees."""
    written = []
    for kind, own, avoid_var in (
        ("uid", uid, "KASCTL_AVOID_UIDS"),
        ("gid", gid, "KASCTL_AVOID_GIDS"),
    ):
        extents = maps[kind]
        avoid = parse_avoid(os.environ.get(avoid_var, ""))
        rng = choose_range(extents, own, avoid)
        if rng is None:
            raise EntrypointError(
                f"this container maps no {kind}s beyond root and builder; "
                "nested user namespaces cannot work",
                fix="give the host user a sub-id range of at least 65536 ids (run `kasctl doctor`)",
            )
        line = f"{BUILDER}:{rng.start}:{rng.count}"
        with open(f"/etc/sub{kind}", "w") as f:
            f.write(line + "\n")
        written.append(line)
    return written[0], written[1]


#: The id map of the initial user namespace (the host's, a node's): every id is itself.
INITIAL_MAP = (Extent(0, 0, 4294967295),)


def require_own_userns(uid_map: tuple[Extent, ...]) -> None:
    """In a pod (KASCTL_OWN_USERNS=1): refuse to run in the node's own user namespace.

    kasctl grants a pod CAP_SYS_ADMIN and an unmasked /proc only together with
    `hostUsers: false`. A cluster without user namespaces for pods (the feature
    gate off, or a runtime without support) drops that field without a word,
    and the same pod then holds those privileges as the node's root.
    """
    if uid_map == INITIAL_MAP:
        raise EntrypointError(
            "this pod runs in the node's own user namespace, so its root and CAP_SYS_ADMIN "
            "would be the node's: the cluster did not honour the Job's `hostUsers: false`",
            fix="run it where pods get user namespaces (Kubernetes 1.33 or later, a runtime "
            "and kernel that support them: README, 'On Kubernetes'); never remove the setting",
        )


def own_dirs(paths: list[str], uid: int, gid: int) -> None:
    """In a pod: give builder the top level of its volumes that arrive root-owned.

    A pod's emptyDir and many storage classes' claims start owned by root
    (of the pod's user namespace) and closed to others; builder must create
    its build dir and the caches there. Only the top level, only root's.
    """
    for path in paths:
        try:
            st = os.stat(path)
            if st.st_uid == 0 and not st.st_mode & 0o002:
                os.chown(path, uid, gid)
        except OSError as exc:
            print(
                f"kasctl-entrypoint: warning: cannot give {path} to builder: {exc}", file=sys.stderr
            )


def enable_sudo() -> None:
    """isar-privileged: Isar runs `sudo -E`; restore the real sudo for builder."""
    if os.path.exists(SUDO_REAL):
        os.replace(SUDO_REAL, "/usr/bin/sudo")
    os.chown("/usr/bin/sudo", 0, 0)
    os.chmod("/usr/bin/sudo", 0o4755)
    with open(SUDOERS_RULE, "w") as f:
        f.write(f"{BUILDER} ALL=(ALL) NOPASSWD:SETENV: ALL\n")
    os.chmod(SUDOERS_RULE, 0o440)


#: Where check_locked looks for setuid/setgid binaries, besides every path kasctl's image
#: stripped (SETID_STRIPPED): where an image derived from kasctl's puts programs. A few
#: ms at each start; all of / would take some 200 ms.
SETID_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/libexec", LIBDIR)
#: The list the Dockerfile wrote of the binaries it took the bits from.
SETID_STRIPPED = f"{LIBDIR}/setid-stripped"
#: Isar's rootless namespaces need these two setuid.
SETID_KEPT = ("/usr/bin/newuidmap", "/usr/bin/newgidmap")


def setid_binaries(root: str = "/") -> list[str]:
    """The setuid/setgid files but newuidmap/newgidmap in SETID_DIRS and SETID_STRIPPED."""

    def at(path: str) -> str:
        return os.path.join(root, path.lstrip("/"))

    candidates: list[str] = []
    for directory in SETID_DIRS:
        try:
            with os.scandir(at(directory)) as entries:
                candidates += [f"{directory}/{e.name}" for e in entries]
        except OSError:
            continue
    try:
        with open(at(SETID_STRIPPED)) as f:
            candidates += f.read().splitlines()
    except OSError:
        pass
    found = set()
    for path in candidates:
        try:
            mode = os.lstat(at(path)).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID) and path not in SETID_KEPT:
            found.add(path)
    return sorted(found)


def check_locked(root: str = "/") -> None:
    """isar-rootless: refuse to start unless the image's lock-down is intact.

    The image is built locked (see the Dockerfile): sudo is the blocker
    script and no binary but newuidmap/newgidmap keeps a setuid/setgid bit.
    An image derived from kasctl's may have undone that (kasctl starts this
    entrypoint explicitly, whatever ENTRYPOINT the image sets), and so would
    a privileged run's sudoers rule: both are checked here, cheaply.
    """
    rule = os.path.join(root, SUDOERS_RULE.lstrip("/"))
    if os.path.exists(rule):
        os.unlink(rule)
    found = setid_binaries(root)
    if not found:
        return
    sudo = [p for p in found if os.path.basename(p) == "sudo"]
    raise EntrypointError(
        "this image is not locked for isar-rootless: setuid/setgid "
        + ", ".join(found)
        + (f" ({' and '.join(sudo)}: a real sudo, the build could become root)" if sudo else ""),
        fix="keep kasctl's lock in your image: derive it with "
        f"`FROM localhost/kasctl/kas-isar:{__version__}` and neither restore sudo nor set "
        "setuid/setgid bits (`chmod ug-s` those files in its Dockerfile), "
        "or build with --isar-privileged",
    )


def nest_keep_id(uid: int, gid: int, maps: dict[str, tuple[Extent, ...]]) -> None:
    """Move this process into a user namespace where builder's ids are the parent's root.

    The parent process stays behind as the container's init, in the
    container's namespace: it writes the child's id maps (only a process
    with CAP_SETUID in the parent namespace may map more than its own id),
    then forwards signals and passes the child's exit status on. It makes
    itself non-dumpable first, so the builder, whose ids in the container
    are the same as its own, cannot ptrace its way back to capabilities.
    The child returns and goes on to exec the build as builder.
    """
    import signal  # only this rootless-docker path needs it; it costs as much as all else

    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(mapped_w)
        try:
            os.unshare(os.CLONE_NEWUSER)  # type: ignore[attr-defined]  # 3.12+, as in the image
        except OSError as exc:
            raise EntrypointError(
                f"cannot create the builder's user namespace ({exc.strerror})",
                fix="the engine's seccomp profile must allow unshare(CLONE_NEWUSER); "
                "run through kasctl, which passes one that does",
            ) from None
        os.write(ready_w, b"u")
        if os.read(mapped_r, 1) != b"m":
            raise EntrypointError("the container's init could not map the builder's namespace")
        os.setgroups([gid])
        return
    os.close(ready_w)
    os.close(mapped_r)
    if os.read(ready_r, 1) != b"u":  # the child failed and said why
        _be_init(child)
    try:
        for kind, own in (("uid", uid), ("gid", gid)):
            with open(f"/proc/{child}/{kind}_map", "w") as f:
                f.write(render_id_map(keep_id_extents(maps[kind], own)))
        os.write(mapped_w, b"m")
    except OSError as exc:
        print(f"kasctl-entrypoint: error: mapping the builder's namespace: {exc}", file=sys.stderr)
        os.kill(child, signal.SIGKILL)
    os.close(mapped_w)
    _be_init(child)


def _be_init(child: int) -> None:
    """Forward signals to the build and reap orphans until it ends; exit with its status."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    for sig in (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
    ):
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(EXIT_START)
        if pid == child:
            os._exit(
                os.waitstatus_to_exitcode(status) % 256
                if os.WIFEXITED(status)
                else 128 + os.WTERMSIG(status)
            )


def drop_to(uid: int, gid: int, extra_groups: tuple[int, ...] = ()) -> None:
    os.setgroups([gid, *extra_groups])
    os.setgid(gid)
    os.setuid(uid)
    os.environ.update(HOME=HOME, USER=BUILDER, LOGNAME=BUILDER)


def command_line(argv: list[str], direct: bool = False) -> list[str]:
    """`build /repo/x.yml` -> `kas build /repo/x.yml`; other commands only in direct use.

    kasctl only ever passes kas commands, maybe after kas's `-l LEVEL` (kas
    takes it only before its command), and `--` for its probes; so from
    kasctl anything else is a mistake and refused. Used directly (`direct`,
    e.g. by a CI runner that runs its job script in the image) any command runs.
    """
    if not argv:
        return ["kas", "--help"]
    level = argv[:2] if len(argv) > 2 and argv[0] == "-l" and argv[1] in LOG_LEVELS else []
    if argv[len(level)] in KAS_COMMANDS:
        return ["kas", *argv]
    if argv[0] == "--":  # internal: a plain command, used by kasctl's own probes
        return argv[1:]
    if direct:
        return argv
    raise EntrypointError(
        f"{argv[len(level)]!r} is not a kas command",
        fix=f"use one of: {', '.join(sorted(KAS_COMMANDS))}",
    )


def kas_command(cmd: list[str]) -> str | None:
    """The kas command in command_line's result (`kas [-l LEVEL] COMMAND ...`), if any."""
    if cmd[:1] != ["kas"]:
        return None
    at = 3 if cmd[1:2] == ["-l"] else 1
    return cmd[at] if len(cmd) > at else None


def _git_config_value(path: str) -> str:
    """A path as a quoted git config value (backslash and quote escaped)."""
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gitlab_safe_directories(env: Mapping[str, str], gitconfig: str) -> list[str]:
    """In a GitLab job, mark the checkout as a git safe.directory for everyone.

    The runner checks the repository out as its own uid and runs the job as
    this image's root, so git refuses the repository ("dubious ownership").
    Only the checkout GitLab names is marked, never "*". Returns the paths added.
    """
    paths: list[str] = []
    for var in GITLAB_CHECKOUT_VARS:
        value = env.get(var, "")
        if not value:
            continue
        if not value.startswith("/") or any(c in value for c in "\n\r\0"):
            print(
                f"kasctl-entrypoint: warning: {var}={value!r} is not a plain absolute path; "
                "not marked as a git safe.directory",
                file=sys.stderr,
            )
            continue
        if value not in paths:
            paths.append(value)
    return safe_directories(paths, gitconfig)


def safe_directories(paths: list[str], gitconfig: str) -> list[str]:
    """Mark these repositories as git safe.directory in gitconfig (once each); the paths."""
    if not paths:
        return []
    try:
        with open(gitconfig) as f:
            existing = f.read()
    except FileNotFoundError:
        existing = ""
    lines = [f"\tdirectory = {_git_config_value(p)}" for p in paths]
    new = [line for line in lines if line not in existing.splitlines()]
    if new:
        with open(gitconfig, "a") as f:
            if existing and not existing.endswith("\n"):
                f.write("\n")
            f.write("[safe]\n" + "".join(f"{line}\n" for line in new))
    return paths


def rootless_clean(cmd: list[str]) -> list[str]:
    """isar-rootless clean/cleansstate/cleanall: one user namespace for the whole job.

    kas's own clean enters a namespace per foreign-owned directory; kasctl's
    cleaner (kasctl.inside.clean) runs once as root of ONE `unshare --map-auto
    --map-root-user`, which maps builder and all of its sub-ids.
    """
    from kasctl.inside import clean

    build_dir = (
        os.environ.get("KAS_BUILD_DIR") or f"{os.environ.get('KAS_WORK_DIR', '/work')}/build"
    )
    return clean.namespaced_argv(
        sys.executable,
        kas_command(cmd) or "",
        build_dir,
        dry_run="--dry-run" in cmd,
        work_dir=os.environ.get("KAS_WORK_DIR", "/work"),
        home=HOME,
    )


def main(argv: list[str]) -> None:
    image_for = os.environ.get("KASCTL_VERSION")
    if image_for and image_for != __version__:
        print(
            f"kasctl-entrypoint: warning: image has kasctl {__version__}, host runs {image_for}; "
            "rebuild it with `kasctl image build`",
            file=sys.stderr,
        )
    mode = os.environ.get("KASCTL_BUILD_SYSTEM", "openembedded")
    uid = _int_env("USER_ID")
    gid = _int_env("GROUP_ID")
    direct = uid is None  # not started by kasctl: a CI job image, or a plain `run`
    cmd = command_line(argv, direct=direct)
    if os.getuid() != 0:
        raise EntrypointError("the entrypoint must start as root (do not pass --user)")
    maps = own_maps()
    if os.environ.get("KASCTL_OWN_USERNS") == "1":
        require_own_userns(maps["uid"])
    if direct and os.environ.get("GITLAB_CI"):
        gitlab_safe_directories(os.environ, GITCONFIG)
    elif not direct and os.environ.get("KASCTL_SAFE_DIRECTORIES"):
        # kasctl in a CI job container: the job's checkout is the runner's, not builder's
        safe_directories(os.environ["KASCTL_SAFE_DIRECTORIES"].split(":"), GITCONFIG)
    if uid is None or gid is None:
        uid, gid = 0, 0
    nest = os.environ.get("KASCTL_KEEP_ID") == "1" and uid != 0
    if nest:
        remap_builder(uid, gid, home_owner=(0, 0))
        maps = {k: tuple(keep_id_extents(v, uid if k == "uid" else gid)) for k, v in maps.items()}
        # newuidmap/newgidmap must stay setuid-root for builder: owned by the
        # container id that becomes root in the nested namespace.
        for tool in ("/usr/bin/newuidmap", "/usr/bin/newgidmap"):
            os.chown(tool, maps["uid"][0].outside, maps["gid"][0].outside)
            os.chmod(tool, 0o4755)
    elif uid != 0:
        remap_builder(uid, gid)
    install_ssh_dir((0, 0) if nest else (uid, gid))
    if uid != 0 and os.environ.get("KASCTL_OWN_DIRS"):
        own_dirs(os.environ["KASCTL_OWN_DIRS"].split(":"), uid, gid)
    if mode == "isar-rootless" and kas_command(cmd) in CLEANS:
        cmd = rootless_clean(cmd)
    if mode == "isar-rootless":
        if uid == 0:
            raise EntrypointError(
                "isar-rootless builds run as a normal user, not root",
                fix="run kasctl as your own user (through sudo, kasctl keeps SUDO_UID's ids)",
            )
        check_locked()
        write_subids(uid, gid, maps)
    elif mode == "isar-privileged":
        enable_sudo()
    if nest:
        nest_keep_id(uid, gid, own_maps())
        drop_to(uid, gid)
    elif uid != 0:
        # --kvm on a rootful engine: /dev/kvm's group, so builder can open it
        kvm_gid = _int_env("KASCTL_KVM_GID")
        drop_to(uid, gid, () if kvm_gid is None else (kvm_gid,))
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KasctlError as exc:
        print(exc.render().replace("kasctl:", "kasctl-entrypoint:"), file=sys.stderr)
        sys.exit(EXIT_START)
    except OSError as exc:
        print(f"kasctl-entrypoint: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_START)
