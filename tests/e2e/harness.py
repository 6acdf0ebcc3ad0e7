"""Real engines, a real unprivileged user, the real kasctl command.

These tests run kasctl as the test user (KASCTL_TEST_USER, default `kasci`,
set up by .ci/setup-engines.sh with one sub-id range) against the engine
modes the machine offers. Nothing is mocked. Outside CI a missing engine
skips its tests; under CI=true it fails them, so a broken setup cannot pass.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: The Isar stand-in image recipe's WORKDIR below the build dir, laid out as
#: bitbake lays out Isar's (tmp/work/DISTRO-ARCH/RECIPE/PV-PR).
IMAGE_WORKDIR = Path("tmp/work/debian-trixie-amd64/isar-standin-image/1.0-r0")
ROOT = Path(__file__).resolve().parent.parent.parent
USER = os.environ.get("KASCTL_TEST_USER", "kasci")
IN_CI = os.environ.get("CI") == "true"


def kasctl_bin() -> str:
    sibling = Path(sys.executable).parent / "kasctl"
    found = os.environ.get("KASCTL_BIN") or (str(sibling) if sibling.exists() else None)
    found = found or shutil.which("kasctl")
    if not found:
        pytest.fail("kasctl is not installed (set KASCTL_BIN or put it on PATH)")
    return found


@dataclass(frozen=True)
class EngineMode:
    """One engine mode as the test user reaches it."""

    name: str
    engine: str
    env: tuple[tuple[str, str], ...] = ()
    as_root: bool = False


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        if IN_CI:
            pytest.fail(f"test user {USER} is missing: run .ci/setup-engines.sh")
        pytest.skip(f"test user {USER} is missing")


def engine_modes() -> dict[str, EngineMode]:
    uid, gid = _ids_or_none()
    return {
        "rootless-podman": EngineMode("rootless-podman", "podman"),
        "system-docker": EngineMode("system-docker", "docker"),
        "rootless-docker": EngineMode(
            "rootless-docker", "docker", (("DOCKER_HOST", f"unix:///run/user/{uid}/docker.sock"),)
        ),
        # Rootful podman is reached as root; through sudo kasctl keeps the
        # invoking user's ids, which SUDO_UID/SUDO_GID carry.
        "rootful-podman": EngineMode(
            "rootful-podman",
            "podman",
            (("SUDO_UID", str(uid)), ("SUDO_GID", str(gid))),
            as_root=True,
        ),
    }


def _ids_or_none() -> tuple[int | None, int | None]:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        return None, None
    return entry.pw_uid, entry.pw_gid


@dataclass
class Runner:
    """Runs commands as the test user (or root, for rootful podman) with a clean environment."""

    mode: EngineMode
    user: pwd.struct_passwd

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        home = "/root" if self.mode.as_root else self.user.pw_dir
        env = {
            "HOME": home,
            "USER": "root" if self.mode.as_root else self.user.pw_name,
            "LANG": "C.UTF-8",
            "PATH": f"{Path(kasctl_bin()).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "KAS_CONTAINER_ENGINE": self.mode.engine,
        }
        if not self.mode.as_root:
            env["XDG_RUNTIME_DIR"] = f"/run/user/{self.user.pw_uid}"
        env.update(self.mode.env)
        env.update(extra or {})
        return env

    def run(
        self,
        argv: list[str],
        cwd: Path,
        extra_env: dict[str, str] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        env = self.env(extra_env)
        prefix = [] if self.mode.as_root else ["runuser", "-u", self.user.pw_name, "--"]
        cmd = [*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        result = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        # Shown by pytest on failure: the whole story of the run.
        print(f"$ {' '.join(argv)}  [{self.mode.name}, exit {result.returncode}]")
        print(result.stdout[-20000:])
        print(result.stderr[-20000:])
        return result

    def spawn(
        self, argv: list[str], cwd: Path, log: Path, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a command in the background whose pid IS the command (for signals).

        setpriv execs, where runuser would stay in between as the parent.
        """
        env = self.env(extra_env)
        prefix = (
            []
            if self.mode.as_root
            else ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]
        )
        cmd = [*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
        with log.open("wb") as out:
            return subprocess.Popen(
                cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def kasctl(
        self, *args: str, cwd: Path, extra_env: dict[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return self.run([kasctl_bin(), *args], cwd, extra_env, timeout)

    @property
    def uid(self) -> int:
        """The invoking user's uid: what the build's files must belong to."""
        return self.user.pw_uid

    @property
    def gid(self) -> int:
        return self.user.pw_gid


def _reachable(runner: Runner) -> str | None:
    """None when the engine answers for this user, else the reason."""
    fmt = "{{.Version.Version}}" if runner.mode.engine == "podman" else "{{.ServerVersion}}"
    probe = runner.run([runner.mode.engine, "info", "--format", fmt], Path("/"), timeout=60)
    if probe.returncode != 0:
        return probe.stderr.strip()[-300:] or "no answer"
    return None


def make_runner(mode_name: str) -> Runner:
    mode = engine_modes()[mode_name]
    runner = Runner(mode, _user())
    problem = _reachable(runner)
    if problem:
        message = f"{mode_name} is not reachable: {problem}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return runner


@dataclass
class Project:
    """A work dir with the Isar stand-in repository, owned by the runner's user."""

    work: Path
    repo: Path
    config: str  # relative to work

    @property
    def build(self) -> Path:
        return self.work / "build"


def make_project(
    runner: Runner,
    build_system: str = "isar-rootless",
    extra_conf: str = "",
    fixture: str = "isar-standin",
) -> Project:
    """A git repo with a stand-in fixture in a fresh work dir owned by the test user."""
    work = Path(tempfile.mkdtemp(prefix="kasctl-e2e-", dir="/tmp"))
    work.chmod(0o755)
    repo = work / "repo"
    shutil.copytree(FIXTURES / fixture, repo)
    cfg = repo / f"{fixture}.yml"
    text = cfg.read_text()
    if fixture == "isar-standin":
        text = text.replace("build_system: isar-rootless", f"build_system: {build_system}")
    mirror = os.environ.get("KASCTL_TEST_MIRROR")
    conf_lines = ([f'STANDIN_MIRROR = "{mirror}"'] if mirror else []) + (
        [extra_conf] if extra_conf else []
    )
    if conf_lines:
        body = "\n".join(f"    {line}" for line in conf_lines)
        text += f"local_conf_header:\n  standin: |\n{body}\n"
    cfg.write_text(text)
    git = ["git", "-C", str(repo)]
    identity = ["-c", "user.name=kasctl-tests", "-c", "user.email=tests@example.invalid"]
    for argv in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "fixture"]):
        subprocess.run([*git, *argv], check=True, capture_output=True)
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(work)], check=True)
    return Project(work=work, repo=repo, config=f"repo/{fixture}.yml")


def remove_tree(path: Path) -> None:
    """Remove a test tree, sub-id-owned leftovers included (the tests run as root)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def owners(root: Path) -> set[tuple[int, int]]:
    """Every (uid, gid) that owns something below root, without following links."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, ""]:
            st = os.lstat(os.path.join(dirpath, name)) if name else os.lstat(dirpath)
            found.add((st.st_uid, st.st_gid))
    return found
