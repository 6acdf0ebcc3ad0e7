"""The image's entrypoint, the parts that need no container: its command line and
the git safe.directory it writes for a GitLab job (read back by the real git)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kasctl.errors import KasctlError

ENTRYPOINT = Path(__file__).resolve().parent.parent.parent / "container" / "entrypoint.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kasctl_entrypoint", ENTRYPOINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ep = _load()
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
