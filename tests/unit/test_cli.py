"""The command line's contract: bad input gives one clear error and exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kasctl import __version__
from kasctl import cli as kasctl_cli

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
