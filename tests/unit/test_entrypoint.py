"""The image's entrypoint, the parts that need no container: its command line and
the git safe.directory it writes for a GitLab job (read back by the real git)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kasctl.errors import KasctlError
from kasctl.inside import entrypoint as ep

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _safe_dirs(gitconfig: Path) -> list[str]:
    """What git itself reads from the file: every safe.directory value."""
    out = subprocess.run(
        ["git", "config", "--null", "--file", str(gitconfig), "--get-all", "safe.directory"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.split("\0")[:-1]


def test_kas_commands_become_kas_and_probes_run_plain() -> None:
    assert ep.command_line(["build", "/repo/x.yml"]) == ["kas", "build", "/repo/x.yml"]
    assert ep.command_line(["--", "id", "-u"]) == ["id", "-u"]
    assert ep.command_line([]) == ["kas", "--help"]


def test_other_commands_are_refused_from_kasctl_and_run_in_direct_use() -> None:
    with pytest.raises(KasctlError, match="not a kas command"):
        ep.command_line(["git", "status"])
    assert ep.command_line(["git", "status"], direct=True) == ["git", "status"]
    assert ep.command_line(["sh", "-c", "build"], direct=True) == ["sh", "-c", "build"]
    assert ep.command_line(["build"], direct=True) == ["kas", "build"]


def test_gitlab_checkout_and_clone_path_are_marked(tmp_path: Path) -> None:
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("[core]\n\tpager = cat")  # an existing file without a final newline
    env = {"CI_PROJECT_DIR": "/builds/g/p", "GIT_CLONE_PATH": "/builds/custom"}

    assert ep.gitlab_safe_directories(env, str(gitconfig)) == ["/builds/g/p", "/builds/custom"]

    assert _safe_dirs(gitconfig) == ["/builds/g/p", "/builds/custom"]
    assert "pager = cat" in gitconfig.read_text()


def test_marking_twice_adds_nothing(tmp_path: Path) -> None:
    gitconfig = tmp_path / "gitconfig"
    env = {"CI_PROJECT_DIR": "/builds/p", "GIT_CLONE_PATH": "/builds/p"}
    ep.gitlab_safe_directories(env, str(gitconfig))
    ep.gitlab_safe_directories(env, str(gitconfig))
    assert _safe_dirs(gitconfig) == ["/builds/p"]


def test_nothing_named_nothing_written(tmp_path: Path) -> None:
    gitconfig = tmp_path / "gitconfig"
    assert ep.gitlab_safe_directories({"GITLAB_CI": "true"}, str(gitconfig)) == []
    assert not gitconfig.exists()


def test_relative_or_multiline_paths_are_not_marked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gitconfig = tmp_path / "gitconfig"
    env = {"CI_PROJECT_DIR": "builds/p", "GIT_CLONE_PATH": "/builds/a\n[core]"}
    assert ep.gitlab_safe_directories(env, str(gitconfig)) == []
    assert not gitconfig.exists()
    assert capsys.readouterr().err.count("not a plain absolute path") == 2


# Any absolute path git can hold in a config value reads back unchanged.
paths = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\0"),
    min_size=1,
    max_size=40,
).map(lambda s: "/" + s)


@given(path=paths)
def test_any_path_reads_back_as_written(path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gitconfig = Path(tmp) / "gitconfig"
        ep.gitlab_safe_directories({"CI_PROJECT_DIR": path}, str(gitconfig))
        assert _safe_dirs(gitconfig) == [path]


def _tree(root: Path, files: dict[str, int]) -> None:
    """Files below root (an image's / in miniature), with the given modes."""
    for path, mode in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("#!/bin/sh\n")
        target.chmod(mode)


LOCKED = {
    "/usr/bin/newuidmap": 0o4755,
    "/usr/bin/newgidmap": 0o4755,
    "/usr/bin/sudo": 0o755,  # the blocker
    "/usr/bin/su": 0o755,
    "/usr/lib/kasctl/sudo.real": 0o755,
    "/usr/lib/openssh/ssh-keysign": 0o755,
}


def test_kasctls_locked_image_passes_the_lock_check(tmp_path: Path) -> None:
    _tree(tmp_path, LOCKED)
    (tmp_path / "usr/lib/kasctl/setid-stripped").write_text(
        "/usr/bin/su\n/usr/lib/openssh/ssh-keysign\n/usr/bin/gone\n"
    )
    (tmp_path / "etc/sudoers.d").mkdir(parents=True)
    rule = tmp_path / "etc/sudoers.d/kasctl-builder"
    rule.write_text("builder ALL=(ALL) NOPASSWD: ALL\n")
    ep.check_locked(str(tmp_path))
    assert not rule.exists(), "a privileged run's sudoers rule is removed"


def test_the_lock_check_names_every_setid_binary_and_the_fix(tmp_path: Path) -> None:
    """What an image derived from kasctl's that gives the builder sudo back looks like."""
    _tree(
        tmp_path,
        {
            **LOCKED,
            "/usr/bin/sudo": 0o4755,  # sudo.real restored, setuid
            "/usr/bin/chage": 0o2755,  # setgid counts too
            "/usr/lib/openssh/ssh-keysign": 0o4755,  # only found through the stripped list
            "/usr/local/bin/helper": 0o4755,
            "/usr/lib/deep/elsewhere": 0o4755,  # not looked for: see SETID_DIRS
        },
    )
    (tmp_path / "usr/lib/kasctl/setid-stripped").write_text("/usr/lib/openssh/ssh-keysign\n")
    with pytest.raises(KasctlError) as caught:
        ep.check_locked(str(tmp_path))
    assert caught.value.message == (
        "this image is not locked for isar-rootless: setuid/setgid /usr/bin/chage, "
        "/usr/bin/sudo, /usr/lib/openssh/ssh-keysign, /usr/local/bin/helper "
        "(/usr/bin/sudo: a real sudo, the build could become root)"
    )
    assert caught.value.fix == (
        "keep kasctl's lock in your image: derive it with "
        f"`FROM localhost/kasctl/kas-isar:{ep.__version__}` and neither restore sudo nor set "
        "setuid/setgid bits (`chmod ug-s` those files in its Dockerfile), "
        "or build with --isar-privileged"
    )


def test_newuidmap_and_newgidmap_are_the_only_setuid_binaries_allowed(tmp_path: Path) -> None:
    _tree(tmp_path, {**LOCKED, "/usr/sbin/unix_chkpwd": 0o2755})
    assert ep.setid_binaries(str(tmp_path)) == ["/usr/sbin/unix_chkpwd"]
    (tmp_path / "usr/sbin/unix_chkpwd").chmod(0o755)
    assert ep.setid_binaries(str(tmp_path)) == []


def test_any_letter_may_stand_in_the_checkout_path(tmp_path: Path) -> None:
    """Only a relative path or a line break or NUL is refused, not ordinary names."""
    gitconfig = tmp_path / "gitconfig"
    env = {"GITLAB_CI": "true", "CI_PROJECT_DIR": "/builds/XYZ-group/X"}
    assert ep.gitlab_safe_directories(env, str(gitconfig)) == ["/builds/XYZ-group/X"]


def test_in_a_pod_only_root_owned_closed_volumes_are_given_to_builder(tmp_path: Path) -> None:
    import os

    from kasctl.inside import entrypoint

    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    closed, open_, users = tmp_path / "work", tmp_path / "emptydir", tmp_path / "claim"
    for d in (closed, open_, users):
        d.mkdir()
    closed.chmod(0o755)
    open_.chmod(0o1777)
    os.chown(users, 4321, 4321)
    (closed / "keep").write_text("x")

    entrypoint.own_dirs([str(closed), str(open_), str(users), str(tmp_path / "gone")], 1000, 1000)

    assert (closed.stat().st_uid, closed.stat().st_gid) == (1000, 1000)
    assert (closed / "keep").stat().st_uid == 0, "only the top level"
    assert open_.stat().st_uid == 0, "a dir open to all is left as it is"
    assert users.stat().st_uid == 4321, "a dir someone owns is left as it is"
