"""The catalogue of bad inputs: each one gives ONE clear error, the right exit status, no traceback.

kasctl runs unattended in CI, where a traceback or a half-started container
costs a build slot and a person's time. Every case below runs the real
command line in-process (`kasctl.cli.main`) in a clean environment whose PATH
holds git but no container engine, so an error that arrived only after an
engine was looked for would show up as exit 3 ("no container engine found")
instead of the expected message: config, usage and credential errors must
never depend on an engine being installed. Each case asserts

- the exit status (2 for usage and config errors),
- the message: what is wrong, where (file:line, key path, option or
  variable), and a `kasctl: fix:` line saying how to fix it,
- exactly one error and no traceback,
- that nothing was touched: the project tree, the home dir and the rest of
  the sandbox are byte-for-byte and mode-for-mode what they were.

A few cases also run the installed `kasctl` script as a subprocess, to prove
the real entry point prints no traceback either. The IDs are the catalogue;
the README cites their number.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kasctl.cli import main

VALID = "header:\n  version: 14\nmachine: qemux86-64\n"
NOBODY = 65534

Prepare = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input. `{p}` in argv, env and expect stands for the project dir."""

    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    prepare: Prepare | None = None
    code: int = 2
    #: Run with the effective uid of nobody when the tests run as root, so
    #: that file modes apply (root reads a mode-000 file).
    as_nobody: bool = False
    root_only: bool = False


def _mkfifo(name: str) -> Prepare:
    return lambda p: os.mkfifo(p / name)


def _chmod(name: str, mode: int) -> Prepare:
    return lambda p: (p / name).chmod(mode)


def _outside_file(p: Path) -> None:
    (p.parent / "outside.yml").write_text(VALID)


def _mkdir(name: str) -> Prepare:
    return lambda p: (p / name).mkdir(parents=True)


def _locked_dir(p: Path) -> None:
    (p / "locked").mkdir()
    (p / "locked" / "kas.yml").write_text(VALID)
    (p / "locked").chmod(0)


def _git_repo(name: str) -> Prepare:
    def prepare(p: Path) -> None:
        subprocess.run(["git", "init", "-q", str(p / name)], check=True)
        (p / name / "extra.yml").write_text(VALID)

    return prepare


def _project_yml(text: str) -> dict[str, str | bytes]:
    return {"kas.yml": text}


H = "header:\n  version: 14\n"

CASES = [
    # ---- the config file itself --------------------------------------------
    Case(
        "config-missing",
        ("build", "--dry-run", "nothere.yml"),
        ("nothere.yml: config file not found", "check the path"),
    ),
    Case(
        "config-is-a-directory",
        ("build", "--dry-run", "confdir.yml"),
        ("confdir.yml: config file is a directory",),
        prepare=_mkdir("confdir.yml"),
    ),
    Case(
        "config-is-a-fifo",
        ("build", "--dry-run", "pipe.yml"),
        ("pipe.yml: config file is a fifo, not a regular file",),
        prepare=_mkfifo("pipe.yml"),
    ),
    Case(
        "config-not-readable",
        ("build", "--dry-run", "secret.yml"),
        ("secret.yml: config file is not readable", "kasctl: fix: check its mode and owner"),
        files={"secret.yml": VALID},
        prepare=_chmod("secret.yml", 0),
        as_nobody=True,
    ),
    Case(
        "config-dir-not-searchable",
        ("build", "--dry-run", "locked/kas.yml"),
        (
            "locked/kas.yml: config file cannot be reached: permission denied",
            "kasctl: fix: check the modes of the directories on its path",
        ),
        prepare=_locked_dir,
        as_nobody=True,
    ),
    Case(
        "config-is-a-device",
        ("build", "--dry-run", "/dev/null"),
        ("/dev/null: config file is a device, not a regular file",),
    ),
    Case(
        "config-wrong-suffix",
        ("build", "--dry-run", "kas.conf"),
        ("kas.conf: kas reads only .yml, .yaml and .json", "rename it to kas.yml"),
        files={"kas.conf": VALID},
    ),
    Case(
        "config-not-utf8",
        ("build", "--dry-run", "latin1.yml"),
        ("latin1.yml: config file is not UTF-8 text", "save it as UTF-8"),
        files={"latin1.yml": (H + "machine: caf\xe9\n").encode("latin-1")},
    ),
    Case(
        "config-empty",
        ("build", "--dry-run", "empty.yml"),
        ("empty.yml: config file is empty", "header: {version: 14}"),
        files={"empty.yml": ""},
    ),
    Case(
        "config-only-a-comment",
        ("build", "--dry-run", "comment.yml"),
        ("comment.yml: config file is empty",),
        files={"comment.yml": "# machine: qemux86-64\n"},
    ),
    # ---- YAML and JSON syntax ----------------------------------------------
    Case(
        "yaml-syntax-error",
        ("build", "--dry-run", "bad.yml"),
        ("bad.yml:4: YAML syntax error", "indentation"),
        files={"bad.yml": H + "machine: qemux86-64\n  distro: poky\n"},
    ),
    Case(
        "yaml-tab-indent",
        ("build", "--dry-run", "tab.yml"),
        ("tab.yml:2: YAML syntax error", "replace the tab"),
        files={"tab.yml": "header:\n\tversion: 14\n"},
    ),
    Case(
        "yaml-two-documents",
        ("build", "--dry-run", "two.yml"),
        ("two.yml:4: YAML syntax error: a second document", "remove the second `---`"),
        files={"two.yml": "---\n" + H + "---\nmachine: qemux86-64\n"},
    ),
    Case(
        "yaml-python-tag",
        ("build", "--dry-run", "tag.yml"),
        ("tag.yml:3: YAML syntax error", "python/name:os.system"),
        files={"tag.yml": H + "machine: !!python/name:os.system\n"},
    ),
    Case(
        "json-syntax-error",
        ("build", "--dry-run", "kas.json"),
        ("kas.json:1: JSON syntax error",),
        files={"kas.json": '{"header": {"version": 14,}}\n'},
    ),
    # ---- schema -------------------------------------------------------------
    Case(
        "top-level-list",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:1: (top level):", "is not a mapping", "header: {version: 14}"),
        files=_project_yml("- header\n- machine\n"),
    ),
    Case(
        "top-level-scalar",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:1: (top level): 'qemux86-64' is not a mapping",),
        files=_project_yml("qemux86-64\n"),
    ),
    Case(
        "header-missing",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:1: (top level): the required key 'header' is missing", "kas.readthedocs.io"),
        files=_project_yml("machine: qemux86-64\n"),
    ),
    Case(
        "header-version-missing",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:1: header: the required key 'version' is missing",),
        files=_project_yml("header:\n  includes: []\n"),
    ),
    Case(
        "header-version-too-new",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:2: header.version 99 is newer", "upgrade kasctl, or lower header.version"),
        files=_project_yml("header:\n  version: 99\n"),
    ),
    Case(
        "header-version-not-an-int",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:2: header.version: 'fourteen'", "expected '0.10' or an integer >= 1"),
        files=_project_yml("header:\n  version: fourteen\n"),
    ),
    Case(
        "unknown-top-level-key",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:3: machin: unknown key(s) ('machin' was unexpected)",),
        files=_project_yml(H + "machin: qemux86-64\n"),
    ),
    Case(
        "wrong-type",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:3: machine: ['qemux86-64', 'qemuarm64'] is not a string",),
        files=_project_yml(H + "machine: [qemux86-64, qemuarm64]\n"),
    ),
    Case(
        "repos-is-a-list",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:3: repos: ['isar'] is not a mapping",),
        files=_project_yml(H + "repos:\n  - isar\n"),
    ),
    Case(
        "repos-entry-is-a-url",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:4: repos.isar:", "expected empty or a mapping"),
        files=_project_yml(H + "repos:\n  isar: https://github.com/ilbers/isar.git\n"),
    ),
    Case(
        "repos-entry-unknown-key",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:5: repos.isar.uri: unknown key(s)",),
        files=_project_yml(H + "repos:\n  isar:\n    uri: https://example.invalid/isar\n"),
    ),
    Case(
        "layer-bad-value",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:7: repos.isar.layers.meta: 'maybe'", "'disabled'"),
        files=_project_yml(
            H + "repos:\n  isar:\n    url: https://example.invalid/isar\n"
            "    layers:\n      meta: maybe\n"
        ),
    ),
    Case(
        "build-system-unknown",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:3: build_system: 'yocto' is not one of", "'isar-rootless'"),
        files=_project_yml(H + "build_system: yocto\n"),
    ),
    Case(
        "includes-not-a-list",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:3: header.includes: 'base.yml' is not a list",),
        files=_project_yml("header:\n  version: 14\n  includes: base.yml\n"),
    ),
    # ---- includes, checked on the host as kas will resolve them -------------
    Case(
        "include-missing",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:4: include 'common/base.yml' not found", "{p}/common/base.yml"),
        files=_project_yml(H + "  includes:\n    - common/base.yml\n"),
    ),
    Case(
        "include-outside-the-repository",
        ("build", "--dry-run", "kas.yml"),
        ("kas.yml:4: include '../outside.yml'", "outside the repository {p}"),
        files=_project_yml(H + "  includes:\n    - ../outside.yml\n"),
        prepare=_outside_file,
    ),
    Case(
        "include-cycle",
        ("build", "--dry-run", "kas.yml"),
        ("include 'kas.yml' closes a cycle", "{p}/kas.yml -> {p}/base.yml -> {p}/kas.yml"),
        files={
            "kas.yml": H + "  includes:\n    - base.yml\n",
            "base.yml": H + "  includes:\n    - kas.yml\n",
        },
    ),
    Case(
        "include-invalid",
        ("build", "--dry-run", "kas.yml"),
        ("{p}/base.yml:3: machin: unknown key(s)", "(included from kas.yml:4)"),
        files={
            "kas.yml": H + "  includes:\n    - base.yml\n",
            "base.yml": H + "machin: x\n",
        },
    ),
    # ---- CONFIG lists (a.yml:b.yml) -------------------------------------------
    Case(
        "config-list-trailing-colon",
        ("build", "--dry-run", "kas.yml:"),
        ("config list 'kas.yml:' has an empty part", "base.yml:extra.yml"),
    ),
    Case(
        "config-list-leading-colon",
        ("build", "--dry-run", ":kas.yml"),
        ("config list ':kas.yml' has an empty part",),
    ),
    Case(
        "config-list-double-colon",
        ("build", "--dry-run", "kas.yml::extra.yml"),
        ("config list 'kas.yml::extra.yml' has an empty part",),
        files={"extra.yml": VALID},
    ),
    Case(
        "config-list-across-repositories",
        ("build", "--dry-run", "kas.yml:../outside.yml"),
        ("../outside.yml: config file is outside the first file's repository {p}",),
        prepare=_outside_file,
    ),
    Case(
        "config-list-two-repositories",
        ("build", "--dry-run", "kas.yml:sub/extra.yml"),
        ("sub/extra.yml: config file belongs to repository {p}/sub", "the first file to none"),
        prepare=_git_repo("sub"),
    ),
    Case(
        "config-list-second-missing",
        ("build", "--dry-run", "kas.yml:nothere.yml"),
        ("nothere.yml: config file not found",),
    ),
    # ---- paths an engine cannot mount ----------------------------------------
    Case(
        "repository-path-with-comma",
        ("build", "--dry-run", "a,b/kas.yml"),
        ("the config's repository '{p}/a,b' has a comma or a line break", "rename or move it"),
        files={"a,b/kas.yml": VALID},
    ),
    Case(
        "repository-path-with-newline",
        ("build", "--dry-run", "a\nb/kas.yml"),
        ("has a comma or a line break", "cannot mount"),
        files={"a\nb/kas.yml": VALID},
    ),
    Case(
        "work-dir-with-comma",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_WORK_DIR", "{p}/w,x", "cannot mount"),
        env={"KAS_WORK_DIR": "{p}/w,x"},
        prepare=_mkdir("w,x"),
    ),
    Case(
        "build-dir-with-comma",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_BUILD_DIR '/tmp/b,uild' has a comma or a line break", "plain path"),
        env={"KAS_BUILD_DIR": "/tmp/b,uild"},
    ),
    Case(
        "sstate-dir-with-newline",
        ("build", "--dry-run", "kas.yml"),
        ("SSTATE_DIR '/tmp/s\\nstate' has a comma or a line break", "plain path"),
        env={"SSTATE_DIR": "/tmp/s\nstate"},
    ),
    # ---- environment ----------------------------------------------------------
    Case(
        "work-dir-missing",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_WORK_DIR '{p}/gone' does not exist", "unset KAS_WORK_DIR"),
        env={"KAS_WORK_DIR": "{p}/gone"},
    ),
    Case(
        "work-dir-is-a-file",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_WORK_DIR '{p}/kas.yml' does not exist or is not a directory",),
        env={"KAS_WORK_DIR": "{p}/kas.yml"},
    ),
    Case(
        "build-dir-is-a-file",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_BUILD_DIR '{p}/kas.yml' exists and is not a directory", "point KAS_BUILD_DIR"),
        env={"KAS_BUILD_DIR": "{p}/kas.yml"},
    ),
    Case(
        "clean-the-work-dir",
        ("clean", "--dry-run"),
        ("KAS_BUILD_DIR: refusing to clean {p}", "the build directory itself"),
        env={"KAS_BUILD_DIR": "{p}"},
    ),
    Case(
        "ref-dir-missing",
        ("build", "--dry-run", "kas.yml"),
        ("KAS_REPO_REF_DIR '{p}/refs' does not exist", "it holds reference clones"),
        env={"KAS_REPO_REF_DIR": "{p}/refs"},
    ),
    Case(
        "root-without-kas-allow-root",
        ("build", "--dry-run", "kas.yml"),
        ("refusing to run as root", "KAS_ALLOW_ROOT=yes"),
        env={"KAS_ALLOW_ROOT": ""},
        root_only=True,
    ),
    Case(
        "engine-variable-unknown",
        ("build", "--dry-run", "kas.yml"),
        ("unknown container engine 'lxc'", "use docker or podman"),
        env={"KAS_CONTAINER_ENGINE": "lxc"},
    ),
    Case(
        "engine-old-variable-unknown",
        ("build", "--dry-run", "kas.yml"),
        ("unknown container engine 'Docker'",),
        env={"KAS_DOCKER_ENGINE": "Docker"},
    ),
    # ---- credentials: checked on the host, before any engine -----------------
    Case(
        "ssh-agent-without-socket-variable",
        ("build", "--dry-run", "--ssh-agent", "kas.yml"),
        ("--ssh-agent needs SSH_AUTH_SOCK, which is not set", "ssh-agent"),
    ),
    Case(
        "ssh-agent-socket-is-a-file",
        ("build", "--dry-run", "--ssh-agent", "kas.yml"),
        ("SSH_AUTH_SOCK '{p}/kas.yml' is not a socket", "unset SSH_AUTH_SOCK"),
        env={"SSH_AUTH_SOCK": "{p}/kas.yml"},
    ),
    Case(
        "ssh-dir-missing",
        ("build", "--dry-run", "--ssh-dir", "{p}/ssh", "kas.yml"),
        ("--ssh-dir '{p}/ssh' does not exist", "leave it out"),
    ),
    Case(
        "aws-dir-missing",
        ("build", "--dry-run", "--aws-dir", "{p}/aws", "kas.yml"),
        ("--aws-dir '{p}/aws' does not exist",),
    ),
    Case(
        "aws-dir-is-a-file",
        ("build", "--dry-run", "--aws-dir", "{p}/kas.yml", "kas.yml"),
        ("--aws-dir '{p}/kas.yml' is not a directory",),
    ),
    Case(
        "netrc-file-missing",
        ("build", "--dry-run", "kas.yml"),
        ("NETRC_FILE '{p}/netrc' does not exist", "unset NETRC_FILE"),
        env={"NETRC_FILE": "{p}/netrc"},
    ),
    Case(
        "npmrc-file-missing",
        ("build", "--dry-run", "kas.yml"),
        ("NPMRC_FILE '{p}/npmrc' does not exist",),
        env={"NPMRC_FILE": "{p}/npmrc"},
    ),
    Case(
        "gitconfig-file-is-a-directory",
        ("build", "--dry-run", "kas.yml"),
        ("GITCONFIG_FILE '{p}' is not a file",),
        env={"GITCONFIG_FILE": "{p}"},
    ),
    Case(
        "registry-auth-file-missing",
        ("build", "--dry-run", "kas.yml"),
        ("REGISTRY_AUTH_FILE '{p}/auth.json' does not exist",),
        env={"REGISTRY_AUTH_FILE": "{p}/auth.json"},
    ),
    Case(
        "aws-token-without-role",
        ("build", "--dry-run", "kas.yml"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not", "set AWS_ROLE_ARN"),
        files={"token": "eyJ0eXAi\n"},
        env={"AWS_WEB_IDENTITY_TOKEN_FILE": "{p}/token"},
    ),
    Case(
        "git-credential-store-missing",
        ("build", "--dry-run", "--git-credential-store", "{p}/creds", "kas.yml"),
        ("--git-credential-store '{p}/creds' does not exist",),
    ),
    Case(
        "git-credential-socket-not-a-socket",
        ("build", "--dry-run", "--git-credential-socket", "{p}/kas.yml", "kas.yml"),
        ("--git-credential-socket '{p}/kas.yml' is not a socket",),
    ),
    Case(
        "credential-path-with-comma",
        ("build", "--dry-run", "kas.yml"),
        ("NETRC_FILE '{p}/a,b/netrc' has a comma or a line break", "cannot mount"),
        files={"a,b/netrc": "machine example.invalid\n"},
        env={"NETRC_FILE": "{p}/a,b/netrc"},
    ),
    # ---- the command line ------------------------------------------------------
    Case(
        "preserve-env-short",
        ("build", "--dry-run", "-E", "kas.yml"),
        ("-E is not supported", "kasctl forwards"),
    ),
    Case(
        "preserve-env-long",
        ("build", "--dry-run", "--preserve-env", "kas.yml"),
        ("--preserve-env is not supported",),
    ),
    Case(
        "unknown-command",
        ("biuld", "kas.yml"),
        ("no such command 'biuld'; did you mean 'build'?", "kasctl -h"),
    ),
    Case(
        "unknown-option-before-command",
        ("--dryrun", "build", "kas.yml"),
        ("no such option: --dryrun", "kas's own options go after the command"),
    ),
    Case(
        "option-value-missing",
        ("build", "kas.yml", "--engine"),
        ("option --engine requires an argument", "--engine ENGINE"),
    ),
    Case(
        "flag-given-a-value",
        ("build", "--dry-run=yes", "kas.yml"),
        ("option --dry-run takes no value (got '--dry-run=yes')", "write just --dry-run"),
    ),
    Case(
        "shell-cmd-without-value",
        ("shell", "-c"),
        ("option -c requires an argument", "-c CMD"),
    ),
    Case(
        "image-unknown-subcommand",
        ("image", "pull"),
        ("no such command 'image pull'", "kasctl image build"),
    ),
    Case(
        "cmd-on-a-command-without-one",
        ("dump", "--dry-run", "-c", "bitbake -e", "kas.yml"),
        ("-c/--cmd is kas's option of `build` (the bitbake task)", "not of `dump`", "-c TASK"),
    ),
    Case(
        "isar-modes-together",
        ("build", "--dry-run", "--isar-rootless", "--isar-privileged", "kas.yml"),
        ("--isar-rootless and --isar-privileged exclude each other", "choose one"),
    ),
    Case(
        "diff-with-one-config",
        ("diff", "--dry-run", "kas.yml"),
        ("kasctl diff needs two configs", "kasctl diff A.yml B.yml"),
    ),
    Case(
        "for-all-repos-without-command",
        ("for-all-repos", "--dry-run", "kas.yml"),
        ("kasctl for-all-repos needs a config and a command", "'git status'"),
    ),
    Case(
        "log-level-unknown",
        ("-l", "verbose", "build", "--dry-run", "kas.yml"),
        ("unknown log level 'verbose'", "debug, info, warning"),
    ),
    Case(
        "ci-log-unknown",
        ("--ci-log", "jenkins", "build", "--dry-run", "kas.yml"),
        ("--ci-log 'jenkins' is not a log style", "none, gitlab, github"),
    ),
    Case(
        "emit-unknown-format",
        ("build", "--emit", "nomad", "kas.yml"),
        ("--emit 'nomad' is not a format", "--emit kubernetes"),
    ),
    Case(
        "emit-without-git",
        ("build", "--emit", "kubernetes", "kas.yml"),
        ("not a git repository with a commit", "push"),
    ),
    Case(
        "engine-option-unknown",
        ("build", "--dry-run", "--engine", "lxc", "kas.yml"),
        ("unknown container engine 'lxc'", "use docker or podman"),
    ),
    Case(
        "runtime-args-unbalanced-quote",
        ("build", "--dry-run", "--runtime-args", "--env 'A=b", "kas.yml"),
        ('--runtime-args "--env \'A=b" cannot be split', "No closing quotation", "balance"),
    ),
    Case(
        "menu-kconfig-missing",
        ("menu", "--dry-run", "Kconfig.missing"),
        ("Kconfig.missing: Kconfig file not found",),
    ),
]


# --------------------------------------------------------------------------
# the sandbox: a project, a home and a PATH without engines
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    root: Path
    project: Path


#: kasctl's cache of configs found valid: not the user's data, so not part of the check.
CACHE = "cache"


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path below root with its type, mode, size, mtime and content (no link followed)."""
    seen: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames.remove(CACHE)
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            content: object = None
            if stat.S_ISREG(st.st_mode):
                try:
                    content = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:  # a mode-0 case file, run as a normal user
                    content = "unreadable"
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            seen[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, content)
    return seen


def _unlock(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            (Path(dirpath) / name).chmod(0o755)


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    # Not tmp_path: pytest's base dir is private to root, and some cases run as nobody.
    root = Path(tempfile.mkdtemp(prefix="kasctl-bad-input-"))
    root.chmod(0o755)
    try:
        project = root / "project"
        project.mkdir()
        (project / "kas.yml").write_text(VALID)
        (project / "build" / "tmp").mkdir(parents=True)
        (project / "build" / "tmp" / "stamp").write_text("a previous build\n")
        (root / "home").mkdir()
        (root / CACHE).mkdir()
        bin_dir = root / "bin"
        bin_dir.mkdir()
        git = shutil.which("git")
        assert git, "git is needed to find a config's repository"
        (bin_dir / "git").symlink_to(git)
        for name in list(os.environ):
            monkeypatch.delenv(name)
        monkeypatch.setenv("PATH", str(bin_dir))
        monkeypatch.setenv("HOME", str(root / "home"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(root / CACHE))
        monkeypatch.setenv("KAS_ALLOW_ROOT", "yes")
        monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(root))
        monkeypatch.chdir(project)
        yield Sandbox(root=root, project=project)
    finally:
        _unlock(root)
        shutil.rmtree(root)


@contextmanager
def _effective_nobody(enabled: bool) -> Iterator[None]:
    """As root, become nobody (effective ids only) so that file modes apply; else as is."""
    if not enabled or os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _fill(text: str, project: Path) -> str:
    return text.replace("{p}", str(project))


def _setup(case: Case, box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, content in case.files.items():
        path = box.project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    if case.prepare is not None:
        case.prepare(box.project)
    for name, value in case.env.items():
        if value:
            monkeypatch.setenv(name, _fill(value, box.project))
        else:
            monkeypatch.delenv(name, raising=False)
    return [_fill(a, box.project) for a in case.argv]


def _assert_one_clear_error(case: Case, code: object, err: str, project: Path) -> None:
    assert code == case.code, err
    assert "Traceback" not in err
    for fragment in case.expect:
        assert _fill(fragment, project) in err, err
    lines = err.splitlines()
    assert lines[0].startswith("kasctl: error: "), err
    assert sum(line.startswith("kasctl: error: ") for line in lines) == 1, err
    assert any(line.startswith("kasctl: fix: ") for line in lines), err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if case.root_only and os.geteuid() != 0:
        pytest.skip("kasctl refuses root only when run as root")
    argv = _setup(case, sandbox, monkeypatch)
    before = _snapshot(sandbox.root)
    with _effective_nobody(case.as_nobody), pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    _assert_one_clear_error(case, info.value.code, err, sandbox.project)
    assert out == ""
    assert _snapshot(sandbox.root) == before, "a bad input changed files"


def test_the_catalogue_is_a_list_of_distinct_cases() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 32


def test_a_good_config_outside_any_repository_gets_as_far_as_the_engine(
    sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the same sandbox with a valid config fails only for want of an engine.

    Like kas-container, kasctl takes a config outside any git or hg repository
    as living in a repository of its own directory; that is not an error.
    """
    with pytest.raises(SystemExit) as info:
        main(["build", "--dry-run", "kas.yml"])
    err = capsys.readouterr().err
    assert info.value.code == 3, err
    assert "no container engine found" in err


# --------------------------------------------------------------------------
# the installed entry point, as a CI job runs it
# --------------------------------------------------------------------------


def _installed_kasctl() -> Path:
    for candidate in (Path(sys.executable).parent / "kasctl", Path("/opt/kasctl-dev/bin/kasctl")):
        if candidate.is_file():
            return candidate
    pytest.skip("no installed kasctl script next to this python")


SUBPROCESS_CASES = {c.id: c for c in CASES}


@pytest.mark.parametrize(
    "case_id",
    ["yaml-syntax-error", "config-is-a-fifo", "include-missing", "unknown-command"],
)
def test_installed_script_prints_no_traceback(case_id: str, sandbox: Sandbox) -> None:
    case = SUBPROCESS_CASES[case_id]
    argv = [_fill(a, sandbox.project) for a in case.argv]
    for name, content in case.files.items():
        (sandbox.project / name).write_text(str(content))
    if case.prepare is not None:
        case.prepare(sandbox.project)
    before = _snapshot(sandbox.root)
    result = subprocess.run(
        [str(_installed_kasctl()), *argv],
        cwd=sandbox.project,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,  # a fifo must not block it
        check=False,
    )
    _assert_one_clear_error(case, result.returncode, result.stderr, sandbox.project)
    assert _snapshot(sandbox.root) == before


def test_unix_socket_credentials_are_accepted(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side of the socket cases: a real agent socket passes the check."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sandbox.root / "agent.sock"))
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sandbox.root / "agent.sock"))
        with pytest.raises(SystemExit) as info:
            main(["build", "--dry-run", "--ssh-agent", "kas.yml"])
    finally:
        server.close()
    err = capsys.readouterr().err
    assert info.value.code == 3 and "no container engine found" in err, err
