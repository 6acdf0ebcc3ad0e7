"""The rootless-docker profile: podman's, with exactly sethostname/setdomainname freed.

Judged the way the engines apply a profile: a rule counts for a container
when the container holds every capability in its `includes` and none in its
`excludes`; the first rule naming a syscall decides, else the default action.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from kasctl.errors import HostError
from kasctl.host import seccomp

PODMAN = Path("/usr/share/containers/seccomp.json")

#: A profile shaped like podman's: a default errno, a long allow list, and the
#: UTS calls allowed with CAP_SYS_ADMIN and refused without it.
SMALL: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "syscalls": [
        {"names": ["read", "write", "pivot_root", "unshare"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["bpf", "sethostname", "setdomainname", "setns"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["bpf", "sethostname", "setdomainname", "setns"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
    ],
}


def action(profile: dict[str, Any], syscall: str, caps: set[str]) -> str:
    for rule in profile["syscalls"]:
        if syscall not in rule.get("names", []):
            continue
        needs = set((rule.get("includes") or {}).get("caps", []))
        refuses = set((rule.get("excludes") or {}).get("caps", []))
        if needs <= caps and not refuses & caps:
            return str(rule["action"])
    return str(profile["defaultAction"])


def profiles() -> list[dict[str, Any]]:
    found = [SMALL]
    if PODMAN.is_file():
        found.append(json.loads(PODMAN.read_text()))
    return found


@pytest.mark.parametrize("base", profiles(), ids=lambda p: f"{len(p['syscalls'])} rules")
@pytest.mark.parametrize("caps", [set(), {"CAP_SYS_ADMIN"}], ids=["no caps", "SYS_ADMIN"])
def test_only_the_uts_calls_change_and_only_to_allowed(
    base: dict[str, Any], caps: set[str]
) -> None:
    derived = seccomp.with_uts_rule(base)
    names = {n for rule in base["syscalls"] for n in rule.get("names", [])} | {"kexec_load"}
    for name in sorted(names):
        expected = "SCMP_ACT_ALLOW" if name in seccomp.UTS_SYSCALLS else action(base, name, caps)
        assert action(derived, name, caps) == expected, name
    assert derived["defaultAction"] == base["defaultAction"]


def test_base_profile_left_as_it_was() -> None:
    before = json.dumps(SMALL, sort_keys=True)
    seccomp.with_uts_rule(SMALL)
    assert json.dumps(SMALL, sort_keys=True) == before


def test_profile_without_rules_is_refused() -> None:
    with pytest.raises(ValueError):
        seccomp.with_uts_rule({"defaultAction": "SCMP_ACT_ERRNO"})


def _write(tmp_path: Path, profile: dict[str, Any]) -> Path:
    base = tmp_path / "seccomp.json"
    base.write_text(json.dumps(profile))
    return base


def test_written_once_and_readable_by_the_engine_client(tmp_path: Path) -> None:
    base = _write(tmp_path, SMALL)
    first = Path(seccomp.uts_profile(str(base), tmp_path / "cache"))
    assert first.is_file() and first.stat().st_mode & 0o777 == 0o644
    assert action(json.loads(first.read_text()), "sethostname", set()) == "SCMP_ACT_ALLOW"
    stamp = first.stat().st_mtime_ns
    again = Path(seccomp.uts_profile(str(base), tmp_path / "cache"))
    assert again == first and again.stat().st_mtime_ns == stamp


def test_a_changed_base_gives_a_new_file(tmp_path: Path) -> None:
    first = seccomp.uts_profile(str(_write(tmp_path, SMALL)), tmp_path / "cache")
    changed = {**SMALL, "defaultErrnoRet": 1}
    second = seccomp.uts_profile(str(_write(tmp_path, changed)), tmp_path / "cache")
    assert first != second
    assert json.loads(Path(second).read_text())["defaultErrnoRet"] == 1


def test_unreadable_or_broken_base_and_unwritable_cache_are_host_errors(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="cannot read"):
        seccomp.uts_profile(str(tmp_path / "missing.json"), tmp_path / "cache")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(HostError) as info:
        seccomp.uts_profile(str(broken), tmp_path / "cache")
    assert info.value.fix and "containers-common" in info.value.fix
    with pytest.raises(HostError, match="HOME"):
        seccomp.uts_profile(str(_write(tmp_path, SMALL)), None)
    if os.geteuid() != 0:  # root writes through a read-only mode
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(HostError) as info:
            seccomp.uts_profile(str(_write(tmp_path, SMALL)), locked)
        assert info.value.fix and "XDG_CACHE_HOME" in info.value.fix
