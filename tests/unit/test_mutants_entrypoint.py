"""The entrypoint's decisions that the rest of the suite let change (tests/MUTATION.md).

What a container would do, with the steps that change the image (passwd,
/etc/subuid, setuid, exec) recorded instead of done: an isar-rootless build
never runs as root and always checks the lock; builder's sub-ids avoid the ids
the host passed in KASCTL_AVOID_UIDS / KASCTL_AVOID_GIDS; a privileged run
gets its sudo back, and only that one.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kasctl.errors import KasctlError
from kasctl.inside.subids import Extent
from tests.unit.test_entrypoint import ep  # the one loaded copy of kasctl/inside/entrypoint.py

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
