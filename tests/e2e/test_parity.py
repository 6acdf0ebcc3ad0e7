"""What kas-container users rely on beyond plain builds, end to end on real engines:
`menu` on a real terminal, the clean commands after a real Isar stand-in build,
KAS_BUILDTOOLS_DIR and KAS_REPO_REF_DIR, and the image as a GitLab CI job image."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import shlex
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
from pathlib import Path

import pytest

from kasctl.engine.image import default_image

from .harness import (
    IMAGE_WORKDIR,
    Project,
    Runner,
    kasctl_bin,
    make_project,
    make_runner,
    owners,
    remove_tree,
)

pytestmark = pytest.mark.e2e


def _git(*args: str, cwd: Path) -> str:
    """git on the host as root, in repos the test user owns."""
    identity = ["-c", "user.name=kasctl-tests", "-c", "user.email=tests@example.invalid"]
    identity += ["-c", "safe.directory=*"]
    out = subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def _chown(runner: Runner, path: Path) -> None:
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(path)], check=True)


# --- menu on a real terminal -------------------------------------------------------------

KCONFIG = """\
mainmenu "kasctl menu check"

config KAS_INCLUDE_MAIN
\tstring
\tdefault "oe-standin.yml"

config STANDIN_ARM
\tbool "Build for qemuarm64"
\tdefault n

config KAS_INCLUDE_ARM
\tstring
\tdefault "arm.yml"
\tdepends on STANDIN_ARM
"""


class Terminal:
    """A command on a fresh pseudo-terminal (the controlling one), driven like a user."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.output = b""
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its stdin, stdout, stderr and controlling tty
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False once the other side is gone."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return False
            raise
        self.output += data
        return bool(data)

    def wait_for(self, text: bytes, timeout: float) -> None:
        start, deadline = len(self.output), time.monotonic() + timeout
        while text not in self.output[start:] and time.monotonic() < deadline:
            if not self._read(0.2):
                break
        assert text in self.output[start:], f"{text!r} never appeared; screen:\n{self.text}"

    def send(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def finish(self, timeout: float) -> int:
        """Read until the command ends; its exit status. Stopped (SIGTERM) if it hangs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.5):
            pass
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        while pid == 0 and time.monotonic() < deadline:  # the terminal closes before the exit
            time.sleep(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:  # kasctl stops its container on SIGTERM
            os.killpg(self.pid, signal.SIGTERM)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
            raise AssertionError(f"still running after {timeout}s; screen:\n{self.text}")
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


def _argv_as(runner: Runner, argv: list[str], extra_env: dict[str, str]) -> list[str]:
    """The command line Runner.run uses: the test user (or root), a clean environment."""
    env = runner.env(extra_env)
    prefix = [] if runner.mode.as_root else ["runuser", "-u", runner.user.pw_name, "--"]
    return [*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]


def _engine_argv(log: str) -> list[str]:
    """The engine command kasctl ran, from its `-l debug` log."""
    lines = [line for line in log.splitlines() if "running: " in line]
    assert len(lines) == 1, log
    return shlex.split(lines[0].split("running: ", 1)[1])


def test_menu_on_a_terminal_saves_the_choice_and_a_plain_build_uses_it(
    project_factory: list[Project],
) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    (project.repo / "Kconfig").write_text(KCONFIG)
    (project.repo / "arm.yml").write_text("header:\n  version: 14\nmachine: qemuarm64\n")
    _chown(runner, project.repo)

    menu = Terminal(
        _argv_as(runner, [kasctl_bin(), "-l", "debug", "menu", "repo/Kconfig"], {"TERM": "xterm"}),
        runner.env(),
        project.work,
    )
    try:
        menu.wait_for(b"Build for qemuarm64", timeout=120)
        menu.send(b" ")  # the first entry is selected: space toggles it on
        menu.wait_for(b"[*]", timeout=30)
        menu.send(b"S")  # the "Save & Exit" button's hotkey
    finally:
        status = menu.finish(timeout=60)
    assert status == 0, menu.text
    engine_argv = _engine_argv(menu.text)
    assert "-t" in engine_argv and "-i" in engine_argv, "a terminal gets a terminal"

    saved = (project.work / ".config.yaml").read_text()
    assert "STANDIN_ARM: true" in saved
    assert "- oe-standin.yml" in saved and "- arm.yml" in saved
    assert f"_source_dir_host: {json.dumps(str(project.repo))}" in saved

    built = runner.kasctl("-l", "debug", "build", cwd=project.work)
    assert built.returncode == 0
    engine_argv = _engine_argv(built.stderr)
    assert "-t" not in engine_argv and "-i" not in engine_argv, "no terminal, no -t/-i"
    image = project.build / "tmp" / "deploy" / "images" / "oe-standin.txt"
    assert image.read_text().strip().endswith("for qemuarm64"), "the menu's choice was built"


# --- the image as a GitLab CI job image ---------------------------------------------------


def _job(runner: Runner, project: Project, env: dict[str, str], *command: str) -> str:
    """Run the image the way a GitLab runner's docker executor does: its own entrypoint, the
    job's variables, the checkout (owned by someone else than the container's root) mounted."""
    image = default_image(os.environ)
    mounts = [f"--volume={project.repo}:/builds/group/project"]
    mounts += [f"--volume={project.repo}:/clone/project"] if "GIT_CLONE_PATH" in env else []
    variables = [f"--env={k}={v}" for k, v in env.items()]
    result = runner.run(
        ["docker", "run", "--rm", *variables, *mounts, image, *command], cwd=project.work
    )
    return f"exit {result.returncode}\n{result.stdout}{result.stderr}"


def test_image_as_a_gitlab_job_image_trusts_the_checkout(project_factory: list[Project]) -> None:
    runner = make_runner("system-docker")  # root in the container, as in a GitLab job
    project = make_project(runner, fixture="oe-standin")  # the checkout: the test user's
    project_factory.append(project)
    head = _git("rev-parse", "HEAD", cwd=project.repo)
    checkout = {"CI_PROJECT_DIR": "/builds/group/project"}
    status = ("git", "-C", "/builds/group/project", "rev-parse", "HEAD")

    outside_gitlab = _job(runner, project, checkout, *status)
    assert "dubious ownership" in outside_gitlab, "root must not trust a foreign checkout"

    in_gitlab = _job(runner, project, {"GITLAB_CI": "true", **checkout}, *status)
    assert in_gitlab.startswith("exit 0\n") and head in in_gitlab

    clone_path = {"GITLAB_CI": "true", **checkout, "GIT_CLONE_PATH": "/clone/project"}
    cloned = _job(runner, project, clone_path, "git", "-C", "/clone/project", "rev-parse", "HEAD")
    assert cloned.startswith("exit 0\n") and head in cloned
    only_those = _job(runner, project, clone_path, "git", "config", "--get-all", "safe.directory")
    assert only_those.split("\n", 1)[1].split() == ["/builds/group/project", "/clone/project"]


def test_through_kasctl_git_needs_no_safe_directory(project_factory: list[Project]) -> None:
    runner = make_runner("system-docker")
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    head = _git("rev-parse", "HEAD", cwd=project.repo)
    gitlab = {"GITLAB_CI": "true", "CI_PROJECT_DIR": str(project.work)}
    check = "git -C /repo rev-parse HEAD; git config --get-all safe.directory; echo safe=$?"

    result = runner.kasctl("shell", project.config, "-c", check, cwd=project.work, extra_env=gitlab)

    assert result.returncode == 0
    assert head in result.stdout, "the builder has the checkout owner's uid: git trusts it"
    assert "safe=1" in result.stdout, "and no safe.directory was needed for that"


# --- KAS_BUILDTOOLS_DIR and KAS_REPO_REF_DIR -----------------------------------------------

#: A repository kas can only get from the reference dir: the host name does not resolve.
LAYER_URL = "https://git.example.invalid/upstream/layer.git"
#: kas's name for its reference clone: the URL's host and path, '/', ':', '@' as '.'.
LAYER_REF = "git.example.invalid.upstream.layer.git"

#: What kas itself sees (the shell's parent is kas): its two variables, then the layer's
#: alternates. kas's shell gets a curated environment, so kas's own is read from /proc.
SHOW_DIRS = (
    "kas_env() { tr '\\0' '\\n' < /proc/$PPID/environ | sed -n \"s|^$1=||p\"; }; "
    "bt=$(kas_env KAS_BUILDTOOLS_DIR); refs=$(kas_env KAS_REPO_REF_DIR); "
    'echo "buildtools=$bt refs=$refs"; touch "$bt/written-inside"; '
    "cat /work/layer/.git/objects/info/alternates"
)


def _bare_layer(target: Path, runner: Runner) -> str:
    """A bare repository at target holding a one-commit layer, the test user's; its HEAD."""
    source = Path(tempfile.mkdtemp(prefix="kasctl-e2e-layer-", dir="/tmp"))
    try:
        (source / "marker").write_text("from the bare repository\n")
        _git("init", "-q", cwd=source)
        _git("add", "-A", cwd=source)
        _git("commit", "-qm", "layer", cwd=source)
        head = _git("rev-parse", "HEAD", cwd=source)
        _git("clone", "-q", "--bare", str(source), str(target), cwd=source)
    finally:
        shutil.rmtree(source)
    _chown(runner, target)
    return head


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_buildtools_and_reference_dirs_reach_kas(
    where: str, project_factory: list[Project]
) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner, fixture="oe-standin")
    project_factory.append(project)
    base = project.work
    if where == "outside":
        base = Path(tempfile.mkdtemp(prefix="kasctl-e2e-dirs-", dir="/tmp"))
        _chown(runner, base)
    buildtools, refs = base / "tools" / "buildtools", base / "refs"
    refs.mkdir()
    head = _bare_layer(refs / LAYER_REF, runner)  # kas's own layout of a reference dir
    cfg = project.repo / "oe-standin.yml"
    layer = f"repos:\n  layer:\n    url: {LAYER_URL}\n    commit: {head}\n"
    cfg.write_text(cfg.read_text().replace("repos:\n", layer))
    env = {"KAS_BUILDTOOLS_DIR": str(buildtools), "KAS_REPO_REF_DIR": str(refs)}
    try:
        dry = runner.kasctl("shell", "--dry-run", "--json", project.config, cwd=project.work,
                            extra_env=env)  # fmt: skip
        assert dry.returncode == 0
        plan = json.loads(dry.stdout)["plan"]
        targets = {m["target"]: m["source"] for m in plan["mounts"]}
        seen = dict(plan["env"])
        if where == "outside":
            expected = {"KAS_BUILDTOOLS_DIR": "/buildtools", "KAS_REPO_REF_DIR": "/repo-ref"}
            assert targets["/buildtools"] == str(buildtools) and targets["/repo-ref"] == str(refs)
        else:  # already visible below /work: passed as that path, not mounted again
            expected = {
                "KAS_BUILDTOOLS_DIR": "/work/tools/buildtools",
                "KAS_REPO_REF_DIR": "/work/refs",
            }
            assert set(targets) == {"/work", "/repo"}
        assert {k: seen[k] for k in expected} == expected

        result = runner.kasctl("shell", project.config, "-c", SHOW_DIRS, cwd=project.work,
                               extra_env=env)  # fmt: skip

        assert result.returncode == 0
        shown = f"buildtools={expected['KAS_BUILDTOOLS_DIR']} refs={expected['KAS_REPO_REF_DIR']}"
        assert shown in result.stdout
        # created with its parents, and what kas writes there lands on the host
        assert (buildtools / "written-inside").is_file()
        assert owners(base / "tools") == {(runner.uid, runner.gid)}
        # kas cloned the layer from the reference clone (its URL cannot be reached)
        ref_in_container = f"{expected['KAS_REPO_REF_DIR']}/{LAYER_REF}/objects"
        assert ref_in_container in result.stdout
        assert (project.work / "layer" / "marker").is_file()
        assert _git("rev-parse", "HEAD", cwd=project.work / "layer") == head
        assert _git("remote", "get-url", "origin", cwd=project.work / "layer") == LAYER_URL
    finally:
        if where == "outside":
            remove_tree(base)


# --- cleansstate, cleanall and purge after a real isar-rootless stand-in build ---------------

#: sstate and downloads as a build may leave them: an entry of the user's and a tree of a
#: sub-id's (with a directory the user cannot even write to), made in the builder's namespace.
SEED = (
    "unshare --map-auto --map-root-user sh -euc '"
    "for d in /work/build/sstate-cache /work/build/downloads; do "
    "mkdir -p $d/by-subid/locked; echo x > $d/by-subid/locked/f; echo own > $d/own-file; "
    "chown -R 1000:1000 $d/by-subid; chmod 0500 $d/by-subid/locked; done'"
)


def _paths(root: Path) -> set[str]:
    """Every path below root, relative to it, links not followed (root reads sub-id trees)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        found.update(os.path.relpath(os.path.join(dirpath, n), root) for n in dirnames + filenames)
    return found


def _without(paths: set[str], removed: list[str]) -> set[str]:
    return {p for p in paths if not any(p == r or p.startswith(f"{r}/") for r in removed)}


def _relative(lines: str, work: str) -> list[str]:
    """Listed paths (host or container, /work) relative to the work dir."""
    return [os.path.relpath(p.replace("/work", work, 1) if p.startswith("/work") else p, work)
            for p in lines.split()]  # fmt: skip


def _kas_removals(log: str) -> list[str]:
    return [line.split(" - Removing ", 1)[1] for line in log.splitlines() if " - Removing " in line]


def test_cleansstate_cleanall_and_purge_remove_exactly_what_they_list(
    project_factory: list[Project],
) -> None:
    runner = make_runner("rootless-podman")
    project = make_project(runner, extra_conf='STANDIN_KEEP_ROOTFS = "1"')
    project_factory.append(project)
    upstream = project.work / "upstream.git"  # a repository kas manages: purge removes its clone
    head = _bare_layer(upstream, runner)
    cfg = project.repo / "isar-standin.yml"
    managed = f"repos:\n  layer:\n    url: /work/upstream.git\n    commit: {head}\n"
    cfg.write_text(cfg.read_text().replace("repos:\n", managed))
    _chown(runner, project.work)
    work = str(project.work)

    def kasctl(*args: str) -> subprocess.CompletedProcess[str]:
        result = runner.kasctl(*args, project.config, cwd=project.work)
        assert result.returncode == 0
        return result

    built = kasctl("build")
    assert "isar-standin: done (rootless)" in built.stderr
    assert runner.kasctl("shell", project.config, "-c", SEED, cwd=project.work).returncode == 0
    assert (project.build / IMAGE_WORKDIR / "rootfs").is_dir()
    foreign = {u for u, _ in owners(project.build / "sstate-cache")} - {runner.uid}
    assert foreign, "the seeded trees must belong to sub-ids, as a rootfs does"
    before = _paths(project.work)

    # purge, dry: kas lists the tmp dirs, the caches' contents, the clone, the build dir
    listed = _kas_removals(kasctl("purge", "--dry-run").stderr)
    assert listed == [
        "/work/build/tmp",
        "/work/build/sstate-cache/*",
        "/work/build/downloads/*",
        "/work/layer",
        "/work/build/*",
        "/work/build",
    ]
    # cleanall, dry: the tmp dirs and the entries of both caches
    assert _relative(kasctl("cleanall", "--dry-run").stdout, work) == [
        "build/downloads/by-subid",
        "build/downloads/own-file",
        "build/sstate-cache/by-subid",
        "build/sstate-cache/own-file",
        "build/tmp",
    ]
    assert _paths(project.work) == before, "dry runs remove nothing"

    # cleansstate: the tmp dirs and the sstate entries, exactly as listed; the dirs stay
    dry = _relative(kasctl("cleansstate", "--dry-run").stdout, work)
    assert dry == ["build/sstate-cache/by-subid", "build/sstate-cache/own-file", "build/tmp"]
    assert _relative(kasctl("cleansstate").stdout, work) == dry
    after = _paths(project.work)
    assert after == _without(before, dry)
    assert {"build/sstate-cache", "build/downloads/by-subid/locked/f", "build/conf"} <= after

    # cleanall: now only the downloads' entries are left to go
    dry = _relative(kasctl("cleanall", "--dry-run").stdout, work)
    assert dry == ["build/downloads/by-subid", "build/downloads/own-file"]
    assert _relative(kasctl("cleanall").stdout, work) == dry
    assert _paths(project.work) == _without(after, dry)
    assert owners(project.work) == {(runner.uid, runner.gid)}, "no sub-id's file is left"

    # purge: the clone and the whole build dir, exactly what its dry run lists
    before = _paths(project.work)
    listed = _kas_removals(kasctl("purge", "--dry-run").stderr)
    assert _kas_removals(kasctl("purge").stderr) == listed
    gone = [os.path.relpath(p.removesuffix("/*"), "/work") for p in listed]
    assert _paths(project.work) == _without(before, gone)
    assert not (project.work / "layer").exists() and not project.build.exists()
    assert (project.repo / "isar-standin.yml").is_file() and upstream.is_dir()
