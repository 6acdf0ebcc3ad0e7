"""Logs a CI page can fold: the style chosen, GitLab's markers, GitHub's groups and annotations."""

from __future__ import annotations

import io
import re

import pytest

from kasctl.errors import ConfigError
from kasctl.report import cilog
from kasctl.report.cilog import Log, choose

GITLAB_START = re.compile(
    r"^\x1b\[0Ksection_start:(\d+):([a-z0-9_.-]+)(\[collapsed=true\])?\r\x1b\[0K(.*)$"
)
GITLAB_END = re.compile(r"^\x1b\[0Ksection_end:(\d+):([a-z0-9_.-]+)\r\x1b\[0K$")


@pytest.mark.parametrize(
    ("given", "env", "tty", "style"),
    [
        (None, {"GITLAB_CI": "true"}, False, "gitlab"),
        (None, {"GITHUB_ACTIONS": "true"}, False, "github"),
        (None, {}, False, "none"),
        # a person at a terminal never gets markers, not even in a CI variable's shell
        (None, {"GITLAB_CI": "true"}, True, "none"),
        (None, {"GITHUB_ACTIONS": "true"}, True, "none"),
        # gitlab-ci-local says GITLAB_CI=false: that is not GitLab
        (None, {"GITLAB_CI": "false"}, False, "none"),
        # --ci-log wins over everything, also at a terminal
        ("gitlab", {}, True, "gitlab"),
        ("none", {"GITLAB_CI": "true"}, False, "none"),
        ("github", {"GITLAB_CI": "true"}, False, "github"),
    ],
)
def test_the_style_follows_the_ci_unless_a_terminal_or_the_option_says_otherwise(
    given: str | None, env: dict[str, str], tty: bool, style: str
) -> None:
    assert choose(given, env, tty) == style


def test_an_unknown_style_is_a_usage_error_naming_the_choices() -> None:
    with pytest.raises(Exception) as info:
        choose("jenkins", {}, False)
    assert info.value.exit_code == 2
    assert "jenkins" in info.value.message
    assert "none, gitlab, github" in (info.value.fix or "")


def test_gitlab_sections_open_and_close_in_order_with_matching_names() -> None:
    out = io.StringIO()
    log = Log("gitlab", out)
    with log.section("kasctl_checks", "kasctl: host checks"):
        out.write("checking\n")
    log.start("kasctl_kas", "kas build x.yml", collapsed=False)
    out.write("bitbake output\n")
    log.start("kasctl_cleanup", "kasctl: after the run")  # closes the kas section first
    log.end()
    log.end()  # nothing open: writes nothing

    lines = out.getvalue().split("\n")[:-1]
    events = []
    for line in lines:
        if m := GITLAB_START.match(line):
            events.append(("start", m.group(2), bool(m.group(3)), m.group(4)))
        elif m := GITLAB_END.match(line):
            events.append(("end", m.group(2)))
        else:
            events.append(("text", line))
    assert events == [
        ("start", "kasctl_checks", True, "kasctl: host checks"),
        ("text", "checking"),
        ("end", "kasctl_checks"),
        ("start", "kasctl_kas", False, "kas build x.yml"),
        ("text", "bitbake output"),
        ("end", "kasctl_kas"),
        ("start", "kasctl_cleanup", True, "kasctl: after the run"),
        ("end", "kasctl_cleanup"),
    ]


def test_a_section_is_closed_when_its_phase_raises() -> None:
    out = io.StringIO()
    log = Log("gitlab", out)
    with pytest.raises(RuntimeError), log.section("kasctl_image", "kasctl: image"):
        raise RuntimeError("boom")
    assert GITLAB_END.match(out.getvalue().split("\n")[:-1][-1])


def test_section_names_are_made_acceptable_to_gitlab() -> None:
    out = io.StringIO()
    Log("gitlab", out).start("Kas Build: x.yml", "title")
    assert GITLAB_START.match(out.getvalue().split("\n")[:-1][0])


def test_github_groups_do_not_nest() -> None:
    out = io.StringIO()
    log = Log("github", out)
    log.start("a", "kasctl: host checks")
    log.start("b", "kas build x.yml")
    log.end()
    assert out.getvalue().split("\n")[:-1] == [
        "::group::kasctl: host checks",
        "::endgroup::",
        "::group::kas build x.yml",
        "::endgroup::",
    ]


def test_no_style_writes_nothing() -> None:
    out = io.StringIO()
    log = Log("none", out)
    with log.section("a", "b"):
        pass
    log.error(ConfigError("bad", where="kas.yml:3"))
    assert out.getvalue() == ""


def test_a_config_error_becomes_a_github_annotation_on_its_file_and_line() -> None:
    out = io.StringIO()
    log = Log("github", out)
    log.start("kasctl_checks", "checks")
    log.error(ConfigError("header: 'version' is required", where="kas/x,y.yml:12", fix="add it"))
    lines = out.getvalue().split("\n")[:-1]
    assert lines[1] == "::endgroup::", "an annotation is not hidden in a group"
    assert lines[2] == (
        "::error file=kas/x%2Cy.yml,line=12,title=kasctl::"
        "header: 'version' is required (fix: add it)"
    )


def test_an_annotation_message_keeps_its_lines_and_percent_signs() -> None:
    out = io.StringIO()
    Log("github", out).error(ConfigError("100% wrong\nsecond line", where="a.yml"))
    assert out.getvalue() == "::error file=a.yml,title=kasctl::100%25 wrong%0Asecond line\n"


def test_an_error_without_a_file_is_annotated_without_one() -> None:
    out = io.StringIO()
    Log("github", out).error(ConfigError("no engine"))
    assert out.getvalue() == "::error title=kasctl::no engine\n"


def test_the_run_log_starts_without_a_style() -> None:
    assert cilog.Log().style == "none"
