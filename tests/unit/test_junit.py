"""--junit: one test case per bitbake task of the run; a failed one with its log on the host."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from kasctl.report import junit
from kasctl.report.failures import analyse

from .test_failures import ARCH, BuildDir, console_of, task_failure


def _notes(*tasks: tuple[str, str, str]) -> str:
    lines = []
    for recipe, task, end in tasks:
        lines.append(f"NOTE: Running task 1 of 3 (/work/x/{recipe}.bb:{task})")
        lines.append(f"NOTE: recipe {recipe}: task {task}: Started")
        if end:
            lines.append(f"NOTE: recipe {recipe}: task {task}: {end}")
    return "\n".join(lines) + "\n"


def _cases(tree: ET.ElementTree) -> list[tuple[str, str, ET.Element | None]]:
    return [(c.get("classname"), c.get("name"), c.find("failure")) for c in tree.iter("testcase")]


def _report(d: BuildDir, status: int) -> ET.ElementTree:
    return junit.report("build", status, analyse(d.build, d.mounts, d.since))


def test_each_task_that_ran_is_a_case_and_the_failed_one_carries_its_host_log(
    tmp_path: Path,
) -> None:
    d = BuildDir(tmp_path)
    log = d.task_log("hello", "do_install", "make: *** [install] Error 2\nthe last line\n")
    d.console(
        console_of(
            _notes(
                ("hello-1.0-r0", "do_fetch", "Succeeded"),
                ("hello-1.0-r0", "do_install", "Failed"),
                ("base-files-1.0-r0", "do_fetch", "Succeeded"),
            )
            + task_failure("hello-1.0-r0", "/work/x/hello_1.0.bb", "do_install", log)
        )
    )
    tree = _report(d, 1)

    cases = _cases(tree)
    assert [(c, n) for c, n, _ in cases] == [
        ("hello-1.0-r0", "do_fetch"),
        ("hello-1.0-r0", "do_install"),
        ("base-files-1.0-r0", "do_fetch"),
    ]
    assert [f is not None for _, _, f in cases] == [False, True, False]
    failure = cases[1][2]
    assert failure is not None
    assert failure.get("message") == "hello-1.0-r0:do_install failed"
    assert f"log: {d.host(log)}" in (failure.text or ""), "named by its path on the host"
    assert "the last line" in (failure.text or ""), "with the log's tail"
    suite = tree.getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")


def test_a_task_that_started_and_never_ended_is_a_failure(tmp_path: Path) -> None:
    d = BuildDir(tmp_path)
    d.console(_notes(("img-1.0-r0", "do_rootfs", "")))
    ((classname, name, failure),) = _cases(_report(d, 130))
    assert (classname, name) == ("img-1.0-r0", "do_rootfs")
    assert failure is not None and "did not finish" in (failure.get("message") or "")


def test_a_build_that_failed_before_any_task_is_one_failed_case_for_the_command(
    tmp_path: Path,
) -> None:
    d = BuildDir(tmp_path)
    d.console("ERROR: ParseError at /work/x/broken.bb:3: unparsed line\n")
    ((classname, name, failure),) = _cases(_report(d, 1))
    assert (classname, name) == ("kasctl", "build")
    assert failure is not None and "before any task ran" in (failure.get("message") or "")


def test_without_a_console_log_a_good_build_is_one_passed_case(tmp_path: Path) -> None:
    ((classname, name, failure),) = _cases(junit.report("build", 0, None))
    assert (classname, name, failure) == ("kasctl", "build", None)


def test_the_file_is_valid_xml_even_when_a_log_holds_escape_sequences(tmp_path: Path) -> None:
    d = BuildDir(tmp_path)
    log = d.task_log("hello", "do_compile", "\x1b[31mred error\x1b[0m\x00\n")
    d.console(
        _notes(("hello-1.0-r0", "do_compile", "Failed"))
        + task_failure("hello-1.0-r0", "/work/x/hello.bb", "do_compile", log)
    )
    out = tmp_path / "reports" / "junit.xml"
    junit.write(out, _report(d, 1))
    parsed = ET.parse(out)  # raises on characters XML cannot hold
    assert "red error" in ET.tostring(parsed.getroot(), encoding="unicode")
    assert not list(out.parent.glob(".*.tmp")), "written through a temporary file, then renamed"
    assert ARCH in (parsed.getroot().find(".//failure").text or "")  # type: ignore[union-attr]
