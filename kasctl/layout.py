"""Where things are inside the container, and which host paths can be put there.

The one place for the container's path layout (the work dir, the config's
repositories, the dirs kas manages, the credentials) and for the rule every
bind-mount source obeys: `--mount` splits on commas and a line break breaks
every engine's option parsing, so such a path is refused before any engine
is asked. The planner, the request, the config reader and the credentials
all read it from here, and so does the translation of a path through a
mount table (`through`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from typing import NamedTuple

from kasctl.errors import KasctlError, UsageError

WORK = "/work"
REPO = "/repo"
#: The second config's repository (diff).
REPO2 = "/repo2"
#: A worktree's common git dir.
REPO_COMMON = "/repo-common"

#: kas's home for credentials and settings inside the container.
USERDATA = "/var/kas/userdata"
AGENT_SOCKET = "/ssh-agent/ssh-auth-sock"
CACHE_SOCKET = f"{USERDATA}/.git-credential-cache/socket"
CREDENTIAL_STORE = f"{USERDATA}/.git-credentials"


class ManagedDir(NamedTuple):
    """A host directory kas manages, named by a variable."""

    var: str
    #: Its container path when it lies outside the work dir.
    target: str
    #: Created on the host when missing (as kas-container does); a reference
    #: dir (KAS_REPO_REF_DIR) holds clones and must exist already.
    created: bool = True


MANAGED_DIRS = (
    ManagedDir("KAS_BUILD_DIR", "/build"),
    ManagedDir("DL_DIR", "/downloads"),
    ManagedDir("SSTATE_DIR", "/sstate"),
    ManagedDir("KAS_BUILDTOOLS_DIR", "/buildtools"),
    ManagedDir("KAS_REPO_REF_DIR", "/repo-ref", created=False),
)

#: Characters a bind-mount source may not contain.
UNMOUNTABLE = (",", "\n", "\r")


def mountable(
    path: str | os.PathLike[str],
    what: str,
    *,
    fix: str = "move it, or link it from a plain path and pass that",
    error: type[KasctlError] = UsageError,
) -> str:
    """`path` as text, or one error naming `what` when no engine can mount it."""
    text = os.fspath(path)
    if any(c in text for c in UNMOUNTABLE):
        raise error(
            f"{what} {text!r} has a comma or a line break in its path, "
            "which container engines cannot mount",
            fix=fix,
        )
    return text


def through(path: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    """`path` seen from the other side of a mount table, or None when no mount holds it.

    pairs are (this side, other side) per mount, e.g. (target, source) to
    find a container path on the host; the mount with the longest path on
    this side that holds `path` wins, as in the kernel's mount table.
    """
    path = posixpath.normpath(path)
    best: tuple[str, str] | None = None
    for here, there in pairs:
        here = posixpath.normpath(here)
        inside = path == here or path.startswith(here.rstrip("/") + "/")
        if inside and (best is None or len(here) > len(best[0])):
            best = (here, there)
    if best is None:
        return None
    rest = posixpath.relpath(path, best[0])
    return best[1] if rest == "." else posixpath.join(best[1], rest)
