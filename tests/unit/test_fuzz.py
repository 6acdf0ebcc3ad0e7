"""Fuzzing the two parsers of user-controlled text: kas configs and sub-id files.

The rule for both: a parser either returns a result or raises kasctl's own
error (a KasctlError subclass, which the CLI prints as one message); any
other exception is a bug. Beyond that rule, the generated inputs carry their
own answer where that is cheap to know: a config built only from valid
shapes must load (no false alarm), one with a single planted fault must be
refused naming the key path of that fault, a missing or cyclic include must
be refused naming that include, and a sub-id file with a planted bad line
must be refused naming that line's number.

Example counts are kept small: the unit suite stays fast.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kasctl.build_system import BuildSystem
from kasctl.config.read import Config, load
from kasctl.config.validate import NEWEST_FORMAT
from kasctl.errors import EXIT_HOST, EXIT_USAGE, ConfigError, HostError, KasctlError
from kasctl.inside.subids import ID_LIMIT, Extent, Range, SubidEntry, parse_id_map, parse_subid_file

#: Each config example runs git once or twice (the config's repository): fewer of those.
CONFIGS = settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------
# configs: a directory outside any repository, with a few files to include
# --------------------------------------------------------------------------

HEADER = "header:\n  version: 14\n"
INCLUDABLE = {
    "base.yml": HEADER + "machine: qemux86-64\n",
    "nested/deeper.yml": HEADER + "  includes:\n    - base.yml\n",
}
#: Includes that kas would not find, or would loop on, from fuzz.yml.
BAD_INCLUDES = {
    "missing.yml": "not found",
    "../outside.yml": "outside the repository",
    "fuzz.yml": "closes a cycle",
    "loop.yml": "closes a cycle",
    "invalid.yml": "unknown key",
}


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("fuzz-configs")
    repo = root / "repo"
    for name, text in INCLUDABLE.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "loop.yml").write_text(HEADER + "  includes:\n    - loop.yml\n")
    (repo / "invalid.yml").write_text(HEADER + "machin: x\n")
    (root / "outside.yml").write_text(HEADER)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.MonkeyPatch.context() as mp:
        # git must find no repository above: outside.yml is in none
        mp.setenv("GIT_CEILING_DIRECTORIES", str(root))
        yield repo


def _assert_config_error(exc: KasctlError) -> None:
    assert type(exc) is ConfigError, repr(exc)
    assert exc.exit_code == EXIT_USAGE
    assert exc.message and exc.fix, exc.render()
    rendered = exc.render()
    assert rendered.startswith("kasctl: error: ") and "Traceback" not in rendered


def _load_or_error(path: Path) -> Config | ConfigError:
    """config.load's outcome; anything but a Config or a ConfigError fails the test."""
    try:
        return load(str(path))
    except ConfigError as exc:
        _assert_config_error(exc)
        return exc


# ---- arbitrary bytes ---------------------------------------------------------

YAMLISH_BYTES = st.lists(
    st.sampled_from(
        [
            b"header:\n",
            b"  version: ",
            b"14",
            b"99",
            b"-1",
            b"\n",
            b"  includes:\n    - ",
            b"base.yml",
            b"missing.yml",
            b"build_system: ",
            b"isar-rootless",
            b"repos:\n  isar:\n    layers:\n      meta: ",
            b"{",
            b"]",
            b": ",
            b"- ",
            b"\t",
            b"&a ",
            b"*a",
            b"!!binary ",
            b"\xff",
            b"\xc3\xa9",
            b"\x00",
            b"---\n",
            b"%YAML 1.1\n",
        ]
    ),
    max_size=20,
).map(b"".join)


@CONFIGS
@given(st.one_of(st.binary(max_size=200), YAMLISH_BYTES), st.sampled_from([".yml", ".json"]))
@example(b"header:\n  version: 14\n\x00", ".yml")
@example(b'{"header": {"version": 14}, "machine": "\xff"}', ".json")
def test_load_any_bytes(config_dir: Path, data: bytes, suffix: str) -> None:
    path = config_dir / f"fuzz{suffix}"
    path.write_bytes(data)
    result = _load_or_error(path)
    if isinstance(result, Config):
        assert result.files[0].path == path.resolve()
        assert result.repo_dir == config_dir.resolve()


# ---- CONFIG lists ------------------------------------------------------------


@CONFIGS
@given(
    st.lists(
        st.sampled_from(
            ["base.yml", "nested/deeper.yml", "", " ", "missing.yml", "../outside.yml"]
        ),
        min_size=1,
        max_size=4,
    )
)
def test_config_lists(config_dir: Path, parts: list[str]) -> None:
    arg = ":".join(str(config_dir / p) if p.strip() else p for p in parts)
    # files from the git repository and from no repository may not be mixed (kas's rule)
    outside = [p == "../outside.yml" for p in parts if p.strip()]
    refused = any(not p.strip() or p == "missing.yml" for p in parts) or (
        any(outside) and not all(outside)
    )
    try:
        loaded = load(arg)
    except ConfigError as exc:
        _assert_config_error(exc)
        assert refused, exc.render()
        return
    assert not refused, f"{arg} was accepted"
    assert [f.path for f in loaded.files] == [(config_dir / p).resolve() for p in parts]


# ---- structured configs: valid shapes, then one planted fault --------------

NAME = st.from_regex(r"[a-z][a-z0-9-]{0,7}", fullmatch=True)
#: Printable text: no surrogates, no control characters, no Unicode line separators.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=12
)
LAYER_VALUE = st.sampled_from([None, "disabled", "excluded", "n", "no", "0", "false", 0, False])
REPO = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "url": st.just("https://example.invalid/repo.git"),
            "commit": st.just("0123456789abcdef0123456789abcdef01234567"),
            "branch": NAME,
            "type": st.sampled_from(["git", "hg"]),
            "path": NAME,
            "layers": st.dictionaries(
                NAME,
                st.one_of(LAYER_VALUE, st.builds(lambda p: {"prio": p}, st.integers())),
                max_size=3,
            ),
        },
    ),
)
BUILD_SYSTEMS = {
    "openembedded": BuildSystem.OPENEMBEDDED,
    "oe": BuildSystem.OPENEMBEDDED,
    "isar": BuildSystem.ISAR_PRIVILEGED,
    "isar-privileged": BuildSystem.ISAR_PRIVILEGED,
    "isar-rootless": BuildSystem.ISAR_ROOTLESS,
}


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.one_of(st.integers(1, NEWEST_FORMAT), st.just("0.10")))
    header: dict[str, Any] = {"version": version}
    includes = draw(st.lists(st.sampled_from(sorted(INCLUDABLE)), max_size=2))
    if includes:
        header["includes"] = includes
    data: dict[str, Any] = {"header": header}
    optional = {
        "build_system": st.sampled_from(sorted(BUILD_SYSTEMS)),
        "machine": TEXT,
        "distro": TEXT,
        "target": st.one_of(TEXT, st.lists(TEXT, max_size=3)),
        "env": st.dictionaries(NAME, st.one_of(st.none(), TEXT), max_size=3),
        "repos": st.dictionaries(NAME, REPO, max_size=3),
        "local_conf_header": st.dictionaries(NAME, TEXT, max_size=2),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            data[key] = draw(strategy)
    return data


def _dump(data: dict[str, Any], suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(data, indent=1)
    return yaml.safe_dump(data, default_flow_style=False, allow_unicode=True)


def _write(directory: Path, data: dict[str, Any], suffix: str) -> Path:
    path = directory / f"fuzz{suffix}"
    path.write_text(_dump(data, suffix), encoding="utf-8")
    return path


@CONFIGS
@given(valid_configs(), st.sampled_from([".yml", ".json"]))
def test_valid_configs_load(config_dir: Path, data: dict[str, Any], suffix: str) -> None:
    """No false alarm: whatever the schema allows, kasctl lets through."""
    result = _load_or_error(_write(config_dir, data, suffix))
    assert isinstance(result, Config), result.render()
    expected = BUILD_SYSTEMS[data.get("build_system", "openembedded")]
    assert result.build_system is expected


#: One fault each: where it goes, what it is, the key path the message must start with.
FAULTS: list[tuple[tuple[str, ...], object, str]] = [
    (("header", "version"), 0, "header.version"),
    (("header", "version"), NEWEST_FORMAT + 1, "header.version"),
    (("header", "version"), "fourteen", "header.version"),
    (("header", "version"), 14.5, "header.version"),
    (("header", "version"), True, "header.version"),
    (("header", "includes"), "base.yml", "header.includes"),
    (("header", "bogus"), 1, "header.bogus"),
    (("build_system",), "yocto", "build_system"),
    (("build_system",), 5, "build_system"),
    (("machine",), ["a", "b"], "machine"),
    (("repos",), ["isar"], "repos"),
    (("repos", "isar"), "https://example.invalid/isar.git", "repos.isar"),
    (("repos", "isar"), {"uri": "x"}, "repos.isar.uri"),
    (("repos", "isar"), {"layers": {"meta": "maybe"}}, "repos.isar.layers.meta"),
    (("repos", "isar"), {"type": "svn"}, "repos.isar.type"),
    (("env",), {"A": ["b"]}, "env.A"),
    (("machin",), "qemux86-64", "machin"),
]


@CONFIGS
@given(valid_configs(), st.sampled_from(FAULTS), st.sampled_from([".yml", ".json"]))
def test_one_planted_fault_is_named(
    config_dir: Path,
    data: dict[str, Any],
    fault: tuple[tuple[str, ...], object, str],
    suffix: str,
) -> None:
    where, value, key_path = fault
    node = data
    for key in where[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[where[-1]] = value
    path = _write(config_dir, data, suffix)
    result = _load_or_error(path)
    assert isinstance(result, ConfigError), f"{key_path}={value!r} was accepted"
    assert result.message.startswith(key_path), result.render()
    assert result.where is not None and result.where.startswith(f"{path}:")
    if suffix == ".yml":  # the line of the key itself (JSON carries no lines)
        line = int(result.where.rsplit(":", 1)[1])
        text_line = path.read_text().splitlines()[line - 1]
        assert where[-1] in text_line or key_path.split(".")[-1] in text_line, result.render()


@CONFIGS
@given(
    valid_configs(),
    st.lists(st.sampled_from(sorted(INCLUDABLE) + sorted(BAD_INCLUDES)), min_size=1, max_size=3),
)
def test_includes_as_kas_resolves_them(
    config_dir: Path, data: dict[str, Any], includes: list[str]
) -> None:
    data["header"]["includes"] = includes
    result = _load_or_error(_write(config_dir, data, ".yml"))
    bad = [i for i in includes if i in BAD_INCLUDES]
    if not bad:
        assert isinstance(result, Config), result.render()
        return
    assert isinstance(result, ConfigError), f"includes {includes} were accepted"
    # the first bad include in kas's order is the one reported
    assert BAD_INCLUDES[bad[0]] in result.message, result.render()


# --------------------------------------------------------------------------
# sub-id files: valid lines in every spelling, then one planted bad line
# --------------------------------------------------------------------------

USER = st.one_of(
    st.from_regex(r"[a-z_][a-z0-9_.-]{0,15}\$?", fullmatch=True),
    st.integers(0, ID_LIMIT - 1).map(str),  # a numeric uid instead of a name
)
BLANK = st.sampled_from(["", " ", "\t", "  \t "])


@st.composite
def subid_lines(draw: st.DrawFn) -> tuple[str, SubidEntry | None]:
    """A well-formed line (an entry, a comment or a blank) and what it means."""
    kind = draw(st.sampled_from(["entry", "entry", "entry", "comment", "blank"]))
    pad_left, pad_right = draw(BLANK), draw(BLANK)
    if kind == "comment":
        return pad_left + "#" + draw(TEXT), None
    if kind == "blank":
        return pad_left, None
    owner = draw(USER)
    start = draw(st.integers(0, ID_LIMIT - 1))
    count = draw(st.integers(0, ID_LIMIT - start))
    zeros = "0" * draw(st.integers(0, 2))
    text = f"{pad_left}{owner}:{zeros}{start}:{count}{pad_right}"
    return text, SubidEntry(owner, Range(start, count), 0)


#: Lines the parser must refuse, each for a reason a person could make.
BAD_SUBID_LINES = [
    "kasci:-1:65536",  # negative start
    "kasci:100000:-65536",  # negative count
    "kasci:100000",  # two fields
    "kasci:100000:65536:1",  # extra colon
    ":100000:65536",  # no user
    "kasci:1e5:65536",  # not decimal
    "kasci:0x10000:65536",
    "kasci: 100000:65536",  # a blank inside a field
    "kasci:١٠٠٠٠٠:65536",  # digits, but not ASCII ones
    "kasci:100000:6²",
    "kasci:4294967295:1",  # past the largest id
    "kasci:4294950000:65536",
    "kasci:99999999999999999999999:65536",  # huge
    "kasci 100000 65536",  # spaces for colons
]


@FAST
@given(
    st.lists(subid_lines(), max_size=8),
    st.one_of(st.none(), st.tuples(st.integers(0, 8), st.sampled_from(BAD_SUBID_LINES))),
    st.sampled_from(["\n", "\r\n"]),
)
@example([], (0, "kasci:4294967295:1"), "\n")
def test_subid_files(
    lines: list[tuple[str, SubidEntry | None]], bad: tuple[int, str] | None, newline: str
) -> None:
    texts = [t for t, _ in lines]
    if bad is not None:
        index = min(bad[0], len(texts))
        texts.insert(index, bad[1])
    text = newline.join(texts) + newline
    try:
        entries = parse_subid_file(text)
    except HostError as exc:
        assert exc.exit_code == EXIT_HOST and exc.fix
        assert bad is not None, exc.render()
        assert exc.message.startswith(f"line {index + 1} "), exc.render()
        return
    assert bad is None, f"accepted {bad[1]!r}"
    expected = [
        (e.owner, e.range, number) for number, (_, e) in enumerate(lines, 1) if e is not None
    ]
    assert [(e.owner, e.range, e.line) for e in entries] == expected


@FAST
@given(st.text(max_size=120))
@example("kasci:100000:65536:\n")
@example("\u2028kasci:1:1")
def test_subid_file_any_text(text: str) -> None:
    try:
        entries = parse_subid_file(text)
    except HostError:
        return
    for entry in entries:
        assert entry.owner and entry.range.start >= 0 and entry.range.end <= ID_LIMIT


# --------------------------------------------------------------------------
# /proc/PID/uid_map text (what the entrypoint reads): rows, and planted bad rows
# --------------------------------------------------------------------------


@st.composite
def map_rows(draw: st.DrawFn) -> tuple[str, Extent]:
    inside = draw(st.integers(0, ID_LIMIT - 1))
    outside = draw(st.integers(0, ID_LIMIT - 1))
    count = draw(st.integers(1, ID_LIMIT - max(inside, outside)))
    sep = draw(st.sampled_from([" ", "  ", "\t", "          "]))
    text = f"{draw(BLANK)}{inside}{sep}{outside}{sep}{count}{draw(BLANK)}"
    return text, Extent(inside, outside, count)


BAD_MAP_ROWS = [
    "0 1000",  # two fields
    "0 1000 1 1",  # four
    "0 -1 1",  # negative
    "0 1000 0",  # empty extent
    "0 0 4294967296",  # past the limit
    "4294967295 0 1",
    "0:1000:1",  # subuid syntax in a map
    "0 1000 ١",
]


@FAST
@given(
    st.lists(map_rows(), min_size=1, max_size=5),
    st.one_of(st.none(), st.tuples(st.integers(0, 5), st.sampled_from(BAD_MAP_ROWS))),
)
def test_id_maps(rows: list[tuple[str, Extent]], bad: tuple[int, str] | None) -> None:
    texts = [t for t, _ in rows]
    if bad is not None:
        index = min(bad[0], len(texts))
        texts.insert(index, bad[1])
    try:
        extents = parse_id_map("\n".join(texts) + "\n")
    except HostError as exc:
        assert bad is not None, exc.render()
        assert f"line {index + 1} " in exc.message, exc.render()
        return
    assert bad is None, f"accepted {bad[1]!r}"
    assert extents == tuple(sorted(e for _, e in rows))
