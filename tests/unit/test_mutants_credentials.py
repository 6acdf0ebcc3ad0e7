"""Credentials kas gets, and what a refusal tells the user (found by mutmut, tests/MUTATION.md).

Each test says what the container or the user would see: which host path is
shared where, which variable points kas at it, what reaches kas's time zone,
and, for a credential that cannot be shared, what is wrong and how to fix it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kasctl.decide.credentials import (
    CACHE_SOCKET,
    USERDATA,
    CredentialOptions,
    collect,
    environment,
    host_settings,
    setting_warnings,
)
from kasctl.errors import UsageError


def refusal(opts: CredentialOptions, env: dict[str, str]) -> UsageError:
    with pytest.raises(UsageError) as info:
        collect(opts, env)
    assert info.value.exit_code == 2
    return info.value


# --------------------------------------------------------------------------
# what is shared, where, and the variables that point kas at it
# --------------------------------------------------------------------------


def test_the_git_credential_cache_socket_is_shared_from_the_users_socket(
    unix_socket: Path,
) -> None:
    (share,) = collect(CredentialOptions(git_credential_socket=str(unix_socket)), {})
    assert (share.source, share.target) == (str(unix_socket), CACHE_SOCKET)


def test_an_aws_dir_points_kas_at_its_config_and_credentials(tmp_path: Path) -> None:
    shares = collect(CredentialOptions(aws_dir=str(tmp_path)), {})
    assert dict(environment(shares, {})) == {
        "AWS_CONFIG_FILE": f"{USERDATA}/.aws/config",
        "AWS_SHARED_CREDENTIALS_FILE": f"{USERDATA}/.aws/credentials",
    }


def test_a_role_reaches_kas_only_with_the_token_it_is_for(tmp_path: Path) -> None:
    role = {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}
    assert environment(collect(CredentialOptions(), role), role) == []
    token = tmp_path / "token"
    token.write_text("t")
    env = {**role, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)}
    assert dict(environment(collect(CredentialOptions(), env), env)) == {
        "AWS_WEB_IDENTITY_TOKEN_FILE": f"{USERDATA}/.aws-web-identity-token",
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
    }


def test_the_time_zone_is_the_name_below_the_tz_database() -> None:
    assert host_settings({}, "../usr/share/zoneinfo/America/New_York") == [
        ("TZ", "America/New_York")
    ]
    # a tz database below a directory that is itself called zoneinfo
    assert host_settings({}, "/opt/zoneinfo/share/zoneinfo/Europe/Berlin") == [
        ("TZ", "Europe/Berlin")
    ]


# --------------------------------------------------------------------------
# refusals: what is wrong, and how to fix it
# --------------------------------------------------------------------------


def test_a_missing_credential_says_how_to_drop_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    option = refusal(CredentialOptions(ssh_dir=missing), {})
    assert option.fix == "point --ssh-dir at an existing directory, or leave it out"
    variable = refusal(CredentialOptions(), {"NETRC_FILE": missing})
    assert variable.fix == "point NETRC_FILE at an existing file, or unset NETRC_FILE"


def test_a_credential_engines_cannot_mount_is_refused_with_a_way_round(tmp_path: Path) -> None:
    odd = tmp_path / "ssh,keys"
    odd.mkdir()
    error = refusal(CredentialOptions(ssh_dir=str(odd)), {})
    assert error.message == (
        f"--ssh-dir {str(odd)!r} has a comma or a line break in its path, "
        "which container engines cannot mount"
    )
    assert error.fix and error.fix.startswith("move it, or link it from a plain path")


def test_an_agent_without_a_socket_says_how_to_start_one() -> None:
    error = refusal(CredentialOptions(ssh_agent=True), {})
    assert error.message.startswith("--ssh-agent needs SSH_AUTH_SOCK")
    assert error.fix and "(eval $(ssh-agent); ssh-add)" in error.fix
    assert error.fix.startswith("start an agent")
    assert error.fix.endswith("or leave out --ssh-agent")


def test_a_token_without_a_role_says_why_and_both_fixes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    error = refusal(CredentialOptions(), {"AWS_WEB_IDENTITY_TOKEN_FILE": str(token)})
    assert error.message.startswith("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; ")
    assert error.message.endswith("kas uses the token only to assume that role")
    assert error.fix and error.fix.startswith("set AWS_ROLE_ARN")
    assert error.fix.endswith("or unset AWS_WEB_IDENTITY_TOKEN_FILE")


def test_the_file_sstate_mirror_warning_says_what_and_how_to_fix() -> None:
    (warning,) = setting_warnings({"SSTATE_MIRRORS": "file://.* file:///srv/sstate/PATH"})
    assert warning.startswith("SSTATE_MIRRORS has file:// paths, which point into the container")
    assert warning.endswith(
        "not at the host: mount that directory (e.g. as SSTATE_DIR) or use http(s)"
    )
