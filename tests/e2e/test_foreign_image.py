"""Images that are not kasctl's, or derived from it and undoing its lock, on system docker.

The stand-in (tests/fixtures/kas-image-standin/) is NOT kas's image: it is built
FROM kasctl's and behaves as kas's own kas-isar does where kasctl's promises are
concerned (its own entrypoint, a passwordless sudo for the builder, setuid
binaries intact). `foreign` clears kasctl's label, `derived` keeps it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kasctl import __version__

from .harness import FIXTURES, IN_CI, Project, make_project, make_runner

pytestmark = pytest.mark.e2e

MODE = "system-docker"
KASCTL_IMAGE = f"localhost/kasctl/kas-isar:{__version__}"
#: What the stand-ins are built FROM: kasctl's image (another built from this tree, if given).
BASE_IMAGE = os.environ.get("KASCTL_TEST_IMAGE") or KASCTL_IMAGE
STANDIN = "localhost/kasctl-tests/kas-image-standin"
FOREIGN, DERIVED = f"{STANDIN}:foreign", f"{STANDIN}:derived"
#: What the stand-in's own entrypoint says when it runs.
OWN_ENTRYPOINT = "kas-image-standin: own entrypoint"


def _docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )


@pytest.fixture(scope="module")
def standins() -> Iterator[None]:
    """Both stand-ins, built with system docker as root (the store the test user's docker uses)."""
    make_runner(MODE)
    if _docker("image", "inspect", BASE_IMAGE).returncode != 0:
        message = f"{BASE_IMAGE} is not in system docker's store: run `kasctl image build`"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    context = FIXTURES / "kas-image-standin"
    for target, tag in (("foreign", FOREIGN), ("derived", DERIVED)):
        built = _docker(
            "build", "-q", "--target", target, "-t", tag,
            "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", str(context),
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
    yield
    _docker("rmi", "--force", FOREIGN, DERIVED)


def _created(work: Path, since: float) -> list[str]:
    """The containers created for this work dir since `since`, as the engine logged them."""
    until = time.time() + 1
    events = _docker(
        "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
        "--filter", "type=container", "--filter", "event=create",
        "--filter", f"label=io.kasctl.workdir={work}",
        "--format", "{{.Actor.Attributes.name}}",
    )  # fmt: skip
    assert events.returncode == 0, events.stderr
    return events.stdout.split()


def test_the_standin_gives_its_builder_sudo_as_kas_image_does(standins: None) -> None:
    """The control: run with its own entrypoint, the builder becomes root through sudo."""
    ran = _docker("run", "--rm", "-e", "USER_ID=1000", "-e", "GROUP_ID=1000", FOREIGN,
                  "sh", "-c", "id -u; sudo -n id -u")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["1000", "0"]
    assert OWN_ENTRYPOINT in ran.stderr


def test_isar_rootless_in_a_foreign_image_is_refused_before_anything_starts(
    standins: None, project_factory: list[Project]
) -> None:
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    since = time.time()

    result = runner.kasctl(
        "shell", project.config, "-c", "sudo true",
        cwd=project.work, extra_env={"KAS_CONTAINER_IMAGE": FOREIGN},
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"kasctl: error: image {FOREIGN} (KAS_CONTAINER_IMAGE) is not kasctl's (no "
        "io.kasctl.version label): its entrypoint, sudo and setuid binaries are not kasctl's, "
        "so sudo would be available to this isar-rootless build",
        f"kasctl: fix: derive your image from kasctl's: `FROM {KASCTL_IMAGE}` plus your "
        "additions (`kasctl image build` makes it), or leave KAS_CONTAINER_IMAGE unset",
    ]
    assert result.stdout == ""
    assert not project.build.exists()
    assert _created(project.work, since) == [], "no container was even created"


def test_a_derived_image_cannot_skip_the_lock_check(
    standins: None, project_factory: list[Project]
) -> None:
    """Label kept, own ENTRYPOINT, sudo and setuid bits back: kasctl's entrypoint still runs."""
    runner = make_runner(MODE)
    project = make_project(runner)
    project_factory.append(project)
    image = {"KAS_CONTAINER_IMAGE": DERIVED}

    dry = runner.kasctl("shell", "--dry-run", project.config, cwd=project.work, extra_env=image)
    assert dry.returncode == 0
    argv = shlex.split(dry.stdout.strip())
    at = argv.index(DERIVED)
    assert argv[at - 1] == "--entrypoint=/usr/bin/python3"
    assert argv[at + 1 :] == ["-I", "/usr/lib/kasctl/entrypoint.py", "shell", "/repo/"
                              "isar-standin.yml"]  # fmt: skip

    result = runner.kasctl(
        "shell", project.config, "-c", "sudo true", cwd=project.work, extra_env=image
    )

    assert result.returncode == 125, "the entrypoint refused to start the build"
    output = result.stdout + result.stderr
    assert OWN_ENTRYPOINT not in output
    assert (
        "kasctl-entrypoint: error: this image is not locked for isar-rootless: setuid/setgid "
        "/usr/bin/mount, /usr/bin/passwd, /usr/bin/su, /usr/bin/sudo, /usr/bin/umount "
        "(/usr/bin/sudo: a real sudo, the build could become root)"
    ) in result.stderr.splitlines()
    assert (
        "kasctl-entrypoint: fix: keep kasctl's lock in your image: derive it with "
        f"`FROM {KASCTL_IMAGE}` and neither restore sudo nor set setuid/setgid bits "
        "(`chmod ug-s` those files in its Dockerfile), or build with --isar-privileged"
    ) in result.stderr.splitlines()


def test_openembedded_in_the_foreign_image_still_runs_with_its_entrypoint(
    standins: None, project_factory: list[Project]
) -> None:
    """OE users bring their host tools in images of their own: those run as before."""
    runner = make_runner(MODE)
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    image = {"KAS_CONTAINER_IMAGE": FOREIGN}
    since = time.time()

    dry = runner.kasctl("shell", "--dry-run", project.config, cwd=project.work, extra_env=image)
    assert dry.returncode == 0
    assert "--entrypoint" not in dry.stdout
    result = runner.kasctl(
        "shell", project.config, "-c", "touch /repo/ran-here", cwd=project.work, extra_env=image
    )

    assert result.returncode == 0
    assert OWN_ENTRYPOINT in result.stderr
    assert (project.repo / "ran-here").stat().st_uid == runner.uid
    assert len(_created(project.work, since)) == 1, "the engine's log shows the container"
