"""The command line's contract: bad input gives one clear error and exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kasctl import __version__, flow
from kasctl import cli as kasctl_cli
from kasctl.build_system import BuildSystem
from kasctl.decide.credentials import CredentialOptions
from kasctl.errors import UsageError
from kasctl.input import cmdline, commands
from kasctl.input.commands import Command
from kasctl.input.options import Options

ROOT = Path(__file__).resolve().parent.parent.parent


def kasctl(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kasctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={
            "PATH": str(cwd / "no-engines-here"),
            "KAS_ALLOW_ROOT": "yes",
            "HOME": str(cwd),
            "PYTHONPATH": str(ROOT),  # this source tree, not an installed copy
            **(env or {}),
        },
        check=False,
    )


def test_version(tmp_path: Path) -> None:
    result = kasctl("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"kasctl {__version__}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("header:\n  version: 14\nmachin: x\n", "bad.yml:3: machin: unknown key"),
        ("header:\n  version: 14\nbuild_system: isar-foo\n", "bad.yml:3: build_system"),
        ("header: [\n", "bad.yml:2: YAML syntax error"),
        ("", "bad.yml: config file is empty"),
    ],
)
def test_bad_config_is_one_error_before_any_engine(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "bad.yml").write_text(text)
    # PATH has no engine: the config must be refused before one is looked for
    result = kasctl("build", "bad.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("kasctl: error:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["build", "missing.yml"], "missing.yml: config file not found"),
        (["build", "a.yml:"], "has an empty part"),
        (["build", "-E", "x.yml"], "-E is not supported"),
        (["build", "--isar-rootless", "--isar-privileged", "ok.yml"], "exclude each other"),
        (["build", "--engine", "lxc", "ok.yml"], "unknown container engine 'lxc'"),
        (["shell", "-c"], "requires an argument"),
        (["--ssh-dir", "build", "ok.yml"], "option --ssh-dir requires an argument"),
        (["--isar-rootless", "--runtime-args"], "option --runtime-args requires an argument"),
        (["-l", "DEBUG", "build", "ok.yml"], "unknown log level 'DEBUG'"),
        (["-l", "warn", "build", "ok.yml"], "unknown log level 'warn'"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    (tmp_path / "ok.yml").write_text("header:\n  version: 14\n")
    result = kasctl(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_no_engine_is_a_host_error_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text("header:\n  version: 14\n")
    result = kasctl("build", "--dry-run", "ok.yml", cwd=tmp_path)
    assert result.returncode == 3
    assert "no container engine found" in result.stderr
    assert "kasctl: fix:" in result.stderr


def test_missing_work_dir_and_ref_dir_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text("header:\n  version: 14\n")
    gone = str(tmp_path / "gone")
    for variable in ("KAS_WORK_DIR", "KAS_REPO_REF_DIR"):
        result = kasctl("build", "ok.yml", cwd=tmp_path, env={variable: gone})
        assert result.returncode == 2
        assert f"{variable} {gone!r} does not exist" in result.stderr
        assert not Path(gone).exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to show the refusal of root")
def test_root_is_refused_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text("header:\n  version: 14\n")
    result = kasctl("build", "ok.yml", cwd=tmp_path, env={"KAS_ALLOW_ROOT": "no"})
    assert result.returncode == 2
    assert "refusing to run as root" in result.stderr
    assert "KAS_ALLOW_ROOT=yes" in result.stderr


def test_an_unforeseen_host_error_is_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_parsed: object) -> int:
        raise PermissionError(13, "Permission denied", "/var/lib/somewhere")

    monkeypatch.setattr(kasctl_cli, "run", fail)
    with pytest.raises(SystemExit) as exited:
        kasctl_cli.main(["build", "kas.yml"])
    err = capsys.readouterr().err
    assert exited.value.code == 3
    assert err.splitlines()[0] == "kasctl: error: /var/lib/somewhere: Permission denied"
    assert "Traceback" not in err


# --------------------------------------------------------------------------
# kas-container's options before the command: what reaches the build
# --------------------------------------------------------------------------


def reached(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[Options, str]:
    """cli.run on a parsed command line: the options and -c value run_kas is handed."""
    got: list[tuple[Options, str]] = []

    def run_kas(_given: cmdline.Parsed, _spec: Command, opts: Options, kas_cmd: str | None) -> int:
        got.append((opts, kas_cmd or ""))
        return 0

    monkeypatch.setattr(flow, "run_kas", run_kas)
    assert kasctl_cli.run(cmdline.parse(argv)) == 0
    (result,) = got
    return result


def test_ci_isar_rootless_ssh_dir_and_two_runtime_args(monkeypatch: pytest.MonkeyPatch) -> None:
    # kasctl --isar-rootless --ssh-dir ~/.ssh --runtime-args "--cpus 2" \
    #        --runtime-args "-e X=1" build kas.yml
    opts, _ = reached(
        ["--isar-rootless", "--ssh-dir", "/home/ci/.ssh", "--runtime-args", "--cpus 2",
         "--runtime-args", "-e X=1", "build", "kas.yml"],
        monkeypatch,
    )  # fmt: skip
    assert opts.build_system_override() is BuildSystem.ISAR_ROOTLESS
    assert opts.credentials == CredentialOptions(ssh_dir="/home/ci/.ssh")
    # kas-container: KAS_EXTRA_RUNTIME_ARGS=" --cpus 2 -e X=1", word-split on the engine's line
    assert commands.split_runtime_args(opts.runtime_args) == ("--cpus", "2", "-e", "X=1")
    assert opts.repo_rw is None  # build's default: read-only
    assert not opts.dry_run and not opts.no_proxy_from_env


def test_ci_repo_rw_shell_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # kasctl --repo-rw shell kas.yml -c 'ls'
    opts, cmd = reached(["--repo-rw", "shell", "kas.yml", "-c", "ls"], monkeypatch)
    assert (opts.repo_rw, cmd) == (True, "ls")
    assert opts.build_system_override() is None


def test_ci_log_level_debug_no_proxy_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    # kasctl -l debug --no-proxy-from-env checkout kas.yml
    opts, _ = reached(["-l", "debug", "--no-proxy-from-env", "checkout", "kas.yml"], monkeypatch)
    assert opts.no_proxy_from_env
    assert opts.credentials == CredentialOptions()


def test_ci_git_credential_store_aws_dir_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    # kasctl --git-credential-store FILE --aws-dir DIR dump kas.yml
    opts, _ = reached(
        ["--git-credential-store", "/ci/creds", "--aws-dir", "/ci/aws", "dump", "kas.yml"],
        monkeypatch,
    )
    assert opts.credentials == CredentialOptions(
        aws_dir="/ci/aws", git_credential_store="/ci/creds"
    )


def test_ci_isar_ssh_agent_socket_docker_args_repo_ro(monkeypatch: pytest.MonkeyPatch) -> None:
    # kasctl --isar --ssh-agent --git-credential-socket SOCK --docker-args "-t" --repo-ro lock x
    opts, _ = reached(
        ["--isar", "--ssh-agent", "--git-credential-socket", "/run/git.sock", "--docker-args",
         "-t", "--repo-ro", "lock", "kas.yml"],
        monkeypatch,
    )  # fmt: skip
    assert opts.build_system_override() is BuildSystem.ISAR_PRIVILEGED
    assert opts.credentials == CredentialOptions(
        ssh_agent=True, git_credential_socket="/run/git.sock"
    )
    assert (opts.runtime_args, opts.repo_rw) == ("-t", False)


def test_runtime_args_before_and_after_the_command_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opts, _ = reached(
        ["--runtime-args", "--cpus 2", "build", "--runtime-args", "-e X=1", "--ssh-dir", "/b",
         "kas.yml"],
        monkeypatch,
    )  # fmt: skip
    assert opts.runtime_args == "--cpus 2 -e X=1"
    assert opts.credentials.ssh_dir == "/b"


@pytest.mark.parametrize("level", cmdline.LOG_LEVELS)
def test_log_level_takes_kas_choices(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reached(["-l", level, "build", "kas.yml"], monkeypatch)
    reached(["build", "--log-level", level, "kas.yml"], monkeypatch)


@pytest.mark.parametrize("level", ["DEBUG", "Info", "warn", "fatal", "notset", ""])
def test_log_level_refuses_what_kas_refuses(level: str) -> None:
    with pytest.raises(UsageError) as info:
        kasctl_cli.run(cmdline.parse(["-l", level, "build", "kas.yml"]))
    assert info.value.message == f"unknown log level {level!r}"
