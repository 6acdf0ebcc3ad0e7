"""kas-container 5.5's invocation forms, written as CI files write them, with kasctl in its place.

kas-container takes all of its own options before the command:
`kas-container [OPTIONS] { build | shell | ... } [KASOPTIONS] [KASFILE]`.
Each test is one such line, run for real on an engine with the stand-in
project, checking that the option did inside the container what it does
with kas-container.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from .harness import Project, Runner, make_project, make_runner

pytestmark = pytest.mark.e2e

MODE = "rootless-podman"


def _run(runner: Runner, project: Project, *args: str, **env: str) -> str:
    result = runner.kasctl(*args, cwd=project.work, extra_env=env or None)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _own(path: Path, runner: Runner) -> None:
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(path)], check=True)


def _without_build_system(project: Project) -> None:
    cfg = project.work / project.config
    cfg.write_text(
        "".join(line for line in cfg.read_text().splitlines(True) if "build_system" not in line)
    )


def test_isar_rootless_before_the_command_builds_rootless(project_factory: list[Project]) -> None:
    """As with kas-container, the option sets the container up; kas reads the config's own."""
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)

    out = _run(runner, project, "--isar-rootless", "build", project.config)

    assert "isar-standin: done (rootless)" in out


@pytest.mark.parametrize("option", ["--isar-privileged", "--isar"])
def test_isar_privileged_before_the_command_builds_privileged(
    option: str, project_factory: list[Project]
) -> None:
    runner = make_runner("rootful-podman")
    project = make_project(runner, build_system="isar")
    project_factory.append(project)

    out = _run(runner, project, option, "build", project.config)

    assert "isar-standin: done (privileged)" in out


def test_repeated_runtime_args_add_up(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)

    out = _run(
        runner, project,
        "--runtime-args", "--hostname=kasctl-forms",
        "--docker-args", "--add-host=forms.example.invalid:192.0.2.7",
        "shell", project.config, "-c", 'echo "seen:$(hostname)"; grep forms /etc/hosts',
    )  # fmt: skip

    assert "seen:kasctl-forms" in out, "the first --runtime-args reached the engine"
    assert "192.0.2.7" in out, "and so did the second: they add up"


def test_repo_rw_and_ssh_dir_before_the_command(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    ssh = project.work / "ssh-for-ci"
    ssh.mkdir()
    (ssh / "id_ed25519").write_text("stand-in key, not a real one\n")
    (ssh / "known_hosts").write_text("example.invalid ssh-ed25519 AAAA\n")
    _own(ssh, runner)

    out = _run(
        runner, project,
        "--repo-rw", "--ssh-dir", str(ssh),
        "build", project.config,
    )  # fmt: skip
    assert "isar-standin: done (rootless)" in out
    shell = _run(
        runner, project,
        "--repo-rw", "--ssh-dir", str(ssh),
        "shell", project.config, "-c", "cat /builder/.ssh/known_hosts; touch /repo/written-by-kas",
    )  # fmt: skip

    assert "example.invalid" in shell
    assert (project.repo / "written-by-kas").exists()


def test_repo_ro_before_shell_keeps_the_repo_read_only(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)

    result = runner.kasctl(
        "--repo-ro", "shell", project.config, "-c", "touch /repo/x", cwd=project.work
    )

    assert result.returncode != 0
    assert "Read-only file system" in result.stdout + result.stderr


def test_credentials_and_proxy_options_before_the_command(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    store = project.work / "git-credentials"
    store.write_text("https://ci:token@example.invalid\n")
    aws = project.work / "aws"
    aws.mkdir()
    (aws / "config").write_text("[default]\nregion = eu-central-1\n")
    (aws / "credentials").write_text("[default]\naws_access_key_id = stand-in\n")
    _own(store, runner)
    _own(aws, runner)

    out = _run(
        runner, project,
        "-l", "debug", "--no-proxy-from-env",
        "--git-credential-store", str(store), "--aws-dir", str(aws),
        "shell", project.config, "-c",
        'cat ~/.aws/config; git config --get credential.helper; echo "proxy:${http_proxy:-none}"',
        http_proxy="http://proxy.example.invalid:3128",
    )  # fmt: skip

    assert "region = eu-central-1" in out
    assert "store" in out
    assert "proxy:none" in out, "--no-proxy-from-env keeps the host's proxy out"
    assert "kasctl: DEBUG" in out, "-l debug before the command sets the log level"


def test_ssh_agent_before_the_command(project_factory: list[Project]) -> None:
    if not shutil.which("ssh-agent"):
        pytest.skip("no ssh-agent")
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    sock = project.work / "agent.sock"
    agent = subprocess.Popen(
        ["runuser", "-u", runner.user.pw_name, "--", "ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        out = _run(
            runner, project,
            "--ssh-agent",
            "shell", project.config, "-c", 'test -S "$SSH_AUTH_SOCK" && echo agent-ok',
            SSH_AUTH_SOCK=str(sock),
        )  # fmt: skip
        assert "agent-ok" in out
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_version_and_help_before_the_command() -> None:
    runner = make_runner(MODE)
    version = runner.kasctl("--version", cwd=Path("/"))
    assert version.returncode == 0 and version.stdout.startswith("kasctl ")
    helped = runner.kasctl("-h", cwd=Path("/"))
    assert helped.returncode == 0
    assert "build" in helped.stdout and "shell" in helped.stdout and "[KASFILE]" in helped.stdout


def test_an_included_build_system_plans_the_rootless_cell(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    _without_build_system(project)
    (project.repo / "rootless.yml").write_text(
        "header:\n  version: 14\nbuild_system: isar-rootless\n"
    )
    cfg = project.work / project.config
    cfg.write_text(
        cfg.read_text().replace(
            "header:\n  version: 14\n", "header:\n  version: 14\n  includes:\n    - rootless.yml\n"
        )
    )
    _own(project.work, runner)

    out = _run(runner, project, "build", project.config)

    assert "isar-standin: done (rootless)" in out


def test_git_credential_socket_before_the_command(project_factory: list[Project]) -> None:
    """A git credential-cache daemon's socket: shared, and git is told to ask it."""
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    sock = project.work / "cache-socket"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    _own(sock, runner)
    try:
        out = _run(
            runner, project,
            "--git-credential-socket", str(sock),
            "shell", project.config, "-c",
            'git config --get credential.helper; test -S "${HOME}/.git-credential-cache/socket" '
            "|| test -S /var/kas/userdata/.git-credential-cache/socket && echo socket-there",
        )  # fmt: skip
    finally:
        server.close()

    assert "cache --socket=" in out
    assert "socket-there" in out
