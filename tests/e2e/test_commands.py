"""kas-container's commands, directories and paths through kasctl, on a real engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .harness import Project, Runner, make_project, make_runner, owners, remove_tree

pytestmark = pytest.mark.e2e

MODE = "rootless-podman"


def _head(repo: Path) -> str:
    """The repo's HEAD, read as root from the test user's repo (git would refuse it as unsafe)."""
    out = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(out.stdout.strip()) == 40
    return out.stdout.strip()


def _ok(runner: Runner, project: Project, *args: str, **kw: object) -> str:
    result = runner.kasctl(*args, cwd=project.work, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0
    return result.stdout + result.stderr


def test_checkout_dump_and_for_all_repos(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)

    _ok(runner, project, "checkout", project.config)
    assert (project.build / "conf" / "local.conf").is_file()
    dumped = _ok(runner, project, "dump", project.config)
    assert "machine: qemux86-64" in dumped
    heads = _ok(runner, project, "for-all-repos", project.config, "git rev-parse HEAD")
    head = _head(project.repo)
    assert head in heads


def _repo_readonly(runner: Runner, project: Project, *args: str) -> bool:
    dry = runner.kasctl(*args, "--dry-run", "--json", project.config, cwd=project.work)
    assert dry.returncode == 0
    mounts = json.loads(dry.stdout)["plan"]["mounts"]
    return bool(next(m["readonly"] for m in mounts if m["target"] == "/repo"))


def test_repo_is_read_only_for_build_and_writable_for_shell_and_lock(
    project_factory: list[Project],
) -> None:
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)

    denied = runner.kasctl(
        "shell", "--repo-ro", project.config, "-c", "touch /repo/x", cwd=project.work
    )
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stdout + denied.stderr
    _ok(runner, project, "shell", project.config, "-c", "touch /repo/written")
    assert (project.repo / "written").is_file()
    assert owners(project.repo) == {(runner.uid, runner.gid)}
    assert _repo_readonly(runner, project, "build")
    assert not _repo_readonly(runner, project, "lock")
    assert not _repo_readonly(runner, project, "dump", "--inplace")
    assert _repo_readonly(runner, project, "dump")


def test_diff_sees_both_repositories(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    first = make_project(runner, fixture="oe-standin")
    second = make_project(runner, fixture="oe-standin")
    project_factory += [first, second]
    other = second.repo / "oe-standin.yml"
    other.write_text(other.read_text().replace("qemux86-64", "qemuarm64"))

    out = _ok(runner, first, "diff", first.config, str(other))
    assert "qemuarm64" in out


def test_build_dir_outside_the_work_dir_and_bitbake_args(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    outside = Path(tempfile.mkdtemp(prefix="kasctl-e2e-build-", dir="/tmp"))
    shutil.chown(outside, runner.uid, runner.gid)
    build = outside / "nested" / "build"
    try:
        out = _ok(
            runner, project, "build", project.config, "--", "-k",
            extra_env={"KAS_BUILD_DIR": str(build)},
        )  # fmt: skip
        assert "bitbake -c build -k oe-standin-image" in out  # kas puts them after its own
        assert (build / "tmp" / "deploy" / "images" / "oe-standin.txt").is_file()
        assert not project.build.exists()
        assert owners(outside) == {(runner.uid, runner.gid)}
        # kas's own -c (the task), before the config as kas-container users write it
        task = _ok(
            runner, project, "build", "-c", "fetch", project.config,
            extra_env={"KAS_BUILD_DIR": str(build)},
        )  # fmt: skip
        assert "bitbake -c fetch oe-standin-image" in task
    finally:
        remove_tree(outside)


def test_paths_with_spaces_and_colons_work_and_commas_are_refused(
    project_factory: list[Project],
) -> None:
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    odd = project.work / "a dir: with spaces"
    odd.mkdir()
    shutil.chown(odd, runner.uid, runner.gid)

    result = runner.kasctl(
        "build", project.config, cwd=project.work, extra_env={"KAS_BUILD_DIR": str(odd / "b")}
    )
    assert result.returncode == 0
    assert (odd / "b" / "tmp" / "deploy" / "images" / "oe-standin.txt").is_file()

    refused = runner.kasctl(
        "build", project.config, cwd=project.work, extra_env={"DL_DIR": "/tmp/a,b"}
    )
    assert refused.returncode == 2
    assert "DL_DIR '/tmp/a,b' has a comma" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not Path("/tmp/a,b").exists()


CHECK_CREDENTIALS = (
    "stat -c 'ssh: %U %a' /builder/.ssh/id_test; "
    'test -S "$SSH_AUTH_SOCK" && echo agent: reachable; '
    "grep -h machine ~/.netrc | sed 's/^/netrc: /'"
)


@pytest.mark.parametrize("mode", ["rootless-podman", "rootless-docker"])
def test_credentials_reach_the_build(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    ssh = project.work / "ssh"
    ssh.mkdir()
    (ssh / "id_test").write_text("not a real key\n")
    (project.work / "netrc").write_text("machine git.example.invalid login x password y\n")
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(project.work)], check=True)
    agent = f"{project.work}/agent.sock"

    result = runner.run(
        [
            "sh", "-c",
            f'eval "$(ssh-agent -a {agent} -s)" >/dev/null; '
            f"kasctl shell --ssh-dir ssh --ssh-agent {project.config} -c \"$0\"; "
            'rc=$?; kill "$SSH_AGENT_PID"; exit $rc',
            CHECK_CREDENTIALS,
        ],
        cwd=project.work,
        extra_env={"NETRC_FILE": str(project.work / "netrc")},
    )  # fmt: skip

    assert result.returncode == 0
    assert "ssh: builder 600" in result.stdout
    assert "agent: reachable" in result.stdout
    assert "netrc: machine git.example.invalid" in result.stdout


@pytest.mark.parametrize("mode", ["rootless-podman", "system-docker"])
def test_git_worktree_works_inside_the_container(mode: str, project_factory: list[Project]) -> None:
    runner = make_runner(mode)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    worktree = project.work / "wt"
    subprocess.run(
        ["runuser", "-u", runner.user.pw_name, "--", "git", "-C", str(project.repo),
         "worktree", "add", "-q", str(worktree)],
        check=True, capture_output=True,
    )  # fmt: skip
    head = _head(project.repo)

    result = runner.kasctl(
        "shell", "wt/oe-standin.yml", "-c", "git -C /repo rev-parse HEAD", cwd=project.work
    )

    assert result.returncode == 0
    assert head in result.stdout


def test_plain_build_uses_the_repository_menu_recorded(project_factory: list[Project]) -> None:
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    # what `kasctl menu` leaves behind: kas's .config.yaml plus the host repository
    (project.work / ".config.yaml").write_text(
        "header:\n  version: 14\n  includes:\n  - oe-standin.yml\n"
        f"_source_dir: /repo\n_source_dir_host: {project.repo}\n"
    )
    shutil.chown(project.work / ".config.yaml", runner.uid, runner.gid)

    _ok(runner, project, "build")

    assert (project.build / "tmp" / "deploy" / "images" / "oe-standin.txt").is_file()
