"""Credentials are checked on the host and shared read-only, with kas's own variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from kasctl.decide.credentials import (
    AGENT_SOCKET,
    CACHE_SOCKET,
    CREDENTIAL_STORE,
    USERDATA,
    CredentialOptions,
    collect,
    environment,
    host_settings,
    setting_warnings,
)
from kasctl.errors import UsageError


def test_everything_shared_read_only_with_kas_variables(tmp_path: Path, unix_socket: Path) -> None:
    (tmp_path / "ssh").mkdir()
    (tmp_path / "aws").mkdir()
    store = tmp_path / "git-credentials"
    store.write_text("https://u:p@example.invalid\n")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.invalid\n")
    token = tmp_path / "token"
    token.write_text("t")
    env = {
        "SSH_AUTH_SOCK": str(unix_socket),
        "NETRC_FILE": str(netrc),
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
    }
    opts = CredentialOptions(
        ssh_dir=str(tmp_path / "ssh"),
        ssh_agent=True,
        aws_dir=str(tmp_path / "aws"),
        git_credential_store=str(store),
    )
    shares = collect(opts, env)
    targets = {s.target: s.source for s in shares}
    assert targets[f"{USERDATA}/.ssh"] == str(tmp_path / "ssh")
    assert targets[AGENT_SOCKET] == str(unix_socket)
    assert targets[CREDENTIAL_STORE] == str(store)
    variables = dict(environment(shares, env))
    assert variables["SSH_AUTH_SOCK"] == AGENT_SOCKET
    assert variables["NETRC_FILE"] == f"{USERDATA}/.netrc"
    assert variables["AWS_CONFIG_FILE"] == f"{USERDATA}/.aws/config"
    assert variables["AWS_ROLE_ARN"] == "arn:aws:iam::1:role/r"
    assert variables["GIT_CREDENTIAL_HELPER"] == f"store --file={CREDENTIAL_STORE}"


def test_cache_socket_helper_and_an_explicit_helper_wins(unix_socket: Path) -> None:
    shares = collect(CredentialOptions(git_credential_socket=str(unix_socket)), {})
    assert dict(environment(shares, {}))["GIT_CREDENTIAL_HELPER"] == (
        f"cache --socket={CACHE_SOCKET}"
    )
    mine = {"GIT_CREDENTIAL_HELPER": "mine"}
    assert dict(environment(shares, mine))["GIT_CREDENTIAL_HELPER"] == "mine"


@pytest.mark.parametrize(
    ("opts", "env", "message"),
    [
        (CredentialOptions(ssh_agent=True), {}, "SSH_AUTH_SOCK, which is not set"),
        (CredentialOptions(ssh_agent=True), {"SSH_AUTH_SOCK": "{tmp}/file"}, "is not a socket"),
        (CredentialOptions(ssh_dir="{tmp}/nope"), {}, "--ssh-dir '{tmp}/nope' does not exist"),
        (CredentialOptions(aws_dir="{tmp}/file"), {}, "is not a dir"),
        (CredentialOptions(git_credential_store="{tmp}/nope"), {}, "does not exist"),
        (CredentialOptions(), {"NETRC_FILE": "{tmp}/nope"}, "NETRC_FILE"),
        (CredentialOptions(), {"GITCONFIG_FILE": "{tmp}"}, "is not a file"),
    ],
)
def test_bad_credentials_are_refused_before_a_container(
    tmp_path: Path, opts: CredentialOptions, env: dict[str, str], message: str
) -> None:
    (tmp_path / "file").write_text("x")

    def fill(value: str | bool | None) -> str | bool | None:
        return value.format(tmp=tmp_path) if isinstance(value, str) else value

    opts = CredentialOptions(**{k: fill(v) for k, v in vars(opts).items()})  # type: ignore[arg-type]
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    with pytest.raises(UsageError) as info:
        collect(opts, env)
    assert message.format(tmp=tmp_path) in info.value.message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("/bin/bash", "/bin/bash"),
        ("/usr/bin/dash", "/usr/bin/dash"),
        ("/usr/bin/fish", "/bin/bash"),
    ],
)
def test_shell_is_limited_to_the_image_shells(shell: str, expected: str) -> None:
    assert dict(host_settings({"SHELL": shell}, None))["SHELL"] == expected


def test_host_time_zone_unless_tz_is_set() -> None:
    zone = "/usr/share/zoneinfo/Europe/Berlin"
    assert dict(host_settings({}, zone))["TZ"] == "Europe/Berlin"
    assert "TZ" not in dict(host_settings({"TZ": "UTC"}, zone))


def test_file_sstate_mirrors_warn() -> None:
    assert setting_warnings({"SSTATE_MIRRORS": "file://.* file:///srv/sstate/PATH"})
    assert not setting_warnings({"SSTATE_MIRRORS": "file://.* https://example.invalid/PATH"})
