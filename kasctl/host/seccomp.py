"""The seccomp profile of the rootless-docker isar-rootless cell: podman's, plus one rule.

Podman's confined profile (containers-common) allows what Isar's rootless
steps call and Docker's default profile refuses (pivot_root, unshare). It
allows sethostname and setdomainname only to a container granted
CAP_SYS_ADMIN, and kasctl's rootless-docker cell grants no capability (the
entrypoint nests the builder in a user namespace of its own instead). sbuild's
unshare backend sets the host name of the UTS namespace it creates for each
package build, so that cell needs those two calls allowed without the
capability. That is less than the capability: the kernel still lets a caller
set only the host name of a UTS namespace whose user namespace it has
CAP_SYS_ADMIN in, i.e. one that the build created itself, never the
container's own.

The profile is derived from the host's file at run time (kasctl ships none of
its own) and kept in kasctl's cache under a digest of that file, because the
docker client reads the profile from a path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kasctl.errors import HostError
from kasctl.host.cache import digest

UTS_SYSCALLS = ("sethostname", "setdomainname")
UTS_RULE_COMMENT = (
    "kasctl: sbuild's unshare backend names the UTS namespace it creates; "
    "the kernel still limits this to namespaces the caller owns"
)


def with_uts_rule(profile: dict[str, object]) -> dict[str, object]:
    """The profile with sethostname/setdomainname allowed to any caller (a new dict).

    The rules that refuse them (podman's errno rule for a container without
    CAP_SYS_ADMIN) lose those two names, so that no rule contradicts the new one.
    """
    syscalls = profile.get("syscalls")
    if not isinstance(syscalls, list) or not all(isinstance(r, dict) for r in syscalls):
        raise ValueError("a seccomp profile has a 'syscalls' list of rules")
    kept = []
    for rule in syscalls:
        names = rule.get("names")
        if rule.get("action") != "SCMP_ACT_ALLOW" and isinstance(names, list):
            rest = [n for n in names if n not in UTS_SYSCALLS]
            if not rest:
                continue
            rule = {**rule, "names": rest}
        kept.append(rule)
    rule = {
        "names": list(UTS_SYSCALLS),
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": UTS_RULE_COMMENT,
        "includes": {},
        "excludes": {},
    }
    return {**profile, "syscalls": [*kept, rule]}


def uts_profile(base: str, cache_dir: Path | None) -> str:
    """The path of podman's profile at `base` with the UTS rule added, written once per digest."""
    try:
        raw = Path(base).read_bytes()
    except OSError as exc:
        raise HostError(f"cannot read the seccomp profile {base}: {exc.strerror}") from exc
    if cache_dir is None:
        raise HostError(
            "no directory to keep the derived seccomp profile in (HOME and XDG_CACHE_HOME "
            "are not absolute paths)",
            fix="set HOME or XDG_CACHE_HOME to your own writable directory",
        )
    where = cache_dir / "seccomp"
    target = where / f"podman-uts-{digest(raw, UTS_RULE_COMMENT.encode())[:16]}.json"
    if target.is_file():
        return str(target)
    try:
        derived = with_uts_rule(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostError(
            f"{base} is not a seccomp profile kasctl can read ({exc})",
            fix="reinstall containers-common (Debian 12: golang-github-containers-common)",
        ) from exc
    try:
        where.mkdir(parents=True, exist_ok=True)
        import tempfile  # only the first run writes the profile

        fd, tmp = tempfile.mkstemp(dir=where, prefix=".profile-")
        with os.fdopen(fd, "w") as f:
            json.dump(derived, f, indent=1)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise HostError(
            f"cannot write the derived seccomp profile to {where}: {exc.strerror}",
            fix="make that directory writable, or set XDG_CACHE_HOME to one that is",
        ) from exc
    return str(target)
