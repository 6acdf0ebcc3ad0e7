"""The build system of a config, decided as kas decides it: from the merged config.

kas merges the includes first (depth-first, in order), then the including
file on top, and the files of a:b left to right; the last value of
`build_system` wins. kasctl reads the local includes on the host; an include
from a repo kas has not checked out yet could change the answer, and then
the user is told once how to make the choice explicit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kasctl.build_system import BuildSystem
from kasctl.config.read import load
from kasctl.errors import ConfigError
from tests.unit.test_config import (
    _no_enclosing_repository,  # noqa: F401 (an autouse fixture: keeps git out of tmp_path)
    assert_config_error,
    write,
)

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
H = "header:\n  version: 14\n"


def kas(directory: Path, name: str, *includes: str, build_system: str | None = None) -> Path:
    """A config file with the given include lines (YAML list items) and build_system."""
    text = H
    if includes:
        text += "  includes:\n" + "".join(f"    - {i}\n" for i in includes)
    text += "machine: qemuamd64\n"
    if build_system is not None:
        text += f"build_system: {build_system}\n"
    return write(directory, name, text)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.fixture(autouse=True)
def _warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kasctl")


def test_an_include_chain_decides(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kas(tmp_path, "kas/leaf.yml", build_system="isar-rootless")
    kas(tmp_path, "kas/mid.yml", "kas/leaf.yml")
    top = kas(tmp_path, "kas.yml", "kas/mid.yml")
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    assert warnings(caplog) == []


def test_a_later_include_wins_over_an_earlier_one(tmp_path: Path) -> None:
    kas(tmp_path, "first.yml", build_system="isar-rootless")
    kas(tmp_path, "second.yml", build_system="isar-privileged")
    kas(tmp_path, "nothing.yml")
    top = kas(tmp_path, "kas.yml", "first.yml", "second.yml", "nothing.yml")
    assert load(str(top)).build_system is BuildSystem.ISAR_PRIVILEGED
    swapped = kas(tmp_path, "swapped.yml", "second.yml", "first.yml")
    assert load(str(swapped)).build_system is BuildSystem.ISAR_ROOTLESS


def test_an_included_files_own_includes_come_before_it(tmp_path: Path) -> None:
    kas(tmp_path, "leaf.yml", build_system="isar-rootless")
    kas(tmp_path, "mid.yml", "leaf.yml", build_system="oe")
    top = kas(tmp_path, "kas.yml", "mid.yml")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED


def test_the_including_file_wins_over_its_includes(tmp_path: Path) -> None:
    kas(tmp_path, "base.yml", build_system="isar-rootless")
    top = kas(tmp_path, "kas.yml", "base.yml", build_system="openembedded")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED


def test_a_file_relative_include_counts_too(tmp_path: Path) -> None:
    kas(tmp_path, "kas/leaf.yml", build_system="isar-rootless")
    kas(tmp_path, "kas/mid.yml", "leaf.yml")  # kas falls back to the file's own directory
    top = kas(tmp_path, "kas.yml", "kas/mid.yml")
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS


def test_the_dict_form_into_the_configs_own_repo(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `this:` has no url and no path: kas makes it the top repository itself
    kas(tmp_path, "kas/base.yml", build_system="isar-rootless")
    top = write(
        tmp_path,
        "kas.yml",
        H + "  includes:\n    - repo: this\n      file: kas/base.yml\nrepos:\n  this:\n",
    )
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    assert warnings(caplog) == []


def test_the_dict_form_into_the_own_repo_is_checked(tmp_path: Path) -> None:
    top = write(
        tmp_path,
        "kas.yml",
        H + "  includes:\n    - repo: this\n      file: kas/missing.yml\nrepos:\n  this:\n",
    )
    with pytest.raises(ConfigError) as info:
        load(str(top))
    assert_config_error(info.value)
    assert "include 'kas/missing.yml' not found" in info.value.message
    assert info.value.where == f"{top}:4"


def test_the_dict_form_without_repo_is_refused_as_kas_refuses_it(tmp_path: Path) -> None:
    kas(tmp_path, "base.yml", build_system="isar-rootless")
    top = write(tmp_path, "kas.yml", H + "  includes:\n    - file: base.yml\n")
    with pytest.raises(ConfigError) as info:
        load(str(top))
    assert_config_error(info.value)
    assert info.value.where == f"{top}:4"


def test_isar_in_an_include_means_privileged_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = kas(tmp_path, "base.yml", build_system="isar")
    kas(tmp_path, "other.yml", "base.yml")
    top = kas(tmp_path, "kas.yml", "base.yml", "other.yml")  # merged twice, as kas does
    assert load(str(top)).build_system is BuildSystem.ISAR_PRIVILEGED
    (text,) = warnings(caplog)
    assert f"{base}:4" in text and "deprecated" in text and "isar-privileged" in text


def test_an_invalid_value_in_an_include_names_that_file(tmp_path: Path) -> None:
    base = kas(tmp_path, "base.yml", build_system="yocto")
    top = kas(tmp_path, "kas.yml", "base.yml")
    with pytest.raises(ConfigError) as info:
        load(str(top))
    assert_config_error(info.value)
    assert info.value.where == f"{base}:4"
    assert "'yocto' is not one of" in info.value.message
    assert f"included from {top}:4" in info.value.message


def test_a_config_list_merges_left_to_right_with_includes(tmp_path: Path) -> None:
    kas(tmp_path, "rootless.yml", build_system="isar-rootless")
    a = kas(tmp_path, "a.yml", build_system="isar-privileged")
    b = kas(tmp_path, "b.yml", "rootless.yml")
    assert load(f"{a}:{b}").build_system is BuildSystem.ISAR_ROOTLESS
    assert load(f"{b}:{a}").build_system is BuildSystem.ISAR_PRIVILEGED
    plain = kas(tmp_path, "plain.yml")
    assert load(f"{b}:{plain}").build_system is BuildSystem.ISAR_ROOTLESS


def test_a_remote_include_after_the_deciding_file_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kas(tmp_path, "base.yml", build_system="isar-rootless")
    top = kas(tmp_path, "kas.yml", "base.yml", "{repo: isar, file: kas/isar.yaml}")
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    (text,) = warnings(caplog)
    assert "'kas/isar.yaml' from repo 'isar'" in text
    assert f"({top}:5)" in text
    assert f"set in {tmp_path / 'base.yml'}:4" in text
    assert "--isar-rootless or --isar-privileged" in text
    assert f"top-level `build_system:` in {top}" in text


def test_a_remote_include_before_the_deciding_file_is_no_concern(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kas(tmp_path, "base.yml", build_system="isar-rootless")
    top = kas(tmp_path, "kas.yml", "{repo: isar, file: kas/isar.yaml}", "base.yml")
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    assert warnings(caplog) == []


def test_a_remote_include_when_the_top_file_sets_it_is_no_concern(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    top = kas(
        tmp_path, "kas.yml", "{repo: isar, file: kas/isar.yaml}", build_system="isar-rootless"
    )
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    assert warnings(caplog) == []


def test_nothing_sets_it_openembedded_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kas(tmp_path, "base.yml")
    top = kas(tmp_path, "kas.yml", "base.yml")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED
    assert warnings(caplog) == []


def test_nothing_sets_it_but_a_remote_include_might(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kas(tmp_path, "base.yml", "{repo: meta-x, file: kas/x.yml}")
    top = kas(tmp_path, "kas.yml", "base.yml", "{repo: isar, file: kas/isar.yaml}")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED
    (text,) = warnings(caplog)
    assert "build_system is openembedded, kas's default (no local file sets it)" in text
    assert "'kas/x.yml' from repo 'meta-x'" in text
    assert "'kas/isar.yaml' from repo 'isar'" in text


@pytest.mark.parametrize("flag", [BuildSystem.ISAR_PRIVILEGED, BuildSystem.OPENEMBEDDED])
def test_the_command_line_beats_every_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, flag: BuildSystem
) -> None:
    kas(tmp_path, "base.yml", build_system="isar")
    top = kas(
        tmp_path,
        "kas.yml",
        "base.yml",
        "{repo: isar, file: kas/isar.yaml}",
        build_system="isar-rootless",
    )
    listed = kas(tmp_path, "more.yml", "{repo: isar, file: kas/isar.yaml}")
    assert load(str(top), build_system_override=flag).build_system is flag
    assert load(f"{top}:{listed}", build_system_override=flag).build_system is flag
    # the flag sets the container up; kas inside still builds the file's choice: said
    said = warnings(caplog)
    assert len(said) == 2 and all("sets the container up" in w for w in said)


def test_an_edited_include_is_noticed_on_the_next_run(tmp_path: Path) -> None:
    # the verdict cache keys each file by its own bytes: the include is read again
    kas(tmp_path, "base.yml", build_system="isar-rootless")
    top = kas(tmp_path, "kas.yml", "base.yml")
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS
    assert load(str(top)).build_system is BuildSystem.ISAR_ROOTLESS  # from the cache
    kas(tmp_path, "base.yml", build_system="isar-privileged")
    assert load(str(top)).build_system is BuildSystem.ISAR_PRIVILEGED
    kas(tmp_path, "base.yml")
    assert load(str(top)).build_system is BuildSystem.OPENEMBEDDED


def test_the_shipped_isar_example_is_rootless_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # it includes Isar's kas/isar.yaml ("isar", privileged) remotely and sets its own on top
    cfg = load(str(EXAMPLES / "isar-rootless-qemuamd64.yml"))
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert warnings(caplog) == []


def test_an_option_that_disagrees_with_the_config_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kas-container's --isar-* set the container up; kas builds the config's build_system."""
    top = tmp_path / "kas.yml"
    top.write_text("header:\n  version: 14\nbuild_system: isar-privileged\n")
    cfg = load(str(top), BuildSystem.ISAR_ROOTLESS)
    assert cfg.build_system is BuildSystem.ISAR_ROOTLESS
    assert "--isar-rootless sets the container up" in caplog.text
    assert "isar-privileged" in caplog.text and f"{top}:3" in caplog.text
    caplog.clear()
    load(str(top), BuildSystem.ISAR_PRIVILEGED)
    assert caplog.text == ""
