"""Credentials and host settings the build may use: checked on the host, mounted read-only.

kas-container's options and variables, with the same meaning: each names a
host file, directory or socket; kasctl checks that it exists and is of the
right kind BEFORE a container starts, mounts it read-only below
/var/kas/userdata (the agent and cache sockets at fixed paths), and points
kas at it with the variable kas itself reads.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kasctl.errors import UsageError
from kasctl.layout import AGENT_SOCKET, CACHE_SOCKET, CREDENTIAL_STORE, USERDATA, mountable

#: Variables naming a host file that kas reads: variable -> container path.
FILE_VARIABLES = {
    "NETRC_FILE": f"{USERDATA}/.netrc",
    "NPMRC_FILE": f"{USERDATA}/.npmrc",
    "GITCONFIG_FILE": f"{USERDATA}/.gitconfig",
    "REGISTRY_AUTH_FILE": f"{USERDATA}/registry-auth.json",
    "AWS_WEB_IDENTITY_TOKEN_FILE": f"{USERDATA}/.aws-web-identity-token",
}
#: Shells the image has; another SHELL falls back to bash.
SHELLS = {"sh", "bash", "dash"}


@dataclass(frozen=True)
class CredentialOptions:
    ssh_dir: str | None = None
    ssh_agent: bool = False
    aws_dir: str | None = None
    git_credential_store: str | None = None
    git_credential_socket: str | None = None


@dataclass(frozen=True)
class Share:
    """One host path the container gets read-only, and the variable that names it."""

    source: str
    target: str
    variable: str | None = None


def _kind_ok(path: Path, kind: str) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return {
        "file": stat.S_ISREG,
        "dir": stat.S_ISDIR,
        "socket": stat.S_ISSOCK,
    }[kind](mode)


KIND_NAMES = {"file": "file", "dir": "directory", "socket": "socket"}


def _checked(raw: str, kind: str, what: str) -> str:
    """The absolute path of an existing `kind` that an engine can mount; else a UsageError.

    `what` is the option (--ssh-dir) or the variable (NETRC_FILE) that named it.
    """
    path = Path(os.path.abspath(os.path.expanduser(raw)))
    noun = KIND_NAMES[kind]
    drop = "leave it out" if what.startswith("-") else f"unset {what}"
    if not _kind_ok(path, kind):
        exists = path.exists()
        raise UsageError(
            f"{what} {raw!r} {'is not a ' + noun if exists else 'does not exist'}",
            fix=f"point {what} at an existing {noun}, or {drop}",
        )
    mountable(raw, what)
    return str(path)


def collect(opts: CredentialOptions, env: Mapping[str, str]) -> tuple[Share, ...]:
    """Check every credential the user named; return what to share with the container."""
    shares: list[Share] = []
    if opts.ssh_dir:
        shares.append(Share(_checked(opts.ssh_dir, "dir", "--ssh-dir"), f"{USERDATA}/.ssh"))
    if opts.ssh_agent:
        sock = env.get("SSH_AUTH_SOCK")
        if not sock:
            raise UsageError(
                "--ssh-agent needs SSH_AUTH_SOCK, which is not set",
                fix="start an agent (eval $(ssh-agent); ssh-add) or leave out --ssh-agent",
            )
        shares.append(
            Share(_checked(sock, "socket", "SSH_AUTH_SOCK"), AGENT_SOCKET, "SSH_AUTH_SOCK")
        )
    if opts.aws_dir:
        shares.append(Share(_checked(opts.aws_dir, "dir", "--aws-dir"), f"{USERDATA}/.aws"))
    if opts.git_credential_store:
        source = _checked(opts.git_credential_store, "file", "--git-credential-store")
        shares.append(Share(source, CREDENTIAL_STORE))
    if opts.git_credential_socket:
        source = _checked(opts.git_credential_socket, "socket", "--git-credential-socket")
        shares.append(Share(source, CACHE_SOCKET))
    for variable, target in FILE_VARIABLES.items():
        if env.get(variable):
            shares.append(Share(_checked(env[variable], "file", variable), target, variable))
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE") and not env.get("AWS_ROLE_ARN"):
        # kas uses the token only together with a role: alone it is silently ignored
        raise UsageError(
            "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; "
            "kas uses the token only to assume that role",
            fix="set AWS_ROLE_ARN to the role's ARN, or unset AWS_WEB_IDENTITY_TOKEN_FILE",
        )
    return tuple(shares)


def environment(shares: tuple[Share, ...], env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The variables that point kas at the shared credentials (pure)."""
    out = [(s.variable, s.target) for s in shares if s.variable]
    targets = {s.target for s in shares}
    if f"{USERDATA}/.aws" in targets:
        out += [
            ("AWS_CONFIG_FILE", f"{USERDATA}/.aws/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", f"{USERDATA}/.aws/credentials"),
        ]
    if "AWS_WEB_IDENTITY_TOKEN_FILE" in dict(out) and env.get("AWS_ROLE_ARN"):
        out.append(("AWS_ROLE_ARN", env["AWS_ROLE_ARN"]))
    helper = env.get("GIT_CREDENTIAL_HELPER")
    if CREDENTIAL_STORE in targets:
        helper = helper or f"store --file={CREDENTIAL_STORE}"
    elif CACHE_SOCKET in targets:
        helper = helper or f"cache --socket={CACHE_SOCKET}"
    if helper:
        out.append(("GIT_CREDENTIAL_HELPER", helper))
    return out


def host_settings(env: Mapping[str, str], localtime: str | None) -> list[tuple[str, str]]:
    """SHELL (only shells the image has), and the host's time zone unless TZ is set."""
    out = []
    shell = env.get("SHELL")
    if shell:
        out.append(("SHELL", shell if Path(shell).name in SHELLS else "/bin/bash"))
    if not env.get("TZ") and localtime and "zoneinfo/" in localtime:
        out.append(("TZ", localtime.rsplit("zoneinfo/", 1)[1]))
    return out


def setting_warnings(env: Mapping[str, str]) -> list[str]:
    if "file:///" in env.get("SSTATE_MIRRORS", ""):  # a host path (not the regex side)
        return [
            "SSTATE_MIRRORS has file:// paths, which point into the container, not at the "
            "host: mount that directory (e.g. as SSTATE_DIR) or use http(s)"
        ]
    return []
