"""The derived seccomp profile as the engine and the user meet it (mutmut, tests/MUTATION.md).

What the rest of the suite let change unnoticed: that only the refusing rules
lose the two UTS calls (the allowing ones stay as podman wrote them), that the
new rule has no condition at all, where the file is kept and under which name,
and what each refusal says.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from kasctl.errors import HostError
from kasctl.host import seccomp
from tests.unit.test_seccomp import SMALL, _write, action  # the same profile and judge


def rules(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """The derived profile's rules."""
    found = seccomp.with_uts_rule(profile)["syscalls"]
    assert isinstance(found, list)
    return found


def test_only_refusing_rules_lose_the_uts_calls_the_allowing_ones_stay_as_they_were() -> None:
    allow, allow_with_cap, refuse_without_cap, _refuse_hostname = SMALL["syscalls"]
    derived = rules(SMALL)
    assert derived[:3] == [
        allow,
        allow_with_cap,  # still lists sethostname: podman's own rule, untouched
        {**refuse_without_cap, "names": ["bpf", "setns"]},
    ]
    # the rule that refused sethostname alone is gone; the new rule comes last
    assert len(derived) == 4
    assert derived[3]["names"] == list(seccomp.UTS_SYSCALLS)


def test_a_rule_emptied_of_names_is_dropped_and_every_rule_after_it_kept() -> None:
    base: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["sethostname", "setdomainname"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["clone", "unshare"], "action": "SCMP_ACT_ALLOW"},
            # the older one-name form has no list to edit: kept as it is
            {"name": "acct", "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["kexec_load"], "action": "SCMP_ACT_KILL"},
        ],
    }
    derived = seccomp.with_uts_rule(base)
    assert rules(base)[:3] == base["syscalls"][1:]
    assert action(derived, "clone", set()) == "SCMP_ACT_ALLOW"
    assert action(derived, "kexec_load", set()) == "SCMP_ACT_KILL"
    assert action(derived, "sethostname", set()) == "SCMP_ACT_ALLOW"


def test_the_new_rule_allows_the_uts_calls_to_any_caller_and_says_why() -> None:
    rule = rules(SMALL)[-1]
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert rule["names"] == ["sethostname", "setdomainname"]
    # no argument filter and no capability condition, as podman writes "none"
    assert rule["args"] == []
    assert rule["includes"] == {} and rule["excludes"] == {}
    # whoever reads the profile file learns who added the rule and why
    assert rule["comment"].startswith("kasctl: sbuild's unshare backend")


# --------------------------------------------------------------------------
# uts_profile: where the file is kept, and what its refusals say
# --------------------------------------------------------------------------


def test_the_profile_is_kept_under_seccomp_in_kasctls_cache(tmp_path: Path) -> None:
    path = Path(seccomp.uts_profile(str(_write(tmp_path, SMALL)), tmp_path / "cache"))
    assert path.parent == tmp_path / "cache" / "seccomp"
    assert re.fullmatch(r"podman-uts-[0-9a-f]{16}\.json", path.name), path.name
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_kasctl_with_another_rule_does_not_reuse_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = str(_write(tmp_path, SMALL))
    first = seccomp.uts_profile(base, tmp_path / "cache")
    monkeypatch.setattr(seccomp, "UTS_RULE_COMMENT", "kasctl: a later version of the rule")
    second = seccomp.uts_profile(base, tmp_path / "cache")
    assert second != first
    assert json.loads(Path(second).read_text())["syscalls"][-1]["comment"] == (
        "kasctl: a later version of the rule"
    )


def test_the_profile_is_written_in_the_cache_without_a_temporary_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the temporary file sits next to the profile (one atomic rename), never in TMPDIR
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))
    path = seccomp.uts_profile(str(_write(tmp_path, SMALL)), tmp_path / "cache")
    assert action(json.loads(Path(path).read_text()), "sethostname", set()) == "SCMP_ACT_ALLOW"


def test_a_profile_without_rules_is_refused_saying_what_is_missing(tmp_path: Path) -> None:
    base = _write(tmp_path, {"defaultAction": "SCMP_ACT_ERRNO"})
    with pytest.raises(HostError) as info:
        seccomp.uts_profile(str(base), tmp_path / "cache")
    assert info.value.message == (
        f"{base} is not a seccomp profile kasctl can read "
        "(a seccomp profile has a 'syscalls' list of rules)"
    )
    assert info.value.fix == (
        "reinstall containers-common (Debian 12: golang-github-containers-common)"
    )


def test_a_profile_that_is_not_json_is_named(tmp_path: Path) -> None:
    base = tmp_path / "seccomp.json"
    base.write_text("{not json")
    with pytest.raises(HostError) as info:
        seccomp.uts_profile(str(base), tmp_path / "cache")
    assert info.value.message.startswith(f"{base} is not a seccomp profile kasctl can read (")


def test_no_cache_dir_says_which_variables_to_set(tmp_path: Path) -> None:
    with pytest.raises(HostError) as info:
        seccomp.uts_profile(str(_write(tmp_path, SMALL)), None)
    assert info.value.message == (
        "no directory to keep the derived seccomp profile in "
        "(HOME and XDG_CACHE_HOME are not absolute paths)"
    )
    assert info.value.fix == "set HOME or XDG_CACHE_HOME to your own writable directory"


def test_a_cache_that_cannot_be_written_is_named_with_the_fix(tmp_path: Path) -> None:
    # a file where the cache dir should be: refused for root too
    cache = tmp_path / "cache"
    cache.write_text("not a directory\n")
    with pytest.raises(HostError) as info:
        seccomp.uts_profile(str(_write(tmp_path, SMALL)), cache)
    assert info.value.message == (
        f"cannot write the derived seccomp profile to {cache / 'seccomp'}: Not a directory"
    )
    assert info.value.fix == "make that directory writable, or set XDG_CACHE_HOME to one that is"
