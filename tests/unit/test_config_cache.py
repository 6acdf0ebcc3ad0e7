"""Config verdicts from the cache: the same answer as reading the file, for less."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kasctl.config import files, validate
from kasctl.errors import ConfigError

#: Where the child imports kasctl from: wherever this test imported it (a mutated copy, say).
ROOT = Path(files.__file__).resolve().parents[2]
VALID = "header:\n  version: 14\n  includes:\n    - other.yml\nmachine: qemuamd64\n"


def entries() -> list[Path]:
    return sorted((Path(os.environ["XDG_CACHE_HOME"]) / "kasctl").glob("*.json"))


def test_a_warm_run_imports_neither_yaml_nor_jsonschema(tmp_path: Path) -> None:
    (tmp_path / "kas.yml").write_text(VALID)
    probe = (
        "import json, sys; from pathlib import Path; from kasctl.config import files; "
        "f = files.load_file(Path('kas.yml')); "
        "print(json.dumps([f.data, 'yaml' in sys.modules, 'jsonschema' in sys.modules]))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, check=True
        )
        for _ in range(2)
    ]
    cold, warm = (json.loads(r.stdout) for r in runs)
    assert cold[1:] == [True, True]
    assert warm[1:] == [False, False]
    assert (
        warm[0]
        == cold[0]
        == {
            "header": {"version": 14, "includes": ["other.yml"]},
            "machine": "qemuamd64",
        }
    )


def test_a_hit_gives_the_same_data_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "kas.yml"
    path.write_text(VALID)
    read = files.load_file(path)
    assert len(entries()) == 1
    remembered = files.load_file(path)
    assert remembered.data == read.data
    assert remembered.lines == read.lines
    assert remembered.lines[("header", "includes", 0)] == 4


def test_an_edited_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "kas.yml"
    path.write_text(VALID)
    files.load_file(path)
    path.write_text(VALID.replace("qemuamd64", "qemuarm64"))
    assert files.load_file(path).data["machine"] == "qemuarm64"
    path.write_text(VALID + "machin: typo\n")
    with pytest.raises(ConfigError) as error:
        files.load_file(path)
    assert error.value.where == f"{path}:6"
    assert len(entries()) == 2  # the two valid versions; never the invalid one


def test_yaml_and_json_of_the_same_bytes_are_apart() -> None:
    text = '{"header": {"version": 14}}'
    assert validate.verdict_key(".json", text) != validate.verdict_key(".yml", text)
    assert validate.verdict_key(".yml", text) == validate.verdict_key(".yaml", text)


@pytest.mark.parametrize(
    "garbage",
    [
        "{broken",
        '{"key": "%s", "value": {"data": [], "lines": []}}',
        '{"key": "%s", "value": {"data": {}, "lines": [["header", 1]]}}',
        '{"key": "%s", "value": {"data": {}, "lines": [[["header"], "one"]]}}',
    ],
)
def test_a_corrupt_entry_is_read_again_and_repaired(tmp_path: Path, garbage: str) -> None:
    path = tmp_path / "kas.yml"
    path.write_text(VALID)
    first = files.load_file(path)
    [entry] = entries()
    entry.write_text(garbage.replace("%s", entry.stem))
    assert files.load_file(path).data == first.data
    assert json.loads(entry.read_text())["value"]["data"] == first.data


def test_an_unusable_cache_dir_costs_only_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    path = tmp_path / "kas.yml"
    path.write_text(VALID)
    assert files.load_file(path).data["machine"] == "qemuamd64"
    path.write_text("header: {version: 14}\nmachin: x\n")
    with pytest.raises(ConfigError):
        files.load_file(path)


def test_a_file_that_warns_is_not_remembered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "kas.yml"
    path.write_text(VALID + "machine: qemuarm64\n")  # given twice: a warning every run
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kasctl"):
            assert files.load_file(path).data["machine"] == "qemuarm64"
        assert "given twice" in caplog.text
    assert entries() == []
