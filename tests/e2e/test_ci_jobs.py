"""kasctl run from inside CI job containers, against the host's docker through its socket.

GitLab: gitlab-ci-local (a real runner of .gitlab-ci.yml, with real docker,
the way GitLab's docker executor runs jobs: the project copied into a docker
volume mounted at /builds/GROUP/PROJECT, the job as the image's root) runs
examples/gitlab-ci.yml, unchanged but for its variables, on a copy of the
Isar stand-in (tests/fixtures/isar-standin, NOT Isar). GitHub: the job of
examples/github-workflow.yml run by hand the way the runner runs container
jobs (the workspace bind-mounted from the host at /__w/REPO/REPO). Both use
the job image of examples/ci-job.Containerfile, which .ci/run builds.

In both, every path kasctl gives the daemon is one the job container sees
at another place on the host: without the translation through the daemon's
own account of the job container's mounts, the daemon refuses the run
("bind source path does not exist: /builds/kasctl/standin"), or, where a
dir of that name happens to exist on the host, mounts the wrong one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from kasctl import __version__

from .harness import FIXTURES, IN_CI, remove_tree

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent
JOB_IMAGE = f"localhost/kasctl/ci-job:{__version__}"
GITLAB_CI_LOCAL = "gitlab-ci-local"
SOCKET = "/var/run/docker.sock"
#: kasctl's phases, each a GitLab section (kasctl.report.cilog)
PHASES = ("kasctl_checks", "kasctl_image", "kasctl_start", "kasctl_kas", "kasctl_cleanup")


def _need(what: str, ok: bool) -> None:
    if not ok:
        message = f"{what} is missing: run .ci/run (it installs and builds it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def job_image() -> str:
    _need("system docker", shutil.which("docker") is not None and os.geteuid() == 0)
    found = subprocess.run(["docker", "image", "inspect", JOB_IMAGE], capture_output=True)
    _need(f"the job image {JOB_IMAGE}", found.returncode == 0)
    return JOB_IMAGE


def _git_project(path: Path, extra_conf: str = "") -> None:
    shutil.copytree(FIXTURES / "isar-standin", path)
    if extra_conf:
        cfg = path / "failing.yml"
        cfg.write_text(
            "header:\n  version: 14\n  includes:\n    - isar-standin.yml\n"
            f"local_conf_header:\n  failing: |\n    {extra_conf}\n"
        )
    git = ["git", "-C", str(path)]
    ident = ["-c", "user.name=kasctl-tests", "-c", "user.email=tests@example.invalid"]
    for argv in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", "https://gitlab.example.invalid/kasctl/standin.git"],
        ["add", "-A"],
        [*ident, "commit", "-qm", "fixture"],
        ["update-ref", "refs/remotes/origin/main", "HEAD"],
        ["symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main"],
    ):
        subprocess.run([*git, *argv], check=True, capture_output=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kasctl-ci-", dir="/tmp"))
    yield path
    remove_tree(path)


def _gitlab(project: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    """examples/gitlab-ci.yml's job, run by gitlab-ci-local with the host's socket mounted."""
    _need("gitlab-ci-local", shutil.which(GITLAB_CI_LOCAL) is not None)
    shutil.copy(ROOT / "examples" / "gitlab-ci.yml", project / ".gitlab-ci.yml")
    subprocess.run(["git", "-C", str(project), "add", "-A"], check=True)
    argv = [
        GITLAB_CI_LOCAL,
        "--volume",
        f"{SOCKET}:{SOCKET}",
        "--pull-policy",
        "if-not-present",
        "--no-color",
        "--no-artifacts-to-source",
        # GitLab itself sets GITLAB_CI=true; gitlab-ci-local says false
        "--variable",
        "GITLAB_CI=true",
        "--ignore-predefined-vars",
        "GITLAB_CI",
        "--variable",
        f"KASCTL_JOB_IMAGE={JOB_IMAGE}",
    ]
    for variable in variables:
        argv += ["--variable", variable]
    return subprocess.run(
        [*argv, "build"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CI": "true"},
    )


def _junit(project: Path) -> ET.Element:
    report = project / ".gitlab-ci-local" / "artifacts" / "build" / "kasctl-junit.xml"
    assert report.is_file(), "the job's JUnit report is an artifact, also when it failed"
    return ET.parse(report).getroot()


def test_examples_gitlab_ci_builds_from_inside_the_job_container(
    job_image: str, scratch: Path
) -> None:
    project = scratch / "standin"
    _git_project(project)

    result = _gitlab(project, "KAS_FILE=isar-standin.yml")

    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "PASS  build" in out
    # doctor knew where it ran
    assert re.search(r"ok +setup: in CI job container [0-9a-f]{12}, run by this docker", out), out
    # the runner folded kasctl's phases: gitlab-ci-local reads GitLab's markers
    # as GitLab does and reports each section it closed
    for phase in PHASES:
        assert re.search(rf"build {phase} took \d+ms", out), (phase, out[-4000:])
    assert "isar-standin: done (rootless)" in out, "the stand-in build ran in the build container"
    cases = _junit(project).findall(".//testcase")
    assert {c.get("name") for c in cases} >= {"do_bootstrap", "do_rootfs_install"}
    assert not _junit(project).findall(".//failure")


def test_a_failed_task_is_named_with_its_log_and_in_the_junit_report(
    job_image: str, scratch: Path
) -> None:
    project = scratch / "standin"
    _git_project(project, extra_conf='STANDIN_LEGACY_SUDO = "1"')

    result = _gitlab(project, "KAS_FILE=failing.yml")

    out = result.stdout + result.stderr
    assert result.returncode != 0 and "FAIL  build" in out, out[-4000:]
    named = re.search(r"kasctl:   (\S+\.bb:do_install)\n.*kasctl:     log: (\S+)", out)
    assert named, out[-4000:]
    task, log = named.groups()
    assert task == "standin-legacy.bb:do_install"
    assert log.startswith("/builds/kasctl/standin/build/tmp/work/"), "the log as the job sees it"
    assert "cause: " in out and "sudo is blocked" in out
    failures = _junit(project).findall(".//testcase/failure/..")
    assert [(c.get("classname"), c.get("name")) for c in failures] == [
        ("standin-legacy-1.0-r0", "do_install")
    ]
    text = failures[0].findtext("failure") or ""
    assert f"log: {log}" in text and "sudo is blocked" in text


def test_a_path_only_in_the_job_container_is_refused_before_the_build(
    job_image: str, scratch: Path
) -> None:
    project = scratch / "standin"
    _git_project(project)

    # /root is in the job image's own layer: no mount of the job container holds it
    result = _gitlab(project, "KAS_FILE=isar-standin.yml", "KAS_WORK_DIR=/root")

    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(
        r"kasctl: error: /root \(mounted at /work\) is only in this job container's own "
        r"filesystem",
        out,
    ), out[-3000:]
    assert "kasctl: fix: put it on a volume or bind mount of the job container" in out
    assert "kasctl_kas" not in out, "no build container was started"


def test_examples_github_workflow_job_builds_in_a_container_job(
    job_image: str, scratch: Path
) -> None:
    """The workflow's steps, in a job container laid out as GitHub's runner does it."""
    import yaml

    workflow = yaml.safe_load((ROOT / "examples" / "github-workflow.yml").read_text())
    job = workflow["jobs"]["build"]
    assert job["container"]["volumes"] == [f"{SOCKET}:{SOCKET}"]
    steps = [s["run"] for s in job["steps"] if "run" in s]
    assert any("kasctl build --junit" in s for s in steps)

    host_work = scratch / "work"  # the runner's /home/runner/work
    _git_project(host_work / "standin" / "standin")
    workspace = "/__w/standin/standin"
    script = " && ".join(steps)
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-v",
            f"{SOCKET}:{SOCKET}",
            "-v",
            f"{host_work}:/__w",
            "-w",
            workspace,
            "-e",
            "GITHUB_ACTIONS=true",
            "-e",
            "CI=true",
            *[a for k, v in job["env"].items() for a in ("-e", f"{k}={v}")],
            "-e",
            "KAS_FILE=isar-standin.yml",
            job_image,
            "sh",
            "-ec",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    assert "isar-standin: done (rootless)" in out
    groups = re.findall(r"^::group::(.*)$", result.stdout, re.M)
    assert groups[:2] == ["kasctl build: host checks and plan", f"kasctl: image {_image()}"]
    assert result.stdout.count("::group::") == result.stdout.count("::endgroup::")
    report = host_work / "standin" / "standin" / "kasctl-junit.xml"
    assert ET.parse(report).getroot().findall(".//testcase")
    # the build's files are in the runner's workspace on the host
    assert (host_work / "standin" / "standin" / "build" / "tmp" / "deploy").is_dir()


def _image() -> str:
    return f"localhost/kasctl/kas-isar:{__version__}"
