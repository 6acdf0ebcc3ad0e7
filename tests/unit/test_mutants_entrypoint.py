"""The entrypoint's decisions that the rest of the suite let change (tests/MUTATION.md).

What a container would do, with the steps that change the image (passwd,
/etc/subuid, setuid, exec) recorded instead of done: an isar-rootless build
never runs as root and always checks the lock; builder's sub-ids avoid the ids
the host passed in KASCTL_AVOID_UIDS / KASCTL_AVOID_GIDS; a privileged run
gets its sudo back, and only that one.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import kasctl.inside.clean  # noqa: F401  (imported here, never while a test swaps shutil out)
from kasctl import __version__, spec
from kasctl.errors import KasctlError
from kasctl.inside.subids import Extent

# ep: the one loaded copy of kasctl/inside/entrypoint.py
from tests.unit.test_entrypoint import LOCKED, _tree, ep

#: A rootful engine's container: every id maps onto the same host id.
IDENTITY = {"uid": (Extent(0, 0, 4294967295),), "gid": (Extent(0, 0, 4294967295),)}


class Exec(Exception):
    """os.execvp was reached: the command the container would run."""


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Run ep.main with every step that touches the image recorded, in order."""
    seen: list[tuple[Any, ...]] = []

    def record(name: str) -> Any:
        return lambda *a, **_kw: seen.append((name, *a))

    for name in ("remap_builder", "install_ssh_dir", "check_locked", "enable_sudo"):
        monkeypatch.setattr(ep, name, record(name))
    monkeypatch.setattr(ep, "write_subids", lambda u, g, m: seen.append(("write_subids", u, g)))
    monkeypatch.setattr(ep, "drop_to", record("drop_to"))
    monkeypatch.setattr(ep, "nest_keep_id", record("nest_keep_id"))
    monkeypatch.setattr(ep, "own_maps", lambda: IDENTITY)
    monkeypatch.setattr(ep.os, "getuid", lambda: 0)
    # These tests run as root on the host: a mutant that takes a branch the real
    # code does not (the rootless-docker nesting, say) must not chown or chmod the
    # host's own files (it did: /usr/bin/newuidmap ended up daemon-owned).
    monkeypatch.setattr(ep.os, "chown", record("chown"))
    monkeypatch.setattr(ep.os, "chmod", record("chmod"))

    def execvp(file: str, args: list[str]) -> None:
        seen.append(("exec", *args))
        raise Exec

    monkeypatch.setattr(ep.os, "execvp", execvp)
    for var in ("USER_ID", "GROUP_ID", "KASCTL_KEEP_ID", "KASCTL_KVM_GID", "GITLAB_CI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("KASCTL_VERSION", raising=False)
    yield seen


def _main(monkeypatch: pytest.MonkeyPatch, build_system: str, **env: str) -> None:
    monkeypatch.setenv("KASCTL_BUILD_SYSTEM", build_system)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(Exec):
        ep.main(["build", "/repo/kas.yml"])


def test_isar_rootless_checks_the_lock_writes_subids_then_drops_to_builder(
    calls: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _main(monkeypatch, "isar-rootless", USER_ID="1001", GROUP_ID="1002")
    assert calls == [
        ("remap_builder", 1001, 1002),
        ("install_ssh_dir", (1001, 1002)),
        ("check_locked",),
        ("write_subids", 1001, 1002),
        ("drop_to", 1001, 1002, ()),
        ("exec", "kas", "build", "/repo/kas.yml"),
    ]


@pytest.mark.parametrize(
    "ids", [{}, {"USER_ID": "0", "GROUP_ID": "0"}, {"USER_ID": "0", "GROUP_ID": "1002"}]
)
def test_isar_rootless_never_builds_as_root(
    calls: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch, ids: dict[str, str]
) -> None:
    monkeypatch.setenv("KASCTL_BUILD_SYSTEM", "isar-rootless")
    for k, v in ids.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(KasctlError) as info:
        ep.main(["build", "/repo/kas.yml"])
    assert info.value.message == "isar-rootless builds run as a normal user, not root"
    assert info.value.fix and "SUDO_UID" in info.value.fix
    assert not [c for c in calls if c[0] in ("exec", "write_subids", "drop_to")]


def test_isar_privileged_restores_sudo_and_does_not_lock(
    calls: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _main(monkeypatch, "isar-privileged", USER_ID="1001", GROUP_ID="1001", KASCTL_KVM_GID="108")
    names = [c[0] for c in calls]
    assert "enable_sudo" in names and "check_locked" not in names
    assert ("drop_to", 1001, 1001, (108,)) in calls


def test_openembedded_neither_locks_nor_restores_sudo(
    calls: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _main(monkeypatch, "openembedded", USER_ID="1001", GROUP_ID="1001")
    names = [c[0] for c in calls]
    assert "enable_sudo" not in names and "check_locked" not in names
    assert "write_subids" not in names


def test_the_entrypoint_refuses_to_start_as_a_normal_user(
    calls: list[tuple[Any, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ep.os, "getuid", lambda: 1001)
    with pytest.raises(KasctlError, match="must start as root"):
        ep.main(["build", "/repo/kas.yml"])
    assert calls == []


# --------------------------------------------------------------------------
# write_subids: the ids the host passes to avoid never become builder's sub-ids
# --------------------------------------------------------------------------


@pytest.fixture
def etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/etc/subuid and /etc/subgid land in tmp_path/etc (the module's own `open`)."""
    (tmp_path / "etc").mkdir()

    def redirected(path: str, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith("/etc/sub"):
            path = str(tmp_path) + str(path)
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(ep, "open", redirected, raising=False)
    return tmp_path / "etc"


def _line(path: Path) -> tuple[int, int]:
    name, start, count = path.read_text().strip().split(":")
    assert name == "builder"
    return int(start), int(count)


def test_subids_avoid_the_host_ids_passed_for_uids_and_gids_each(
    etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KASCTL_AVOID_UIDS", raising=False)
    monkeypatch.delenv("KASCTL_AVOID_GIDS", raising=False)
    ep.write_subids(1001, 1001, IDENTITY)
    plain = _line(etc / "subuid")
    assert plain == _line(etc / "subgid")
    assert plain[0] == 1002  # the largest run of ids past root and builder's own

    monkeypatch.setenv("KASCTL_AVOID_UIDS", "0:100000,100000:600065536")
    monkeypatch.setenv("KASCTL_AVOID_GIDS", "0:70000")
    written = ep.write_subids(1001, 1001, IDENTITY)
    uid_start, uid_count = _line(etc / "subuid")
    gid_start, gid_count = _line(etc / "subgid")
    assert uid_start == 600165536 and uid_start + uid_count == 4294967295
    assert gid_start == 70000
    assert written == (f"builder:{uid_start}:{uid_count}", f"builder:{gid_start}:{gid_count}")


def test_a_container_mapping_no_spare_ids_is_refused_with_the_fix(etc: Path) -> None:
    tiny = {"uid": (Extent(0, 1001, 1),), "gid": (Extent(0, 1001, 1),)}
    with pytest.raises(KasctlError) as info:
        ep.write_subids(0, 0, tiny)
    assert info.value.message == (
        "this container maps no uids beyond root and builder; nested user namespaces cannot work"
    )
    assert info.value.fix and "kasctl doctor" in info.value.fix
    assert not (etc / "subuid").exists()


# --------------------------------------------------------------------------
# A container in miniature: the code that only ever runs as a container's root
# --------------------------------------------------------------------------
#
# `Box` stands in for the entrypoint's `os`, `open`, and the `shutil`, `signal` and
# `ctypes` it imports late: its / is a directory under tmp_path, and the calls that
# would change the process or the host (ids, ownership, setuid bits, fork, unshare,
# kill, exec, exit) act on a small model of the process instead. Files below the
# box's / are really written (modes without setuid/setgid bits, which the model
# keeps); nothing is ever chowned. These tests run as root in CI, and a mutant runs
# whatever branch it likes: a path the box does not know is still inside tmp_path.


class Exited(Exception):
    """os._exit was reached (the container's init ended)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class Execed(Exception):
    """os.execvp was reached: the program, and the process that would run it."""

    def __init__(self, box: Box, file: str, argv: list[str]) -> None:
        super().__init__(file)
        self.file, self.argv = file, argv
        self.ids = (box.uid, box.gid, box.groups)
        self.env = dict(box.environ)


def _ints(*values: object) -> None:
    for v in values:
        if not isinstance(v, int):
            raise TypeError(f"an id or mode must be an int, not {v!r}")


class _BoxPath:
    def __init__(self, box: Box) -> None:
        self.box = box
        self.join = os.path.join
        self.basename = os.path.basename

    def exists(self, path: str) -> bool:
        return os.path.exists(self.box.at(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self.box.at(path))

    def islink(self, path: str) -> bool:
        return os.path.islink(self.box.at(path))


class Box:
    CLONE_NEWUSER = getattr(os, "CLONE_NEWUSER", 0x10000000)  # os has it from 3.12
    WIFEXITED = staticmethod(os.WIFEXITED)
    WTERMSIG = staticmethod(os.WTERMSIG)
    waitstatus_to_exitcode = staticmethod(os.waitstatus_to_exitcode)

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.path = _BoxPath(self)
        self.environ: dict[str, str] = {"HOME": "/root", "PATH": "/usr/bin:/bin"}
        # the process: starts as the container's root, with root's groups
        self.uid, self.gid, self.groups = 0, 0, [0, 1, 2]
        self.unshared: list[int] = []
        self.dumpable = True
        self.owners: dict[str, tuple[int, int]] = {}
        self.modes: dict[str, int] = {}
        # fork, the two pipes to the other process, its end (waitpid), signals
        self.fork_returns = 0
        self.unshare_error: OSError | None = None
        self.peer: dict[int, bytes] = {}  # pipe index -> what the other process writes
        self.sent: list[bytearray] = []
        self._unread: list[bytearray] = []
        self._fds: dict[int, tuple[int, str]] = {}
        self.closed: set[int] = set()
        self.waits: list[tuple[int, int]] = []
        self.reaped: list[int] = []
        self.killed: list[tuple[int, int]] = []
        self.handlers: dict[int, Any] = {}
        self.shutil = SimpleNamespace(rmtree=self._rmtree, copytree=self._copytree)
        self.signal = SimpleNamespace(**{s.name: s for s in signal.Signals}, signal=self._on_signal)
        self.ctypes = SimpleNamespace(CDLL=lambda _name, use_errno=False: self)

    # --- paths: the box's / is self.root; relative paths land inside it too
    def at(self, path: str) -> str:
        if not isinstance(path, str):
            raise TypeError(f"a path must be a str, not {path!r}")
        if path == str(self.root) or path.startswith(f"{self.root}/"):
            return path
        return f"{self.root}{path}" if path.startswith("/") else f"{self.root}/cwd/{path}"

    def name(self, real: str) -> str:
        return "/" + os.path.relpath(real, self.root)

    def file(self, path: str, text: str = "", mode: int = 0o644) -> Path:
        target = Path(self.at(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        self.chmod(path, mode)
        return target

    def text(self, path: str) -> str:
        return Path(self.at(path)).read_text()

    def open(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return builtins.open(self.at(path), *args, **kwargs)

    # --- the file calls the entrypoint makes
    def _modelled(self, real: str, st: os.stat_result) -> Any:
        """The file's type, with the permission bits and owner the model keeps for it.

        A file nobody has chowned is root's, as everything in an image is: the
        real owner below tmp_path is whoever runs the tests.
        """
        name = self.name(real)
        mode = self.modes.get(name, st.st_mode & 0o7777)
        uid, gid = self.owners.get(name, (0, 0))
        return SimpleNamespace(st_mode=(st.st_mode & ~0o7777) | mode, st_uid=uid, st_gid=gid)

    def stat(self, path: str) -> Any:
        return self._modelled(self.at(path), os.stat(self.at(path)))

    def lstat(self, path: str) -> Any:
        real = self.at(path)
        st = os.lstat(real)
        return st if stat.S_ISLNK(st.st_mode) else self._modelled(real, st)

    def scandir(self, path: str) -> Any:
        return os.scandir(self.at(path))

    def walk(self, path: str) -> Any:
        return os.walk(self.at(path))

    def unlink(self, path: str) -> None:
        os.unlink(self.at(path))

    def replace(self, src: str, dst: str) -> None:
        real_src, real_dst = self.at(src), self.at(dst)
        os.replace(real_src, real_dst)
        for record in (self.owners, self.modes):
            record.pop(self.name(real_dst), None)
            if self.name(real_src) in record:
                record[self.name(real_dst)] = record.pop(self.name(real_src))

    def chmod(self, path: str, mode: int) -> None:
        _ints(mode)
        real = self.at(path)
        # on disk no setuid/setgid bit, and the owner may always write, as root can;
        # the mode the entrypoint set is the model's
        os.chmod(real, (mode & 0o777) | (0o700 if os.path.isdir(real) else 0o600))
        self.modes[self.name(real)] = mode

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.lchown(path, uid, gid)

    def lchown(self, path: str, uid: int, gid: int) -> None:
        _ints(uid, gid)
        real = self.at(path)
        os.lstat(real)  # FileNotFoundError as the real call
        self.owners[self.name(real)] = (uid, gid)

    def _rmtree(self, path: str, ignore_errors: bool = False) -> None:
        shutil.rmtree(self.at(path), ignore_errors=ignore_errors)
        top = self.name(self.at(path))
        for record in (self.owners, self.modes):
            for gone in below(record, top):
                del record[gone]

    def _copytree(self, src: str, dst: str, symlinks: bool = False) -> None:
        shutil.copytree(self.at(src), self.at(dst), symlinks=symlinks)

    # --- the process: ids as the kernel allows them to change
    def getuid(self) -> int:
        return self.uid

    def setgroups(self, groups: list[int]) -> None:
        groups = list(groups)
        _ints(*groups)
        if self.uid != 0:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.groups = groups

    def setgid(self, gid: int) -> None:
        _ints(gid)
        if self.uid != 0:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.gid = gid

    def setuid(self, uid: int) -> None:
        _ints(uid)
        if self.uid not in (0, uid):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        self.uid = uid

    def execvp(self, file: str, argv: list[str]) -> None:
        raise Execed(self, file, list(argv))

    def unshare(self, flags: int) -> None:
        if self.unshare_error is not None:
            raise self.unshare_error
        self.unshared.append(flags)

    def fork(self) -> int:
        return self.fork_returns

    def pipe(self) -> tuple[int, int]:
        index = len(self.sent)
        self.sent.append(bytearray())
        self._unread.append(bytearray(self.peer.get(index, b"")))
        r, w = 100 + 2 * index, 101 + 2 * index
        self._fds[r], self._fds[w] = (index, "r"), (index, "w")
        return r, w

    def _end(self, fd: int, kind: str) -> int:
        if self._fds.get(fd, (0, ""))[1] != kind or fd in self.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._fds[fd][0]

    def read(self, fd: int, n: int) -> bytes:
        _ints(n)
        unread = self._unread[self._end(fd, "r")]
        data = bytes(unread[:n])
        del unread[:n]
        return data  # b"" once the other side has said all: it closed its end

    def write(self, fd: int, data: bytes) -> int:
        self.sent[self._end(fd, "w")] += data
        return len(data)

    def close(self, fd: int) -> None:
        self._end(fd, self._fds.get(fd, (0, "?"))[1])
        self.closed.add(fd)

    def kill(self, pid: int, sig: int) -> None:
        self.killed.append((pid, sig))

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        assert options == 0, "the container's init waits, it does not poll"
        for i, (child, status) in enumerate(self.waits):
            if pid in (-1, child):
                del self.waits[i]
                self.reaped.append(child)
                return child, status
        raise ChildProcessError(errno.ECHILD, "No child processes")

    def _exit(self, code: int) -> None:
        raise Exited(code)

    def prctl(self, option: int, arg: int, *_rest: int) -> int:
        if option == 4:  # PR_SET_DUMPABLE
            self.dumpable = bool(arg)
        return 0

    def _on_signal(self, sig: int, handler: Any) -> None:
        self.handlers[sig] = handler


#: The signals an engine or a terminal sends a container that must reach the build.
FORWARDED = frozenset(
    {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2}
)
PASSWD = "root:x:0:0:root:/root:/bin/bash\nbuilder:x:1000:1000::/builder:/bin/bash\n"
GROUP = "root:x:0:\nbuilder:x:1000:\n"
HOME_TREE = {"/builder", "/builder/.bashrc", "/builder/.cache", "/builder/.cache/kas"}
#: A rootful engine's container: every id is the host's own.
IDENTITY_MAP = "         0          0 4294967295\n"
#: Rootless docker: the host user is the container's root, then its sub-ids.
DOCKER_UIDS = "0 1234 1\n1 100000 65536\n"
DOCKER_GIDS = "0 2345 1\n1 200000 65536\n"


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    """kasctl's image as the Dockerfile leaves it (locked), the entrypoint inside it."""
    b = Box(tmp_path / "root")
    monkeypatch.setattr(ep, "os", b)
    monkeypatch.setattr(ep, "open", b.open, raising=False)
    monkeypatch.setitem(sys.modules, "shutil", b.shutil)
    b.file("/etc/passwd", PASSWD)
    b.file("/etc/group", GROUP)
    Path(b.at("/etc/sudoers.d")).mkdir()
    b.file("/builder/.bashrc", "# builder's\n")
    Path(b.at("/builder/.cache/kas")).mkdir(parents=True)
    for path, mode in LOCKED.items():
        b.file(path, "#!/bin/sh\n", mode)
    b.file("/usr/lib/kasctl/sudo.real", "the real sudo\n", 0o755)
    b.file("/usr/lib/kasctl/setid-stripped", "/usr/bin/su\n/usr/lib/openssh/ssh-keysign\n")
    b.file("/proc/self/uid_map", IDENTITY_MAP)
    b.file("/proc/self/gid_map", IDENTITY_MAP)
    return b


@pytest.fixture
def init(box: Box, monkeypatch: pytest.MonkeyPatch) -> Box:
    """The box, with the signal and ctypes modules the container's init imports."""
    monkeypatch.setitem(sys.modules, "signal", box.signal)
    monkeypatch.setitem(sys.modules, "ctypes", box.ctypes)
    return box


def start(box: Box, argv: list[str] | None = None, **env: str) -> Execed:
    """Start the entrypoint in the box: what it would exec, and as whom."""
    box.environ.update(env)
    with pytest.raises(Execed) as info:
        ep.main(["build", "/repo/kas.yml"] if argv is None else argv)
    return info.value


def refused(box: Box, argv: list[str] | None = None, **env: str) -> KasctlError:
    box.environ.update(env)
    with pytest.raises(KasctlError) as info:
        ep.main(["build", "/repo/kas.yml"] if argv is None else argv)
    return info.value


def below(record: dict[str, Any], top: str) -> dict[str, Any]:
    """The entries of a Box's owners or modes for `top` and what is below it."""
    return {p: v for p, v in record.items() if p == top or p.startswith(f"{top}/")}


def owners_below(box: Box, top: str) -> dict[str, tuple[int, int]]:
    return below(box.owners, top)


def mounted_ssh_dir(box: Box) -> None:
    """--ssh-dir: the host user's ~/.ssh, as the engine mounts it (modes as on the host)."""
    box.file("/var/kas/userdata/.ssh/id_ed25519", "stand-in key\n", 0o644)
    box.file("/var/kas/userdata/.ssh/config.d/hosts", "Host example.invalid\n", 0o664)
    os.symlink("config.d/hosts", box.at("/var/kas/userdata/.ssh/config"))


AS_BUILDER = {"HOME": "/builder", "USER": "builder", "LOGNAME": "builder"}


# --- a start by kasctl on a rootful engine -------------------------------------------


def test_rootful_isar_rootless_start_gives_builder_the_host_ids_and_runs_kas_as_builder(
    box: Box,
) -> None:
    box.file("/etc/sudoers.d/kasctl-builder", "builder ALL=(ALL) NOPASSWD:SETENV: ALL\n", 0o440)
    run = start(
        box,
        USER_ID="1001",
        GROUP_ID="1002",
        KASCTL_BUILD_SYSTEM="isar-rootless",
        KASCTL_AVOID_UIDS="0:100000",
        KASCTL_AVOID_GIDS="0:200000",
    )

    assert (run.file, run.argv) == ("kas", ["kas", "build", "/repo/kas.yml"])
    assert run.ids == (1001, 1002, [1002])
    assert {k: run.env[k] for k in AS_BUILDER} == AS_BUILDER
    assert box.text("/etc/passwd") == (
        "root:x:0:0:root:/root:/bin/bash\nbuilder:x:1001:1002::/builder:/bin/bash\n"
    )
    assert box.text("/etc/group") == "root:x:0:\nbuilder:x:1002:\n"
    assert box.modes["/etc/passwd"] == 0o644
    assert owners_below(box, "/builder") == dict.fromkeys(HOME_TREE, (1001, 1002))
    assert box.text("/etc/subuid") == "builder:100000:4294867295\n"
    assert box.text("/etc/subgid") == "builder:200000:4294767295\n"
    assert not os.path.exists(box.at("/etc/sudoers.d/kasctl-builder")), "no sudo left"
    assert box.unshared == [], "a rootful engine needs no nested namespace"
    assert owners_below(box, "/usr") == {}, "newuidmap/newgidmap stay root's"


def test_an_unlocked_image_stops_the_isar_rootless_start_before_anything_runs(
    box: Box,
) -> None:
    box.file("/usr/bin/sudo", "the real sudo\n", 0o4755)  # a derived image gave sudo back
    error = refused(box, USER_ID="1001", GROUP_ID="1001", KASCTL_BUILD_SYSTEM="isar-rootless")
    assert "setuid/setgid /usr/bin/sudo (/usr/bin/sudo: a real sudo" in error.message
    assert not os.path.exists(box.at("/etc/subuid"))
    assert (box.uid, box.gid) == (0, 0), "nothing ran as builder"


def test_isar_privileged_start_restores_sudo_and_adds_the_kvm_group(box: Box) -> None:
    run = start(
        box,
        USER_ID="1001",
        GROUP_ID="1001",
        KASCTL_BUILD_SYSTEM="isar-privileged",
        KASCTL_KVM_GID="108",
    )
    assert run.ids == (1001, 1001, [1001, 108])
    assert box.text("/usr/bin/sudo") == "the real sudo\n"
    assert (box.owners["/usr/bin/sudo"], box.modes["/usr/bin/sudo"]) == ((0, 0), 0o4755)
    assert box.text("/etc/sudoers.d/kasctl-builder") == ("builder ALL=(ALL) NOPASSWD:SETENV: ALL\n")
    assert box.modes["/etc/sudoers.d/kasctl-builder"] == 0o440
    assert not os.path.exists(box.at("/etc/subuid"))


def test_sudo_is_restored_again_on_a_restarted_container(box: Box) -> None:
    """The second start finds sudo.real already moved: sudo still ends setuid root."""
    ep.enable_sudo()
    box.modes.clear()
    box.owners.clear()
    ep.enable_sudo()
    assert box.text("/usr/bin/sudo") == "the real sudo\n"
    assert (box.owners["/usr/bin/sudo"], box.modes["/usr/bin/sudo"]) == ((0, 0), 0o4755)


def test_kvm_group_only_when_passed(box: Box) -> None:
    run = start(box, USER_ID="1001", GROUP_ID="1001", KASCTL_BUILD_SYSTEM="openembedded")
    assert run.ids == (1001, 1001, [1001])
    assert not os.path.exists(box.at("/etc/sudoers.d/kasctl-builder"))
    assert box.modes["/usr/bin/sudo"] == 0o755, "the blocker stays"


@pytest.mark.parametrize(
    ("build_system", "argv", "runs"),
    [
        (
            "isar-rootless",
            ["clean", "--dry-run", "/repo/kas.yml", "--isar-rootless"],
            [
                "unshare", "--map-auto", "--map-root-user", sys.executable, "-I",
                "-m", "kasctl.inside.clean", "--dry-run", "clean", "/work/out",
                "--work-dir", "/work", "--home", "/builder",
            ],
        ),
        (
            "isar-rootless",
            ["-l", "debug", "cleanall", "/repo/kas.yml"],
            [
                "unshare", "--map-auto", "--map-root-user", sys.executable, "-I",
                "-m", "kasctl.inside.clean", "cleanall", "/work/out",
                "--work-dir", "/work", "--home", "/builder",
            ],
        ),
        ("isar-rootless", ["purge", "/repo/kas.yml"], ["kas", "purge", "/repo/kas.yml"]),
        ("openembedded", ["clean", "/repo/kas.yml"], ["kas", "clean", "/repo/kas.yml"]),
    ],
)  # fmt: skip
def test_isar_rootless_cleans_run_kasctls_one_namespace_cleaner_as_builder(
    box: Box, build_system: str, argv: list[str], runs: list[str]
) -> None:
    run = start(
        box,
        argv,
        USER_ID="1001",
        GROUP_ID="1001",
        KASCTL_BUILD_SYSTEM=build_system,
        KAS_WORK_DIR="/work",
        KAS_BUILD_DIR="/work/out",
    )
    assert (run.file, run.argv) == (runs[0], runs)
    assert run.ids == (1001, 1001, [1001])


def test_the_cleaners_build_dir_defaults_to_the_work_dirs_build(box: Box) -> None:
    box.environ["KAS_WORK_DIR"] = "/srv/w"
    assert ep.rootless_clean(["kas", "clean"])[-6:] == [
        "clean", "/srv/w/build", "--work-dir", "/srv/w", "--home", "/builder",
    ]  # fmt: skip
    del box.environ["KAS_WORK_DIR"]
    assert ep.rootless_clean(["kas", "cleansstate"])[-6:] == [
        "cleansstate", "/work/build", "--work-dir", "/work", "--home", "/builder",
    ]  # fmt: skip


# --- rootless docker: builder in a nested namespace ------------------------------------


def _docker_box(box: Box) -> None:
    box.file("/proc/self/uid_map", DOCKER_UIDS)
    box.file("/proc/self/gid_map", DOCKER_GIDS)
    box.environ.update(
        USER_ID="1234", GROUP_ID="2345", KASCTL_KEEP_ID="1", KASCTL_BUILD_SYSTEM="isar-rootless"
    )


def test_rootless_docker_build_runs_as_builder_in_its_own_namespace(box: Box) -> None:
    """The child's side: its namespace mapped by the init, it becomes builder and runs kas."""
    _docker_box(box)
    mounted_ssh_dir(box)
    box.peer = {1: b"m"}  # the init mapped the namespace

    run = start(box)

    assert box.unshared == [Box.CLONE_NEWUSER]
    assert bytes(box.sent[0]) == b"u", "told the init its namespace is there"
    assert (run.file, run.argv) == ("kas", ["kas", "build", "/repo/kas.yml"])
    assert run.ids == (1234, 2345, [2345])
    assert {k: run.env[k] for k in AS_BUILDER} == AS_BUILDER
    assert "builder:x:1234:2345::/builder:/bin/bash\n" in box.text("/etc/passwd")
    # builder is the container's root once nested: the home is root's in the container
    home = HOME_TREE | {"/builder/.ssh", "/builder/.ssh/id_ed25519", "/builder/.ssh/config"}
    home |= {"/builder/.ssh/config.d", "/builder/.ssh/config.d/hosts"}
    assert owners_below(box, "/builder") == dict.fromkeys(home, (0, 0))
    # newuidmap/newgidmap: setuid to the container id that is the nested root
    for tool in ("/usr/bin/newuidmap", "/usr/bin/newgidmap"):
        assert (box.owners[tool], box.modes[tool]) == ((1, 1), 0o4755)
    # the sub-ids: the largest run past root and builder in the nested namespace
    assert box.text("/etc/subuid") == "builder:1235:64302\n"
    assert box.text("/etc/subgid") == "builder:2346:63191\n"


def test_rootless_docker_init_maps_builder_onto_the_host_user_and_passes_its_status_on(
    init: Box,
) -> None:
    """The parent's side: it writes the child's maps, then stays as init (not dumpable)."""
    box = init
    _docker_box(box)
    Path(box.at("/proc/4242")).mkdir()
    box.fork_returns = 4242
    box.peer = {0: b"u"}
    box.waits = [(4242, 3 << 8)]

    with pytest.raises(Exited) as info:
        ep.main(["build", "/repo/kas.yml"])

    assert info.value.code == 3
    # inside: ids below builder's are the container's 1.., builder's is its 0 (the
    # host user), every id above is itself
    assert box.text("/proc/4242/uid_map") == "0 1 1234\n1234 0 1\n1235 1235 64302\n"
    assert box.text("/proc/4242/gid_map") == "0 1 2345\n2345 0 1\n2346 2346 63191\n"
    assert bytes(box.sent[1]) == b"m"
    assert not box.dumpable
    assert (box.uid, box.gid, box.unshared) == (0, 0, []), "the init stays the container's root"


@pytest.mark.parametrize(
    ("ids", "maps", "subids"),
    [
        (  # a gid beyond the uid map's size, in a larger gid map
            ("1000", "70000"),
            ("0 1000 1\n1 100000 65536\n", "0 70000 1\n1 200000 100000\n"),
            ("builder:1001:64536\n", "builder:1:69999\n"),
        ),
        (  # and the other way round
            ("70000", "1000"),
            ("0 70000 1\n1 200000 100000\n", "0 1000 1\n1 100000 65536\n"),
            ("builder:1:69999\n", "builder:1001:64536\n"),
        ),
    ],
)
def test_rootless_docker_keeps_the_uid_in_the_uid_map_and_the_gid_in_the_gid_map(
    box: Box, ids: tuple[str, str], maps: tuple[str, str], subids: tuple[str, str]
) -> None:
    box.file("/proc/self/uid_map", maps[0])
    box.file("/proc/self/gid_map", maps[1])
    box.peer = {1: b"m"}
    run = start(
        box,
        USER_ID=ids[0],
        GROUP_ID=ids[1],
        KASCTL_KEEP_ID="1",
        KASCTL_BUILD_SYSTEM="isar-rootless",
    )
    assert run.ids == (int(ids[0]), int(ids[1]), [int(ids[1])])
    assert (box.text("/etc/subuid"), box.text("/etc/subgid")) == subids


def test_root_is_not_nested_even_on_rootless_docker(box: Box) -> None:
    run = start(box, USER_ID="0", GROUP_ID="0", KASCTL_KEEP_ID="1")
    assert box.unshared == []
    assert run.ids == (0, 0, [0, 1, 2])
    assert box.text("/etc/passwd") == PASSWD


def test_a_child_whose_namespace_cannot_be_made_says_why(box: Box) -> None:
    box.unshare_error = PermissionError(errno.EPERM, "Operation not permitted")
    with pytest.raises(KasctlError) as info:
        ep.nest_keep_id(1234, 2345, {})
    assert info.value.message == (
        "cannot create the builder's user namespace (Operation not permitted)"
    )
    assert info.value.fix == (
        "the engine's seccomp profile must allow unshare(CLONE_NEWUSER); "
        "run through kasctl, which passes one that does"
    )
    assert bytes(box.sent[0]) == b"", "the init hears nothing and passes the failure on"


def test_a_child_the_init_did_not_map_stops(box: Box) -> None:
    box.peer = {1: b""}  # the init closed its end without writing the maps
    with pytest.raises(KasctlError) as info:
        ep.nest_keep_id(1234, 2345, {})
    assert info.value.message == "the container's init could not map the builder's namespace"
    assert box.groups == [0, 1, 2]


def test_a_mapped_child_keeps_only_builders_group(box: Box) -> None:
    box.peer = {1: b"m"}
    assert ep.nest_keep_id(1234, 2345, {}) is None  # returns, to exec the build
    assert box.groups == [2345]
    assert box.unshared == [Box.CLONE_NEWUSER]


def test_the_init_of_a_child_that_failed_writes_no_map(init: Box) -> None:
    box = init
    Path(box.at("/proc/4242")).mkdir()
    box.fork_returns = 4242
    box.peer = {0: b""}  # the child died before its namespace was there:
    box.waits = [(4242, signal.SIGSYS)]  # a seccomp profile that kills on unshare
    with pytest.raises(Exited) as info:
        ep.nest_keep_id(1234, 2345, ep.own_maps())
    assert info.value.code == 128 + signal.SIGSYS, "the child's own end, passed on"
    assert os.listdir(box.at("/proc/4242")) == []
    assert bytes(box.sent[1]) == b""


def test_the_init_kills_a_child_it_cannot_map(
    init: Box, capsys: pytest.CaptureFixture[str]
) -> None:
    box = init
    box.file("/proc/self/uid_map", DOCKER_UIDS)
    box.file("/proc/self/gid_map", DOCKER_GIDS)
    box.fork_returns = 4242  # no /proc/4242 in the box: the map cannot be written
    box.peer = {0: b"u"}
    box.waits = [(4242, signal.SIGKILL)]
    with pytest.raises(Exited) as info:
        ep.nest_keep_id(1234, 2345, ep.own_maps())
    assert box.killed == [(4242, signal.SIGKILL)]
    assert info.value.code == 128 + signal.SIGKILL
    assert bytes(box.sent[1]) == b""
    assert capsys.readouterr().err.startswith(
        "kasctl-entrypoint: error: mapping the builder's namespace: "
    )


# --- the container's init, while the build runs ----------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(0, 0), (3 << 8, 3), (255 << 8, 255), (signal.SIGTERM, 143), (signal.SIGKILL, 137)],
)
def test_the_init_exits_with_the_builds_status(init: Box, status: int, code: int) -> None:
    init.waits = [(77, 1 << 8), (4242, status), (78, 0)]  # an orphan first, one after
    with pytest.raises(Exited) as info:
        ep._be_init(4242)
    assert info.value.code == code
    assert init.reaped == [77, 4242], "orphans are reaped until the build ends"
    assert not init.dumpable, "builder, with the init's ids, cannot ptrace it"


def test_the_init_forwards_every_stop_signal_to_the_build(init: Box) -> None:
    init.waits = [(4242, 0)]
    with pytest.raises(Exited):
        ep._be_init(4242)
    assert set(init.handlers) == FORWARDED
    for sig in sorted(FORWARDED):
        init.handlers[sig](sig, None)
    assert init.killed == [(4242, sig) for sig in sorted(FORWARDED)]


def test_an_init_with_no_child_left_exits_125(init: Box) -> None:
    with pytest.raises(Exited) as info:
        ep._be_init(4242)
    assert info.value.code == 125


# --- the steps one by one ---------------------------------------------------------------


def test_dropping_to_builder_leaves_no_root_ids(box: Box) -> None:
    ep.drop_to(1001, 1002, (108,))
    assert (box.uid, box.gid, box.groups) == (1001, 1002, [1002, 108])
    assert {k: box.environ[k] for k in AS_BUILDER} == AS_BUILDER
    with pytest.raises(PermissionError):
        box.setuid(0)  # the model's kernel: no way back


def test_remapping_builder_with_a_nested_home_owner(box: Box) -> None:
    ep.remap_builder(1234, 2345, home_owner=(0, 7))
    assert "builder:x:1234:2345::/builder:/bin/bash" in box.text("/etc/passwd").splitlines()
    assert box.text("/etc/group") == "root:x:0:\nbuilder:x:2345:\n"
    assert owners_below(box, "/builder") == dict.fromkeys(HOME_TREE, (0, 7))


def test_rewriting_a_db_changes_only_builders_fields_and_keeps_the_mode(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\nbuilder2:!:1::::::\nbuilder:!:19000::::::")
    shadow.chmod(0o640)
    ep._rewrite_db(str(shadow), "builder", {1: "*", 2: "1"})
    assert shadow.read_text() == (
        "root:*:19000:0:99999:7:::\nbuilder2:!:1::::::\nbuilder:*:1::::::\n"
    )
    assert stat.S_IMODE(shadow.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["shadow"], "no temporary file left"


def test_rewriting_a_db_changes_the_first_entry_only(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.write_text("builder:x:1000:\nbuilder:x:1000:\n")
    ep._rewrite_db(str(group), "builder", {2: "5"})
    assert group.read_text() == "builder:x:5:\nbuilder:x:1000:\n"


def test_a_db_without_builder_is_refused_and_left_alone(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/sh\nbuilder2:x:1:1::/:/bin/sh\n")
    with pytest.raises(KasctlError) as info:
        ep._rewrite_db(str(passwd), "builder", {2: "5"})
    assert info.value.message == f"{passwd} has no entry for builder"
    assert passwd.read_text() == "root:x:0:0::/root:/bin/sh\nbuilder2:x:1:1::/:/bin/sh\n"


def test_the_ssh_dir_becomes_a_private_copy_owned_by_builder(box: Box) -> None:
    mounted_ssh_dir(box)
    box.file("/builder/.ssh/stale", "from the last start\n")
    ep.install_ssh_dir((1001, 1002))

    ssh = Path(box.at("/builder/.ssh"))
    assert sorted(p.name for p in ssh.rglob("*")) == ["config", "config.d", "hosts", "id_ed25519"]
    assert (ssh / "config").is_symlink() and os.readlink(ssh / "config") == "config.d/hosts"
    assert (ssh / "id_ed25519").read_text() == "stand-in key\n"
    assert below(box.modes, "/builder/.ssh") == {
        "/builder/.ssh": 0o700,
        "/builder/.ssh/config.d": 0o700,
        "/builder/.ssh/id_ed25519": 0o600,
        "/builder/.ssh/config.d/hosts": 0o600,
    }
    assert owners_below(box, "/builder/.ssh") == dict.fromkeys(
        [
            "/builder/.ssh", "/builder/.ssh/id_ed25519", "/builder/.ssh/config",
            "/builder/.ssh/config.d", "/builder/.ssh/config.d/hosts",
        ],
        (1001, 1002),
    )  # fmt: skip
    assert box.modes["/var/kas/userdata/.ssh/id_ed25519"] == 0o644, "the mount is not touched"


def test_without_an_ssh_dir_builders_home_is_left_alone(box: Box) -> None:
    ep.install_ssh_dir((1001, 1002))
    assert not os.path.lexists(box.at("/builder/.ssh"))
    assert box.owners == {}


def test_the_entrypoint_reads_its_own_id_maps(box: Box) -> None:
    box.file("/proc/self/uid_map", DOCKER_UIDS)
    box.file("/proc/self/gid_map", DOCKER_GIDS)
    assert ep.own_maps() == {
        "uid": (Extent(0, 1234, 1), Extent(1, 100000, 65536)),
        "gid": (Extent(0, 2345, 1), Extent(1, 200000, 65536)),
    }


def test_a_setid_helper_is_found_where_earlier_directories_are_missing(box: Box) -> None:
    shutil.rmtree(box.at("/usr/lib/openssh"))
    box.file("/usr/libexec/helper", "#!/bin/sh\n", 0o4755)  # no /usr/sbin, /usr/local here
    assert ep.setid_binaries() == ["/usr/libexec/helper"]


# --- used directly: a CI job image, a plain `docker run` --------------------------------


def test_a_gitlab_job_runs_its_script_as_root_with_the_checkout_trusted(box: Box) -> None:
    mounted_ssh_dir(box)
    run = start(box, ["sh", "-c", "make"], GITLAB_CI="true", CI_PROJECT_DIR="/builds/g/p")

    assert (run.file, run.argv) == ("sh", ["sh", "-c", "make"])
    assert run.ids == (0, 0, [0, 1, 2]), "root, with root's own groups"
    assert run.env["HOME"] == "/root" and "USER" not in run.env
    assert box.text("/etc/gitconfig") == '[safe]\n\tdirectory = "/builds/g/p"\n'
    assert box.text("/etc/passwd") == PASSWD, "builder is left alone"
    assert owners_below(box, "/builder") == dict.fromkeys(
        [
            "/builder/.ssh", "/builder/.ssh/id_ed25519", "/builder/.ssh/config",
            "/builder/.ssh/config.d", "/builder/.ssh/config.d/hosts",
        ],
        (0, 0),
    )  # fmt: skip


def test_direct_use_outside_gitlab_writes_no_git_config(box: Box) -> None:
    run = start(box, ["build", "/repo/kas.yml"], CI_PROJECT_DIR="/builds/g/p")
    assert run.argv == ["kas", "build", "/repo/kas.yml"] and run.ids == (0, 0, [0, 1, 2])
    assert not os.path.exists(box.at("/etc/gitconfig"))


def test_a_start_by_kasctl_inside_a_gitlab_job_marks_nothing(box: Box) -> None:
    start(box, USER_ID="1001", GROUP_ID="1001", GITLAB_CI="true", CI_PROJECT_DIR="/builds/g/p")
    assert not os.path.exists(box.at("/etc/gitconfig")), "kasctl's own checkout is builder's"


def test_kasctl_passes_only_kas_commands(box: Box) -> None:
    error = refused(box, ["sh", "-c", "make"], USER_ID="1001", GROUP_ID="1001")
    assert error.message == "'sh' is not a kas command"


def test_half_an_id_pair_leaves_builder_alone(box: Box) -> None:
    """kasctl always passes both; with one of them builder gets neither (no "None" gid)."""
    run = start(box, USER_ID="1001")
    assert box.text("/etc/passwd") == PASSWD
    assert run.ids == (0, 0, [0, 1, 2])


@pytest.mark.parametrize("value", ["12a", "-1", "١٠٠١"])  # the last: Arabic-Indic digits
def test_an_id_that_is_not_a_plain_number_is_refused(box: Box, value: str) -> None:
    error = refused(box, USER_ID=value, GROUP_ID="1001")
    assert error.message == f"USER_ID={value!r} is not a number"
    assert box.text("/etc/passwd") == PASSWD


def test_the_entrypoint_refuses_a_normal_users_start_with_what_to_drop(box: Box) -> None:
    box.uid = 1001
    error = refused(box, USER_ID="1001", GROUP_ID="1001")
    assert error.message == "the entrypoint must start as root (do not pass --user)"


def test_isar_rootless_as_root_says_how_to_run_it(box: Box) -> None:
    error = refused(box, KASCTL_BUILD_SYSTEM="isar-rootless")
    assert error.fix == "run kasctl as your own user (through sudo, kasctl keeps SUDO_UID's ids)"


def test_an_image_older_or_newer_than_kasctl_warns_with_the_rebuild_command(
    box: Box, capsys: pytest.CaptureFixture[str]
) -> None:
    start(box, USER_ID="1001", GROUP_ID="1001", KASCTL_VERSION="0.0.1-host")
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"kasctl-entrypoint: warning: image has kasctl {__version__}, host runs 0.0.1-host; "
        "rebuild it with `kasctl image build`\n",
    )


@pytest.mark.parametrize("version", [__version__, None])
def test_a_matching_or_unknown_host_version_says_nothing(
    box: Box, capsys: pytest.CaptureFixture[str], version: str | None
) -> None:
    if version is not None:
        box.environ["KASCTL_VERSION"] = version
    start(box, USER_ID="1001", GROUP_ID="1001")
    assert capsys.readouterr() == ("", "")


# --- the pure helpers: command line, git config, lock check, sub-ids ---------------------


def test_a_log_level_alone_before_the_command_reaches_kas() -> None:
    assert ep.command_line(["-l", "debug", "build"]) == ["kas", "-l", "debug", "build"]
    assert ep.kas_command(["kas", "-l", "debug", "build"]) == "build"


def test_a_refused_command_lists_the_kas_commands() -> None:
    with pytest.raises(KasctlError) as info:
        ep.command_line(["make"])
    fix = info.value.fix or ""
    assert fix.startswith("use one of: ")
    assert fix.removeprefix("use one of: ").split(", ") == sorted(spec.KAS_COMMANDS)


def test_kas_without_a_command_has_none() -> None:
    assert ep.kas_command(["kas"]) is None
    assert ep.kas_command(["kas", "-l", "debug"]) is None


def test_a_bad_gitlab_path_warns_and_the_other_is_still_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gitconfig = tmp_path / "gitconfig"
    env = {"CI_PROJECT_DIR": "builds/p", "GIT_CLONE_PATH": "/builds/custom"}
    assert ep.gitlab_safe_directories(env, str(gitconfig)) == ["/builds/custom"]
    assert capsys.readouterr().err == (
        "kasctl-entrypoint: warning: CI_PROJECT_DIR='builds/p' is not a plain absolute path; "
        "not marked as a git safe.directory\n"
    )


def test_one_gitlab_variable_unset_is_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gitconfig = tmp_path / "gitconfig"
    assert ep.gitlab_safe_directories({"CI_PROJECT_DIR": "/b/p"}, str(gitconfig)) == ["/b/p"]
    assert capsys.readouterr().err == ""
    assert gitconfig.read_text() == '[safe]\n\tdirectory = "/b/p"\n', "no blank line first"


def test_the_safe_section_is_appended_right_after_a_complete_config(tmp_path: Path) -> None:
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[core]\n\tpager = cat\n")
    ep.gitlab_safe_directories({"GIT_CLONE_PATH": "/b/c"}, str(gitconfig))
    assert gitconfig.read_text() == '[core]\n\tpager = cat\n[safe]\n\tdirectory = "/b/c"\n'


def test_the_lock_check_without_sudo_names_the_binaries_only(tmp_path: Path) -> None:
    _tree(tmp_path, {**LOCKED, "/usr/bin/chfn": 0o4755})
    with pytest.raises(KasctlError) as info:
        ep.check_locked(str(tmp_path))
    assert info.value.message == (
        "this image is not locked for isar-rootless: setuid/setgid /usr/bin/chfn"
    )


def test_the_lock_check_names_each_real_sudo(tmp_path: Path) -> None:
    _tree(tmp_path, {**LOCKED, "/usr/bin/sudo": 0o4755, "/usr/local/bin/sudo": 0o4755})
    with pytest.raises(KasctlError) as info:
        ep.check_locked(str(tmp_path))
    assert info.value.message.endswith(
        " (/usr/bin/sudo and /usr/local/bin/sudo: a real sudo, the build could become root)"
    )


def test_no_spare_ids_fix_names_the_size_needed_and_doctor(etc: Path) -> None:
    with pytest.raises(KasctlError) as info:
        ep.write_subids(0, 0, {"uid": (Extent(0, 1001, 1),), "gid": (Extent(0, 1001, 1),)})
    assert info.value.fix == (
        "give the host user a sub-id range of at least 65536 ids (run `kasctl doctor`)"
    )


def test_a_stripped_binary_since_removed_does_not_end_the_lock_check(tmp_path: Path) -> None:
    """The image's list names a binary a derived image removed; what follows is still checked."""
    _tree(tmp_path, {**LOCKED, "/usr/lib/openssh/ssh-keysign": 0o4755})
    (tmp_path / "usr/lib/kasctl/setid-stripped").write_text(
        "/usr/bin/gone\n/usr/lib/openssh/ssh-keysign\n"
    )
    assert ep.setid_binaries(str(tmp_path)) == ["/usr/lib/openssh/ssh-keysign"]


#: A pod's own user namespace, as a kubelet maps one (65536 ids far above the node's).
POD_MAP = "0 3000000 65536\n"


def test_a_pod_in_the_nodes_own_user_namespace_is_refused_before_anything_changes(
    box: Box,
) -> None:
    """hostUsers: false dropped by the cluster: root and CAP_SYS_ADMIN would be the node's."""
    Path(box.at("/work")).mkdir()
    error = refused(
        box,
        USER_ID="1000",
        GROUP_ID="1000",
        KASCTL_BUILD_SYSTEM="isar-rootless",
        KASCTL_OWN_USERNS="1",
        KASCTL_OWN_DIRS="/work",
    )
    assert error.message.startswith("this pod runs in the node's own user namespace")
    assert "its root and CAP_SYS_ADMIN would be the node's" in error.message
    assert error.message.endswith("did not honour the Job's `hostUsers: false`")
    fix = error.fix or ""
    assert fix.startswith("run it where pods get user namespaces (Kubernetes 1.33 or later")
    assert fix.endswith("README, 'On Kubernetes'); never remove the setting")
    assert box.owners == {} and not os.path.exists(box.at("/etc/subuid")), "nothing changed"


def test_a_pod_in_a_user_namespace_of_its_own_starts(box: Box) -> None:
    box.file("/proc/self/uid_map", POD_MAP)
    box.file("/proc/self/gid_map", POD_MAP)
    run = start(
        box,
        USER_ID="1000",
        GROUP_ID="1000",
        KASCTL_BUILD_SYSTEM="isar-rootless",
        KASCTL_OWN_USERNS="1",
    )
    assert run.ids == (1000, 1000, [1000])
    assert box.text("/etc/subuid") == "builder:1001:64535\n", "the ids above builder's"


def test_outside_a_pod_the_hosts_user_namespace_is_a_rootful_engines_own(box: Box) -> None:
    """Rootful engines run containers in the host's user namespace: that is no refusal."""
    run = start(box, USER_ID="1001", GROUP_ID="1001", KASCTL_BUILD_SYSTEM="openembedded")
    assert run.ids == (1001, 1001, [1001])


@pytest.mark.parametrize(
    "uid_map",
    [
        "0 0 4294967294\n",  # one id short of every id
        "1 1 4294967294\n",  # root not mapped
        "0 0 65536\n",  # the node's first ids, but not all of them: a namespace of its own
        "0 0 4294967295\n1 1 1\n",  # not a single extent
    ],
)
def test_only_the_initial_map_is_the_nodes(uid_map: str) -> None:
    ep.require_own_userns(tuple(ep.parse_id_map(uid_map)))


def test_the_initial_map_is_refused() -> None:
    with pytest.raises(KasctlError):
        ep.require_own_userns(ep.parse_id_map(IDENTITY_MAP))


def test_kasctl_in_a_job_container_trusts_the_jobs_checkouts_for_builder(box: Box) -> None:
    """KASCTL_SAFE_DIRECTORIES: the runner's checkout is not builder's, git must work in it."""
    start(box, USER_ID="1001", GROUP_ID="1001", KASCTL_SAFE_DIRECTORIES="/builds/a:/builds/b")
    assert box.text("/etc/gitconfig") == (
        '[safe]\n\tdirectory = "/builds/a"\n\tdirectory = "/builds/b"\n'
    )


def test_a_direct_start_ignores_kasctls_safe_directories(box: Box) -> None:
    """Only kasctl sets KASCTL_SAFE_DIRECTORIES; a direct start (no USER_ID) is not its."""
    start(box, ["sh", "-c", "true"], KASCTL_SAFE_DIRECTORIES="/builds/a")
    assert not os.path.exists(box.at("/etc/gitconfig"))


def test_a_pod_gives_builder_the_volumes_that_arrive_roots_and_closed(
    box: Box, capsys: pytest.CaptureFixture[str]
) -> None:
    for path, mode in (("/work", 0o755), ("/downloads", 0o777), ("/sstate", 0o755)):
        Path(box.at(path)).mkdir()
        box.chmod(path, mode)
    box.owners["/sstate"] = (5, 5)  # a claim that arrives someone else's
    start(
        box,
        USER_ID="1000",
        GROUP_ID="1000",
        KASCTL_OWN_DIRS="/work:/downloads:/sstate:/gone",
    )
    assert box.owners["/work"] == (1000, 1000), "root's and closed: builder's now"
    assert "/downloads" not in box.owners, "open to all: left as it is"
    assert box.owners["/sstate"] == (5, 5), "not root's: left as it is"
    assert "cannot give /gone to builder" in capsys.readouterr().err, "and the start goes on"


def test_a_start_as_root_gives_no_volume_away(box: Box) -> None:
    Path(box.at("/work")).mkdir()
    start(box, USER_ID="0", GROUP_ID="0", KASCTL_OWN_DIRS="/work")
    assert "/work" not in box.owners


def test_a_safe_directory_with_a_quote_and_a_backslash_reads_back_in_git(tmp_path: Path) -> None:
    """git itself reads each path back exactly as given, however it is spelled."""
    gitconfig = tmp_path / "gitconfig"
    paths = ['/builds/a "quoted" dir', "/builds/back\\slash", '/builds/both\\"x']
    ep.safe_directories(paths, str(gitconfig))
    read = subprocess.run(
        ["git", "config", "--file", str(gitconfig), "--get-all", "safe.directory"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.splitlines() == paths
