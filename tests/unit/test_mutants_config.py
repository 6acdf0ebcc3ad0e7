"""Config behaviour the rest of the suite let change unnoticed (found by mutmut, tests/MUTATION.md).

Each test reads real files (YAML, JSON, a Kconfig, a menu's .config.yaml, a
git worktree's .git file, symlinks, a socket) the way `kasctl build` does, and
asserts on what a user or the planner would see: the error's where (file and
line), its how-to-fix, the warning's text, the repository mounted, the build
system chosen. A fix is pinned by its opening words (what to do), a message
by what it names; the rest of the wording is free.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path

import pytest
import yaml

from kasctl.build_system import BuildSystem
from kasctl.config import validate
from kasctl.config.files import ConfigFile, load_file
from kasctl.config.read import default_config, load, load_kconfig, remember_source_dir
from kasctl.config.repo import Worktree, repo_dir_of, worktree_of
from kasctl.errors import ConfigError
from tests.unit.test_config import (
    _no_enclosing_repository,  # noqa: F401 (an autouse fixture: keeps git out of tmp_path)
    assert_config_error,
    write,
)

H = "header:\n  version: 14\n"


@pytest.fixture(autouse=True)
def _warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kasctl")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def error_of(path: Path | str, *, kconfig: bool = False) -> ConfigError:
    """The ConfigError that loading path gives, checked for exit status 2 and one line."""
    with pytest.raises(ConfigError) as info:
        if kconfig:
            load_kconfig(str(path), None)
        else:
            load(str(path))
    assert_config_error(info.value)
    return info.value


def fix_of(error: ConfigError) -> str:
    assert error.fix is not None
    return error.fix


def git_repo(path: Path) -> Path:
    """A directory that git takes for a repository's top level (no git binary needed)."""
    (path / ".git" / "objects").mkdir(parents=True)
    (path / ".git" / "refs").mkdir()
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return path.resolve()


# --------------------------------------------------------------------------
# the file itself: what is wrong with the path, and what to do
# --------------------------------------------------------------------------


def test_a_missing_config_suggests_the_list_syntax_a_missing_kconfig_does_not(
    tmp_path: Path,
) -> None:
    assert fix_of(error_of(tmp_path / "kas.yml")) == "check the path (CONFIG may be a.yml:b.yml)"
    assert fix_of(error_of(tmp_path / "Kconfig", kconfig=True)) == "check the path"


@pytest.mark.parametrize(
    ("kind", "why"),
    [("symlink-loop", "Too many levels of symbolic links"), ("below-a-file", "Not a directory")],
)
def test_a_path_that_cannot_be_looked_at_names_the_os_reason(
    tmp_path: Path, kind: str, why: str
) -> None:
    if kind == "below-a-file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "kas.yml"
    else:
        path = tmp_path / "kas.yml"
        path.symlink_to(path.name)
    error = error_of(path)
    assert error.message == f"cannot read the config file: {why}"
    assert error.where == str(path)
    assert fix_of(error) == "check the path"


def test_a_file_that_fails_to_read_names_the_os_reason() -> None:
    # a regular file whose read fails with EIO: offset 0 of a process's memory is never mapped
    error = error_of("/proc/self/mem")
    assert error.message == "cannot read the config file: Input/output error"
    assert error.where == "/proc/self/mem"
    assert fix_of(error) == "check the path"


def test_a_directory_says_to_name_a_file_in_it(tmp_path: Path) -> None:
    (tmp_path / "kas.yml").mkdir()
    assert fix_of(error_of(tmp_path / "kas.yml")) == "name a file in it, e.g. DIR/kas.yml"


def test_a_socket_is_named_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative name: a socket path is limited to 107 bytes
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind("kas.yml")
        error = error_of("kas.yml")
    finally:
        server.close()
    assert error.message == "config file is a socket, not a regular file"
    assert fix_of(error).startswith("write the config to a file in the repository")


def test_a_file_that_is_not_utf8_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", b"header:\n  version: 14\nmachine: caf\xe9\n")
    error = error_of(path)
    assert error.message == "config file is not UTF-8 text (invalid continuation byte at byte 34)"
    assert fix_of(error) == "save it as UTF-8"


@pytest.mark.parametrize(
    ("name", "said"), [("kas", "has no suffix"), ("kas.txt", "ends in '.txt'")]
)
def test_a_name_kas_would_not_read_says_what_to_rename_it_to(
    tmp_path: Path, name: str, said: str
) -> None:
    error = error_of(write(tmp_path, name, H))
    assert error.message.endswith(f"and this name {said}")
    assert fix_of(error) == "rename it to kas.yml"


# --------------------------------------------------------------------------
# YAML and JSON syntax: the line, and what to check there
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "fix"),
    [
        (H + "machine: a\n\tdistro: x\n", 4, "YAML indents with spaces only: replace the tab"),
        ("a: 1\n---\nb: 2\n", 2, "a kas config is one YAML document: remove the second `---`"),
        (H + "machine: 'abc\n", 4, "check the indentation, colons and quotes on that line"),
    ],
    ids=["tab", "second-document", "other"],
)
def test_a_yaml_syntax_error_says_what_to_check(
    tmp_path: Path, text: str, line: int, fix: str
) -> None:
    path = write(tmp_path, "kas.yml", text)
    error = error_of(path)
    assert error.where == f"{path}:{line}"
    assert error.message.startswith("YAML syntax error: ")
    assert fix_of(error).startswith(fix)


def test_a_control_character_says_to_remove_it(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: a\x01b\n")
    error = error_of(path)
    assert error.where == str(path)
    assert error.message.startswith("YAML error: ")
    assert fix_of(error).startswith("a kas config is plain YAML text: remove control characters")


def test_a_json_syntax_error_says_what_to_check(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.json", '{"header": {"version": 14},\n "machine": "x",\n}\n')
    error = error_of(path)
    assert error.where == f"{path}:3"
    assert fix_of(error).startswith("check the commas, quotes and brackets there (JSON allows")


def test_an_empty_file_says_what_a_config_needs(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "kas.yml", "# nothing yet\n"))
    assert fix_of(error).startswith("a kas config needs at least `header: {version: 14}`")


def test_a_key_that_is_a_list_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: x\n[a, b]: 1\n")
    error = error_of(path)
    assert error.where == f"{path}:4"
    assert error.message.startswith("a mapping key must be a plain value, not a list or mapping")
    assert fix_of(error).startswith("write the key as a plain word or a quoted string")


def test_a_value_yaml_cannot_build_says_to_quote_it(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "kas.yml", H + "machine: !!int x\n"))
    assert error.message.startswith("cannot read a YAML value: ")
    assert fix_of(error).startswith("quote the value (e.g. '2001-02-30') or remove its !! tag")


def test_yaml_nested_hundreds_deep_is_one_clear_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kas.yml",
        H + "env:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(1200)),
    )
    error = error_of(path)
    assert error.where == str(path)
    assert error.message.startswith("the YAML nests too deeply to be read")
    assert fix_of(error).startswith("a kas config needs only a few levels of nesting")


def test_a_key_given_twice_is_said_once_with_both_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "kas.yml", H + "repos:\n  isar:\n    url: a\n    url: b\n")
    assert load_file(path).data["repos"]["isar"]["url"] == "b"
    assert warnings(caplog) == [
        f"{path}:6: repos.isar.url is given twice (also on line 5); the later one wins"
    ]


# --------------------------------------------------------------------------
# schema errors: the line of the key, and one problem named with a count of the rest
# --------------------------------------------------------------------------


def test_an_error_inside_an_alias_names_the_line_that_uses_it(tmp_path: Path) -> None:
    # the anchored mapping is a valid env, but not a valid set of layers
    text = H + "env: &e\n  A: x\nrepos:\n  r:\n    url: u\n    layers: *e\n"
    path = write(tmp_path, "kas.yml", text)
    error = error_of(path)
    assert error.where == f"{path}:8"
    assert error.message.startswith("repos.r.layers.A: 'x' is not valid here")


def test_a_recursive_alias_is_a_schema_error_on_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: &x [*x]\n")
    error = error_of(path)
    assert error.where == f"{path}:3"
    assert error.message == "machine: [[...]] is not a string"


def test_keys_after_an_inline_merge_keep_their_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "repos:\n  b:\n    <<: {path: b}\n    url: 5\n")
    error = error_of(path)
    assert error.where == f"{path}:6"
    assert error.message == "repos.b.url: 5 is not a string"
    merged = write(tmp_path, "ok.yml", H + "repos:\n  b:\n    <<: {path: b}\n    url: u\n")
    assert load_file(merged).data["repos"]["b"] == {"path": "b", "url": "u"}


def test_one_problem_is_named_and_the_others_counted(tmp_path: Path) -> None:
    one = write(tmp_path, "one.yml", H + "machine: 5\n")
    assert error_of(one).message == "machine: 5 is not a string"
    three = write(tmp_path, "three.yml", H + "machine: 5\ndistro: 6\ntask: 7\n")
    assert error_of(three).message.endswith(" (and 2 more problem(s))")


def test_keys_of_mixed_types_report_the_first_problem_by_key_path(tmp_path: Path) -> None:
    # 2 and "b" cannot be ordered, so jsonschema's best_match fails: the first by text wins
    path = write(tmp_path, "kas.yml", H + "env:\n  b: 1\n  2: 3\n")
    error = error_of(path)
    assert error.where == f"{path}:5"
    assert error.message == "env[2]: 3 is not a string or empty (and 1 more problem(s))"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "header:\n  version: 0\n",
            "header.version: 0 is less than the minimum of 1",
        ),
        (
            H + "repos:\n  a:\n    url: x\n    type: svn\n",
            "repos.a.type: 'svn' is not one of 'git', 'hg'",
        ),
        (
            H + "  includes:\n    - 5\n",
            "header.includes[0]: 5 is not valid here: "
            "expected a string or a mapping with 'repo' and 'file'",
        ),
        (
            H + "repos:\n  a:\n    url: x\n    layers:\n      meta: maybe\n",
            "repos.a.layers.meta: 'maybe' is not valid here: expected empty or 'disabled' or "
            "'excluded' or 'n' or 'no' or '0' or 'false' or 0 or False or a mapping",
        ),
        (
            H + "target: {a: 1}\n",
            "target: {'a': 1} is not valid here: expected a string or a list",
        ),
    ],
    ids=["minimum", "enum", "include-kinds", "layer-values", "target-kinds"],
)
def test_a_schema_error_says_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    assert error_of(write(tmp_path, "kas.yml", text)).message == message


def test_a_json_file_s_problems_are_on_line_1(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", '{"header": {"version": 14}, "machine": 5}')
    assert error_of(bad).where == f"{bad}:1"
    new = write(tmp_path, "new.json", '{"machine": "x", "header": {"version": 24}}')
    error = error_of(new)
    assert error.where == f"{new}:1"
    assert fix_of(error).startswith("upgrade kasctl, or lower header.version")


def test_a_non_mapping_file_says_how_a_config_starts(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "kas.yml", "- a\n"))
    assert fix_of(error).startswith("a kas config is a mapping that starts with `header:")


# --------------------------------------------------------------------------
# the verdict cache: a hit is used, and only for the same parser and kasctl
# --------------------------------------------------------------------------


def _the_entry() -> Path:
    [entry] = (Path(os.environ["XDG_CACHE_HOME"]) / "kasctl").glob("*.json")
    return entry


def test_a_remembered_verdict_is_what_a_later_load_returns(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: qemuamd64\n")
    assert load_file(path).lines[("machine",)] == 3
    entry = _the_entry()
    stored = json.loads(entry.read_text())
    stored["value"]["data"]["machine"] = "remembered"
    stored["value"]["lines"] = [
        [k, 7 if k == ["machine"] else n] for k, n in stored["value"]["lines"]
    ]
    entry.write_text(json.dumps(stored))
    again = load_file(path)  # the bytes are unchanged: the cache answers
    assert again.data["machine"] == "remembered"
    assert again.lines[("machine",)] == 7
    assert again.lines[("header", "version")] == 2


def test_a_newer_kasctl_does_not_trust_an_older_one_s_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: qemuamd64\n")
    load_file(path)
    entry = _the_entry()
    stored = json.loads(entry.read_text())
    stored["value"]["data"]["machine"] = "from the old version"
    entry.write_text(json.dumps(stored))
    monkeypatch.setattr(validate, "__version__", "999.0")
    validate._verdict_inputs.cache_clear()
    try:
        assert load_file(path).data["machine"] == "qemuamd64"
    finally:
        monkeypatch.undo()
        validate._verdict_inputs.cache_clear()


def test_a_json_verdict_is_not_taken_for_the_same_bytes_in_yaml(tmp_path: Path) -> None:
    text = '{"header": {"version": 1e1}}'  # JSON: 10.0, an integer; YAML: the string '1e1'
    assert load_file(write(tmp_path, "kas.json", text)).data == {"header": {"version": 10.0}}
    error = error_of(write(tmp_path, "kas.yml", text))
    assert error.message.startswith("header.version: '1e1' is not valid here")


def test_loading_leaves_the_kasctl_logger_as_it_was(tmp_path: Path) -> None:
    before = list(logging.getLogger("kasctl").filters)
    load_file(write(tmp_path, "kas.yml", H))
    with pytest.raises(ConfigError):
        load_file(write(tmp_path, "bad.yml", H + "machine: 5\n"))
    assert logging.getLogger("kasctl").filters == before


# --------------------------------------------------------------------------
# the build system: messages and the warnings that name the choice
# --------------------------------------------------------------------------


def test_isar_s_warning_names_the_place_and_what_to_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "kas.json", '{"header": {"version": 14}, "build_system": "isar"}')
    assert load(str(path)).build_system is BuildSystem.ISAR_PRIVILEGED
    (text,) = warnings(caplog)
    assert text.startswith(f"{path}:1: build_system 'isar' is deprecated")  # JSON: line 1
    assert text.endswith("write isar-privileged or isar-rootless")


def test_an_unknown_build_system_lists_kas_s_names() -> None:
    with pytest.raises(ConfigError) as info:
        BuildSystem.parse("yocto", "kas.yml:3")
    assert fix_of(info.value).startswith("use one of openembedded, oe, isar-privileged")


@pytest.mark.parametrize(
    ("option", "file_says", "said"),
    [
        (
            BuildSystem.ISAR_ROOTLESS,
            None,
            "openembedded (kas's default: no file sets build_system)",
        ),
        (BuildSystem.ISAR_ROOTLESS, "oe", "openembedded ({top}:4)"),
        (BuildSystem.ISAR_PRIVILEGED, "isar-rootless", "isar-rootless ({top}:4)"),
    ],
)
def test_an_option_that_disagrees_names_both_and_what_to_set(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    option: BuildSystem,
    file_says: str | None,
    said: str,
) -> None:
    top = write(
        tmp_path,
        "kas.yml",
        H + "machine: x\n" + (f"build_system: {file_says}\n" if file_says else ""),
    )
    assert load(str(top), option).build_system is option
    o = option.value
    (text,) = warnings(caplog)
    assert text == (
        f"--{o} sets the container up for {o}, but kas builds what the config says: "
        f"{said.format(top=top)}; set `build_system: {o}` in the config so that both agree"
    )


def test_an_option_that_agrees_with_a_spelling_of_kas_is_not_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    top = write(tmp_path, "kas.yml", H + "build_system: oe\n")
    assert load(str(top), BuildSystem.OPENEMBEDDED).build_system is BuildSystem.OPENEMBEDDED
    assert warnings(caplog) == []


def test_remote_includes_after_the_choice_are_each_named_with_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    top = write(
        tmp_path,
        "kas.yml",
        H
        + "  includes:\n    - {repo: isar, file: kas/isar.yaml}\n"
        + "    - {repo: meta-x, file: x.yml}\nbuild_system: isar-rootless\n",
    )
    write(tmp_path, "more.yml", H + "  includes:\n    - {repo: meta-y, file: y.yml}\n")
    assert load(f"{top}:{tmp_path / 'more.yml'}").build_system is BuildSystem.ISAR_ROOTLESS
    (text,) = warnings(caplog)
    assert text.startswith(f"build_system is isar-rootless, set in {top}:6, but kas merges ")
    assert f"'y.yml' from repo 'meta-y' ({tmp_path / 'more.yml'}:4) after that" in text
    assert (
        "cannot read a repo kas has not checked out yet: if it sets build_system, the container "
        "is set up for the wrong build system; make the choice explicit with "
        "--isar-rootless or --isar-privileged, or a top-level `build_system:` in "
        f"{tmp_path / 'more.yml'}"
    ) in text
    assert text.endswith(f"`build_system:` in {tmp_path / 'more.yml'}")
    caplog.clear()
    plain = write(
        tmp_path,
        "plain.yml",
        H + "  includes:\n    - {repo: a, file: a.yml}\n    - {repo: b, file: b.yml}\n",
    )
    load(str(plain))
    (text,) = warnings(caplog)
    assert (
        f"merges 'a.yml' from repo 'a' ({plain}:4), 'b.yml' from repo 'b' ({plain}:5) after" in text
    )


# --------------------------------------------------------------------------
# a:b:c and the repository
# --------------------------------------------------------------------------


def test_a_second_file_in_a_nested_repository_names_both_repositories(tmp_path: Path) -> None:
    outer = git_repo(tmp_path / "outer")
    inner = git_repo(outer / "inner")
    a = write(outer, "a.yml", H)
    b = write(inner, "b.yml", H)
    error = error_of(f"{a}:{b}")
    assert error.where == str(b)
    assert error.message == (
        f"config file belongs to repository {inner}, the first file to repository {outer}"
    )
    assert fix_of(error).startswith("kas takes all files of a:b:c from one repository")


def test_a_second_file_git_cannot_place_belongs_to_no_repository(tmp_path: Path) -> None:
    outer = git_repo(tmp_path / "outer")
    (outer / "broken").mkdir()
    (outer / "broken" / ".git").write_text("not a gitdir line\n")  # git refuses to go on
    a = write(outer, "a.yml", H)
    b = write(outer / "broken", "b.yml", H)
    error = error_of(f"{a}:{b}")
    assert error.message == (
        f"config file belongs to no repository, the first file to repository {outer}"
    )


def test_an_empty_part_of_a_config_list_says_how_to_join_files(tmp_path: Path) -> None:
    error = error_of(f"{write(tmp_path, 'a.yml', H)}::b.yml")
    assert fix_of(error).startswith("join config files with ':' and no empty entries")


def test_a_second_file_outside_the_first_s_repository_says_where_it_must_be(
    tmp_path: Path,
) -> None:
    a = write(tmp_path / "one", "a.yml", H)
    b = write(tmp_path / "two", "b.yml", H)
    error = error_of(f"{a}:{b}")
    assert fix_of(error).startswith("all files of a:b:c must live in the first file's repository")


def test_the_loaded_files_keep_their_lines_for_the_planner(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", H + "machine: x\n")
    (loaded,) = load(str(path)).files
    assert loaded.path == path.resolve()
    assert loaded.lines[("machine",)] == 3


def test_hg_is_asked_when_git_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "hg-repo"
    (root / "sub").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hg = bin_dir / "hg"
    hg.write_text(f'#!/bin/sh\n[ "$1" = root ] && echo {root} && exit 0\nexit 1\n')
    hg.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert repo_dir_of(write(root / "sub", "kas.yml", H)) == root.resolve()


def test_a_git_that_succeeds_without_an_answer_is_no_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.chdir(bin_dir)
    assert repo_dir_of(write(tmp_path / "conf", "kas.yml", H)) == (tmp_path / "conf").resolve()


def test_a_config_s_repository_is_its_own_not_the_current_directory_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo(tmp_path / "elsewhere"))
    path = write(tmp_path / "conf", "kas.yml", H)
    assert repo_dir_of(path) == (tmp_path / "conf").resolve()


# --------------------------------------------------------------------------
# git worktrees: the .git file
# --------------------------------------------------------------------------


def _worktree(tmp_path: Path, main: str, commondir: str | None) -> Path:
    gitdir = tmp_path / main / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    if commondir is not None:
        (gitdir / "commondir").write_text(commondir + "\n")
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {gitdir}\n")
    return wt


def test_a_worktree_in_a_path_with_a_colon_is_found(tmp_path: Path) -> None:
    wt = _worktree(tmp_path, "main:repo", "../..")
    assert worktree_of(wt) == Worktree(
        common_dir=(tmp_path / "main:repo" / ".git").resolve(), gitdir="worktrees/wt"
    )


@pytest.mark.parametrize("commondir", [None, "../../../elsewhere"], ids=["none", "not-above"])
def test_a_worktree_without_a_common_dir_above_it_is_not_one(
    tmp_path: Path, commondir: str | None
) -> None:
    assert worktree_of(_worktree(tmp_path, "main", commondir)) is None


# --------------------------------------------------------------------------
# includes: the repository is all the container sees
# --------------------------------------------------------------------------


def test_an_include_that_is_a_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    outside = write(tmp_path / "elsewhere", "common.yml", H)
    (repo / "linked").mkdir(parents=True)
    (repo / "common.yml").symlink_to(outside)
    (repo / "linked" / "dir").symlink_to(outside.parent)
    for item in ("common.yml", "linked/dir/common.yml"):
        top = write(repo, "kas.yml", H + f"  includes:\n    - {item}\n")
        error = error_of(top)
        assert error.where == f"{top}:4"
        assert error.message == (
            f"include {item!r} is a symlink to {outside.resolve()}, outside the repository "
            f"{repo.resolve()}: the container sees only the repository"
        )
        assert fix_of(error).startswith("copy the file into the repository, or include it from")


def test_an_include_found_only_outside_the_repository_is_refused(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    outside = write(tmp_path, "x-outside.yml", H)  # ../../ from repo/kas, ../ from the root
    top = write(repo / "kas", "top.yml", H + "  includes:\n    - ../../x-outside.yml\n")
    error = error_of(top)
    assert error.where == f"{top}:4"
    assert error.message == (
        f"include '../../x-outside.yml' is {outside}, outside the repository {repo}: "
        "the container sees only the repository"
    )
    assert fix_of(error).startswith("move the file into the repository, or include it from")


def test_an_include_found_nowhere_lists_both_places_looked(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    top = write(repo / "kas", "top.yml", H + "  includes:\n    - ../nothere.yml\n")
    error = error_of(top)
    assert error.message == (
        f"include '../nothere.yml' not found (looked for {tmp_path / 'nothere.yml'} "
        f"or {repo / 'nothere.yml'})"
    )
    assert fix_of(error).startswith("fix the path in header.includes: kas resolves it from")


def test_a_dict_include_is_looked_for_below_the_root_only(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo")
    write(repo / "kas", "base.yml", H)  # next to the including file, not at the root
    top = write(
        repo / "kas",
        "top.yml",
        H + "  includes:\n    - repo: this\n      file: base.yml\nrepos:\n  this:\n",
    )
    error = error_of(top)
    assert error.message == f"include 'base.yml' not found (looked for {repo / 'base.yml'})"


def test_a_dict_include_of_itself_names_the_file_of_the_cycle(tmp_path: Path) -> None:
    top = write(
        tmp_path,
        "kas.yml",
        H + "  includes:\n    - repo: this\n      file: kas.yml\nrepos:\n  this:\n",
    )
    error = error_of(top)
    assert error.where == f"{top}:4"
    assert error.message.startswith("include 'kas.yml' closes a cycle: ")
    assert fix_of(error).startswith("remove one of the includes so that no file includes itself")


def test_an_absolute_include_is_a_container_path_left_to_kas(tmp_path: Path) -> None:
    top = write(tmp_path, "kas.yml", H + "  includes:\n    - /repo/common.yml\n")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED
    more = write(
        tmp_path, "more.yml", H + "  includes:\n    - /repo/common.yml\n    - nothere.yml\n"
    )
    error = error_of(more)  # the includes after it are still checked
    assert error.where == f"{more}:5"
    assert error.message.startswith("include 'nothere.yml' not found")


def test_a_local_include_after_a_remote_one_is_still_checked(tmp_path: Path) -> None:
    top = write(
        tmp_path,
        "kas.yml",
        H + "  includes:\n    - {repo: isar, file: kas/isar.yaml}\n    - missing.yml\n",
    )
    error = error_of(top)
    assert error.where == f"{top}:5"
    assert error.message.startswith("include 'missing.yml' not found")


def test_a_json_file_s_include_problem_is_on_line_1(tmp_path: Path) -> None:
    top = write(tmp_path, "kas.json", '{"header": {"version": 14, "includes": ["missing.yml"]}}')
    assert error_of(top).where == f"{top}:1"


# which `repos:` entry is the config's own repository: read from kas's merge of all files,
# in kas's order (an including file after its includes, so it has the last word)


def _own_repo_include(tmp_path: Path, top_repos: str, base_repos: str) -> Path:
    write(tmp_path, "base.yml", H + base_repos)
    return write(
        tmp_path,
        "kas.yml",
        H + "  includes:\n    - base.yml\n    - repo: this\n      file: missing.yml\n" + top_repos,
    )


@pytest.mark.parametrize(
    ("top_repos", "base_repos"),
    [
        ("repos:\n  this:\n", "repos:\n  this:\n    url: https://example.com/x.git\n"),
        ("", "repos:\n  this:\n"),
        ("repos:\n  this:\n    layers:\n      meta:\n", ""),
    ],
    ids=["top-clears-the-url", "only-an-include-names-it", "entry-without-url-or-path"],
)
def test_an_own_repo_include_is_checked_on_the_host(
    tmp_path: Path, top_repos: str, base_repos: str
) -> None:
    error = error_of(_own_repo_include(tmp_path, top_repos, base_repos))
    assert error.message.startswith("include 'missing.yml' not found")


@pytest.mark.parametrize(
    ("top_repos", "base_repos"),
    [
        ("repos:\n  this:\n    url: https://example.com/x.git\n", "repos:\n  this:\n"),
        ("repos:\n  this:\n    layers:\n      meta:\n", "repos:\n  this:\n    url: u\n"),
        ("repos:\n  this:\n    path: /somewhere\n", ""),
    ],
    ids=["top-adds-a-url", "url-kept-under-more-keys", "a-path"],
)
def test_a_repo_with_a_url_or_path_is_left_to_kas(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, top_repos: str, base_repos: str
) -> None:
    assert load(str(_own_repo_include(tmp_path, top_repos, base_repos))).build_system is (
        BuildSystem.OPENEMBEDDED
    )
    (text,) = warnings(caplog)
    assert "'missing.yml' from repo 'this'" in text


# --------------------------------------------------------------------------
# menu: the Kconfig and kas's default .config.yaml
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        'mainmenu "x"\nconfig KAS_INCLUDE_MAIN\n\tstring\n\tdefault "kas.yml"\n',
        'config KAS_BUILD_SYSTEM\n\tstring\n\tprompt "which"\n',
    ],
    ids=["no-build-system-symbol", "no-default"],
)
def test_a_kconfig_that_names_no_build_system_is_openembedded(tmp_path: Path, text: str) -> None:
    kconfig = write(tmp_path, "Kconfig", text)
    cfg = load_kconfig(str(kconfig), None)
    assert cfg.build_system is BuildSystem.OPENEMBEDDED
    assert cfg.files == (ConfigFile(path=kconfig.resolve(), data={}),)


def test_a_kconfig_s_unknown_default_names_the_kconfig(tmp_path: Path) -> None:
    kconfig = write(tmp_path, "Kconfig", 'config KAS_BUILD_SYSTEM\n\tdefault "yocto"\n')
    assert error_of(kconfig, kconfig=True).where == str(kconfig)


def test_a_kconfig_in_an_unmountable_directory_is_refused(tmp_path: Path) -> None:
    kconfig = write(tmp_path / "a,b", "Kconfig", 'config KAS_BUILD_SYSTEM\n\tdefault "oe"\n')
    error = error_of(kconfig, kconfig=True)
    assert error.message.startswith(f"the Kconfig's repository {str(kconfig.parent)!r} has a comma")
    assert error.message.endswith("which container engines cannot mount")
    assert fix_of(error).startswith("rename or move it")


def test_the_menu_s_config_leads_a_plain_build_to_the_recorded_repository(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    source = tmp_path / "src"
    source.mkdir()
    menu_config = write(work, ".config.yaml", H + "build_system: isar-rootless\n")
    remember_source_dir(work, source)
    assert menu_config.read_text().endswith(f'\n_source_dir_host: "{source}"\n')
    cfg = default_config(work, None)
    assert cfg is not None
    assert cfg.repo_dir == source.resolve()
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert [f.path for f in cfg.files] == [menu_config]
    assert cfg.files[0].data["_source_dir_host"] == str(source)
    override = default_config(work, BuildSystem.ISAR_PRIVILEGED)
    assert override is not None and override.build_system is BuildSystem.ISAR_PRIVILEGED


@pytest.mark.parametrize("recorded", ["", '_source_dir_host: "/no/such/dir"\n'])
def test_the_menu_s_config_without_a_usable_record_mounts_the_work_dir(
    tmp_path: Path, recorded: str
) -> None:
    write(tmp_path, ".config.yaml", H + recorded)
    cfg = default_config(tmp_path, None)
    assert cfg is not None
    assert cfg.repo_dir == tmp_path.resolve()
    assert cfg.build_system is BuildSystem.OPENEMBEDDED


def test_the_menu_s_config_names_itself_in_its_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, ".config.yaml", H + "build_system: isar\n")
    cfg = default_config(tmp_path, None)
    assert cfg is not None and cfg.build_system is BuildSystem.ISAR_PRIVILEGED
    (text,) = warnings(caplog)
    assert text.startswith(f"{path}: build_system 'isar' is deprecated")


def test_the_menu_s_recorded_repository_must_be_mountable(tmp_path: Path) -> None:
    source = tmp_path / "a,b"
    source.mkdir()
    write(tmp_path, ".config.yaml", H + f"_source_dir_host: {json.dumps(str(source))}\n")
    with pytest.raises(ConfigError) as info:
        default_config(tmp_path, None)
    assert_config_error(info.value)
    assert info.value.message.startswith(
        f"the repository recorded in .config.yaml {str(source)!r} has a comma"
    )
    # kasctl mounts the real path: a symlink to it would not help, and the fix says so
    assert info.value.fix == (
        "rename or move it (kasctl mounts its real path, so a symlink does not help)"
    )


def test_a_yaml_round_trip_of_the_record(tmp_path: Path) -> None:
    write(tmp_path, ".config.yaml", H)
    remember_source_dir(tmp_path, tmp_path / "x y")
    assert yaml.safe_load((tmp_path / ".config.yaml").read_text())["_source_dir_host"] == str(
        tmp_path / "x y"
    )
