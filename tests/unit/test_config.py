"""kasctl.config: loading, validating and reporting kas config files on the host.

Every problem with a config must surface as a ConfigError (exit status 2)
that names the file and, where there is one, the line, before any container
starts. Files live in git-less temporary directories, so a config's
repository is its own directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from kasctl.build_system import BuildSystem
from kasctl.config.files import ConfigFile, load_file
from kasctl.config.read import load, split_config_arg
from kasctl.config.validate import NEWEST_FORMAT
from kasctl.errors import EXIT_USAGE, ConfigError

ISAR_ROOTLESS = """\
header:
  version: 14
build_system: isar-rootless
machine: qemuamd64
distro: debian-bookworm
target: mc:qemuamd64-bookworm:isar-image-base
repos:
  this:
  isar:
    url: https://github.com/ilbers/isar.git
    commit: 0123456789abcdef0123456789abcdef01234567
    layers:
      meta:
      meta-isar:
local_conf_header:
  rootless: |
    ISAR_ROOTLESS = "1"
"""


@pytest.fixture(autouse=True)
def _no_enclosing_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep git from finding a repository above tmp_path (repo_dir_of falls back to the dir)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for var in ("GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def oe_file(directory: Path, name: str, build_system: str | None = None) -> Path:
    text = "header:\n  version: 14\nmachine: qemux86-64\n"
    if build_system is not None:
        text += f"build_system: {build_system}\n"
    return write(directory, name, text)


def assert_config_error(exc: ConfigError) -> None:
    """What every config error owes the user: exit status 2 and a readable line."""
    assert type(exc) is ConfigError
    assert exc.exit_code == EXIT_USAGE == 2
    assert exc.message
    assert exc.render().startswith("kasctl: error: ")


# --------------------------------------------------------------------------
# valid files and the build system
# --------------------------------------------------------------------------


def test_valid_isar_rootless_file(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", ISAR_ROOTLESS)
    cfg = load(str(path))
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert cfg.repo_dir == tmp_path.resolve()
    assert cfg.files == (ConfigFile(path=path.resolve(), data=yaml.safe_load(ISAR_ROOTLESS)),)
    assert cfg.container_paths("/repo") == ["/repo/kas.yml"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, BuildSystem.OPENEMBEDDED),  # kas's default
        ("openembedded", BuildSystem.OPENEMBEDDED),
        ("oe", BuildSystem.OPENEMBEDDED),
        ("isar", BuildSystem.ISAR_PRIVILEGED),
        ("isar-privileged", BuildSystem.ISAR_PRIVILEGED),
        ("isar-rootless", BuildSystem.ISAR_ROOTLESS),
    ],
)
def test_build_system_spellings(tmp_path: Path, value: str | None, expected: BuildSystem) -> None:
    cfg = load(str(oe_file(tmp_path, "kas.yml", value)))
    assert cfg.build_system is expected


def test_isar_is_deprecated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = oe_file(tmp_path, "kas.yml", "isar")
    with caplog.at_level(logging.WARNING, logger="kasctl"):
        cfg = load(str(path))
    assert cfg.build_system is BuildSystem.ISAR_PRIVILEGED
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "deprecated" in text and "isar-privileged" in text and str(path) in text


def test_isar_privileged_logs_no_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="kasctl"):
        load(str(oe_file(tmp_path, "kas.yml", "isar-privileged")))
    assert not caplog.records


def test_build_system_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", ISAR_ROOTLESS)
    cfg = load(str(path), build_system_override=BuildSystem.OPENEMBEDDED)
    assert cfg.build_system is BuildSystem.OPENEMBEDDED


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [  # kas merges a.yml:b.yml left to right: the last file that sets it wins
        ("isar-rootless", "oe", BuildSystem.OPENEMBEDDED),
        ("oe", "isar-rootless", BuildSystem.ISAR_ROOTLESS),
        (None, "isar-rootless", BuildSystem.ISAR_ROOTLESS),
        ("isar-rootless", None, BuildSystem.ISAR_ROOTLESS),
    ],
)
def test_last_file_of_a_list_that_sets_it_decides_build_system(
    tmp_path: Path, first: str | None, second: str, expected: BuildSystem
) -> None:
    a = oe_file(tmp_path, "a.yml", first)
    b = oe_file(tmp_path, "sub/b.yml", second)
    cfg = load(f"{a}:{b}")
    assert cfg.build_system is expected
    assert [f.path for f in cfg.files] == [a.resolve(), b.resolve()]
    assert cfg.container_paths("/repo") == ["/repo/a.yml", "/repo/sub/b.yml"]


def test_relative_config_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oe_file(tmp_path, "a.yml", "isar-rootless")
    oe_file(tmp_path, "b.yml")
    monkeypatch.chdir(tmp_path)
    cfg = load("a.yml:b.yml")
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert cfg.repo_dir == tmp_path.resolve()


def test_second_file_outside_first_files_repository(tmp_path: Path) -> None:
    a = oe_file(tmp_path / "one", "a.yml")
    b = oe_file(tmp_path / "two", "b.yml")
    with pytest.raises(ConfigError) as info:
        load(f"{a}:{b}")
    assert_config_error(info.value)
    assert info.value.where == str(b)


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("a.yml", [Path("a.yml")]),
        ("a.yml:b.yml", [Path("a.yml"), Path("b.yml")]),
        ("/x/a.yml:rel/b.yml:c.json", [Path("/x/a.yml"), Path("rel/b.yml"), Path("c.json")]),
    ],
)
def test_split_config_arg(arg: str, expected: list[Path]) -> None:
    assert split_config_arg(arg) == expected


@pytest.mark.parametrize("arg", ["a.yml:", ":a.yml", "a.yml::b.yml", "", ":", "a.yml: "])
def test_split_config_arg_refuses_empty_parts(arg: str) -> None:
    with pytest.raises(ConfigError) as info:
        split_config_arg(arg)
    assert_config_error(info.value)
    assert info.value.fix


@pytest.mark.parametrize("arg", ["{d}/a.yml:", ":{d}/a.yml"])
def test_load_refuses_empty_parts(tmp_path: Path, arg: str) -> None:
    oe_file(tmp_path, "a.yml")
    with pytest.raises(ConfigError) as info:
        load(arg.format(d=tmp_path))
    assert_config_error(info.value)


@pytest.mark.parametrize("version", ["1", "14", str(NEWEST_FORMAT), "'0.10'"])
def test_supported_format_versions(tmp_path: Path, version: str) -> None:
    load_file(write(tmp_path, "kas.yml", f"header:\n  version: {version}\n"))


def test_json_config(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.json", '{"header": {"version": 14}, "build_system": "oe"}')
    assert load(str(path)).build_system is BuildSystem.OPENEMBEDDED


# --------------------------------------------------------------------------
# errors: every one a ConfigError with exit status 2 and a place
# --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert info.value.where == str(path)
    assert "not found" in info.value.message


def test_missing_second_file_of_a_list(tmp_path: Path) -> None:
    a = oe_file(tmp_path, "a.yml")
    with pytest.raises(ConfigError) as info:
        load(f"{a}:{tmp_path / 'b.yml'}")
    assert_config_error(info.value)
    assert info.value.where == str(tmp_path / "b.yml")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "kas.yml").mkdir()
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path / "kas.yml")
    assert_config_error(info.value)
    assert "directory" in info.value.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n...\n", "~\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(write(tmp_path, "kas.yml", text))
    assert_config_error(info.value)
    assert "empty" in info.value.message
    assert info.value.fix and "header" in info.value.fix


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "kas.yml", b"header:\n  version: 14\nmachine: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert "UTF-8" in info.value.message
    assert info.value.where == str(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("header:\n  version: 14\n  bad: : x\n", 3, id="mapping-in-plain-scalar"),
        pytest.param("header:\n  version: 14\nmachine: a\n\tdistro: x\n", 4, id="tab"),
        pytest.param("header:\n  version: 14\nmachine: qemu\n  distro: x\n", 4, id="indent"),
        pytest.param("header:\n  version: 14\nmachine: 'abc\n", 4, id="unterminated-quote"),
        pytest.param("header: {version: 14\nmachine: x\n", 2, id="unclosed-flow"),
        pytest.param("a: 1\n---\nb: 2\n", 2, id="two-documents"),
        pytest.param("header:\n  version: 14\nmachine: *nope\n", 3, id="unknown-alias"),
    ],
)
def test_yaml_syntax_error_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, "x.yml", text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert info.value.where == f"{path}:{line}"
    assert "YAML" in info.value.message


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x.json", '{"header": {"version": 14},\n "machine": }\n')
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert info.value.where == f"{path}:2"


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        pytest.param(
            "header:\n  version: 14\nmachine: qemuamd64\nmachin: qemuamd64\n",
            4,
            ["machin", "unknown key"],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "header:\n  version: 14\nrepos:\n  isar:\n    commit: abc\n    urll: x\n",
            6,
            ["repos.isar", "urll"],
            id="unknown-repo-key",
        ),
        pytest.param(
            "header:\n  version: 14\nrepos:\n  isar:\n    url: 5\n",
            5,
            ["repos.isar.url", "string"],
            id="wrong-type-nested",
        ),
        pytest.param(
            "header:\n  version: 14\nbuild_system: isar-foo\n",
            3,
            ["build_system", "isar-foo", "isar-rootless"],
            id="unknown-build-system",
        ),
        pytest.param(
            "header:\n  version: 0\n",
            2,
            ["header.version"],
            id="version-zero",
        ),
        pytest.param(
            "machine: qemuamd64\n",
            1,
            ["header", "required"],
            id="missing-header",
        ),
        pytest.param(
            "header:\n  version: 14\ntarget:\n  - a\n  - 5\n",
            5,
            ["target[1]"],
            id="list-item",
        ),
        pytest.param(
            "header:\n  version: 14\nenv:\n  A: x\n  B: [1]\n",
            5,
            ["env.B"],
            id="env-value",
        ),
        pytest.param("- a\n- b\n", 1, ["(top level)", "mapping"], id="not-a-mapping"),
        pytest.param(
            "header:\n  version: 14\nmachine:\n  name: qemuamd64\n",
            3,
            ["machine", "string"],
            id="mapping-where-string-expected",
        ),
    ],
)
def test_schema_violation_names_key_path_and_line(
    tmp_path: Path, text: str, line: int, fragments: list[str]
) -> None:
    path = write(tmp_path, "x.yml", text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    for fragment in fragments:
        assert fragment in info.value.message
    assert info.value.where == f"{path}:{line}"


def test_unknown_build_system_through_parse() -> None:
    with pytest.raises(ConfigError) as info:
        BuildSystem.parse("isar-unprivileged", "x.yml")
    assert_config_error(info.value)
    assert info.value.where == "x.yml"
    assert info.value.fix and "isar-rootless" in info.value.fix


def test_format_version_too_new(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yml", "machine: x\nheader:\n  version: 24\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert "24" in info.value.message
    assert info.value.where == f"{path}:3"
    assert info.value.fix and "upgrade" in info.value.fix


def test_schema_errors_in_a_later_file_are_reported(tmp_path: Path) -> None:
    a = oe_file(tmp_path, "a.yml", "isar-rootless")
    b = write(tmp_path, "b.yml", "header:\n  version: 14\nmachine: [x]\n")
    with pytest.raises(ConfigError) as info:
        load(f"{a}:{b}")
    assert_config_error(info.value)
    assert info.value.where == f"{b}:3"


# --------------------------------------------------------------------------
# YAML the loader must survive (found by reading _compose_with_lines)
# --------------------------------------------------------------------------


def test_yaml_merge_keys_are_accepted(tmp_path: Path) -> None:
    text = (
        "header:\n  version: 14\nrepos:\n  a: &common\n    url: https://example.com/a.git\n"
        "  b:\n    <<: *common\n    path: b\n"
    )
    loaded = load_file(write(tmp_path, "x.yml", text))
    assert loaded.data == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            "header:\n  version: 14\nmachine: 2001-02-30\n",
            id="impossible-date",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: 2001-01-01 25:00:00\n",
            id="impossible-hour",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: !!int x\n",
            id="int-tag-on-text",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: !!int\n",
            id="int-tag-empty",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: !!float z\n",
            id="float-tag",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: !!bool maybe\n",
            id="bool-tag",
        ),
        pytest.param(
            "header:\n  version: 14\nmachine: !!timestamp x\n",
            id="timestamp-tag",
        ),
        pytest.param("{}:\n", id="mapping-as-key"),
        pytest.param("header:\n  version: 14\n[a, b]: 1\n", id="sequence-as-key"),
        pytest.param("header:\n  version: 14\n? [a]\n: 1\n", id="complex-key"),
        pytest.param(
            "header:\n  version: 14\nmachine: &x [*x]\n",
            id="recursive-alias",
        ),
        pytest.param(
            "header:\n  version: 14\nenv:\n  1: 2\n  a: 3\n",
            id="mixed-key-types",
        ),
        # these already work: PyYAML reports them as YAMLErrors
        pytest.param("header:\n  version: 14\nmachine: !!python/name:os.system\n", id="py-tag"),
        pytest.param("header:\n  version: 14\nmachine: !!set [1]\n", id="set-tag-on-list"),
    ],
)
def test_yaml_the_loader_cannot_build_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_file(write(tmp_path, "x.yml", text))
    assert_config_error(info.value)


def test_python_tags_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "x.yml", "header:\n  version: 14\nmachine: !!python/name:os.system\n")
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert_config_error(info.value)
    assert info.value.where == f"{path}:3"


# --------------------------------------------------------------------------
# fuzz: load_file returns or raises ConfigError, nothing else
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _loads_or_config_error(path: Path) -> None:
    try:
        result = load_file(path)
    except ConfigError as exc:
        assert_config_error(exc)
        assert exc.where is not None and exc.where.startswith(str(path))
        return
    assert isinstance(result, ConfigFile) and isinstance(result.data, dict)


YAMLISH = st.lists(
    st.sampled_from(
        [
            "header:",
            "\n",
            "  ",
            "version: ",
            "14",
            "24",
            "machine: ",
            "repos:",
            "isar:",
            "url: ",
            "- ",
            ": ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "'",
            '"',
            "#",
            "&a ",
            "*a",
            "!!str ",
            "? ",
            "x",
            "\t",
            "---",
            "~",
            "null",
            "true",
        ]
    ),
    max_size=25,
).map("".join)


@given(st.one_of(st.text(), YAMLISH))
@example("header:\n  version: 14\nmachine: 2001-02-30\n")
def test_load_file_fuzz_any_text(fuzz_dir: Path, text: str) -> None:
    path = write(fuzz_dir, "fuzz.yml", text)
    _loads_or_config_error(path)


@given(st.binary(max_size=64))
def test_load_file_fuzz_bytes_that_are_not_utf8(fuzz_dir: Path, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        _loads_or_config_error(write(fuzz_dir, "fuzz-bytes.yml", data))


# Data YAML can dump from string keys: no keys of mixed type, no unhashable keys,
# and yaml.safe_dump quotes strings that would read back as dates.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 30),
    st.text(max_size=8),
    st.sampled_from(["isar-rootless", "oe", "isar", "git", "disabled"]),
)
KEYS = st.one_of(
    st.sampled_from(
        [
            "header",
            "version",
            "build_system",
            "machine",
            "repos",
            "isar",
            "url",
            "layers",
            "env",
            "target",
            "includes",
            "local_conf_header",
            "overrides",
            "commit",
            "path",
        ]
    ),
    st.text(min_size=1, max_size=6),
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(KEYS, DATA, max_size=5), st.booleans())
def test_load_file_fuzz_structured(
    fuzz_dir: Path, data: dict[str, object], with_header: bool
) -> None:
    if with_header:
        data = {"header": {"version": 14}, **data}
    text = yaml.safe_dump(data, default_flow_style=False)
    path = write(fuzz_dir, "fuzz-structured.yml", text)
    try:
        load_file(path)
    except ConfigError as exc:
        assert_config_error(exc)
        # a place inside the file, never past its end
        assert exc.where is not None and exc.where.startswith(f"{path}:")
        line = int(exc.where.removeprefix(f"{path}:"))
        assert 1 <= line <= max(1, text.count("\n"))


def test_menu_kconfig_names_the_build_system_and_its_repository(tmp_path: Path) -> None:
    from kasctl.config.read import load_kconfig, remember_source_dir

    kconfig = tmp_path / "Kconfig"
    kconfig.write_text(
        'mainmenu "x"\n\nconfig KAS_BUILD_SYSTEM\n\tstring\n\tdefault "isar-rootless"\n\n'
        'config KAS_INCLUDE_MAIN\n\tstring\n\tdefault "kas.yml"\n'
    )
    cfg = load_kconfig(str(kconfig), None)
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert cfg.repo_dir == tmp_path
    assert cfg.container_paths("/repo") == ["/repo/Kconfig"]

    (tmp_path / ".config.yaml").write_text("header:\n  version: 14\n_source_dir: /repo\n")
    remember_source_dir(tmp_path, tmp_path / "src")
    remember_source_dir(tmp_path, tmp_path / "src")  # once, not twice
    text = (tmp_path / ".config.yaml").read_text()
    assert text.count("_source_dir_host") == 1
    assert f'_source_dir_host: "{tmp_path / "src"}"' in text
