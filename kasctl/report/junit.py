"""A JUnit XML report of a build: one test case per bitbake task that ran (`--junit FILE`).

GitLab (`artifacts:reports:junit`) and GitHub (test-report actions) show
such a file as a list of tests with the failed ones first. The tasks come
from the run's console log, where bitbake notes each task's start and end
("NOTE: recipe hello-1.0-r0: task do_fetch: Started" ... "Succeeded" or
"Failed"); a failed task carries what the failure summary found (its log
on the host, the known cause) and the tail of its log. A build that failed
before any task ran is one failed case, named after the command.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from kasctl.report.failures import FailedTask, Summary, tail

#: What XML 1.0 cannot hold (a log's escape sequences and other control characters).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TASK = re.compile(r"^NOTE: recipe (?P<recipe>\S+): task (?P<task>do_\S+): (?P<state>\w+)\s*$")


def tasks_in(console: str) -> list[tuple[str, str, str]]:
    """(recipe, task, last state) per task the console log names, in order of start."""
    states: dict[tuple[str, str], str] = {}
    for line in console.splitlines():
        hit = _TASK.match(line)
        if hit:
            states[(hit.group("recipe"), hit.group("task"))] = hit.group("state")
    return [(recipe, task, state) for (recipe, task), state in states.items()]


def _stem(recipe_file: str) -> str:
    """hello_1.0.bb -> hello (bitbake's PN from the file name)."""
    name = os.path.basename(recipe_file)
    name = name[: -len(".bb")] if name.endswith(".bb") else name
    return name.split("_", 1)[0]


def _failed_task(recipe: str, task: str, failed: Sequence[FailedTask]) -> FailedTask | None:
    for f in failed:
        stem = _stem(f.recipe_file)
        if f.task == task and (recipe == stem or recipe.startswith(stem + "-")):
            return f
    return None


def report(command: str, status: int, summary: Summary | None) -> ET.ElementTree:
    """The report's XML tree: the tasks of the console log, or one case for the command."""
    failed = summary.tasks if summary else ()
    suite = ET.Element("testsuite", name=f"kasctl {command}")
    cases = tasks_in(summary.text if summary else "")
    failures = 0
    for recipe, task, state in cases:
        case = ET.SubElement(suite, "testcase", classname=recipe, name=task)
        if state == "Failed":
            failures += 1
            found = _failed_task(recipe, task, failed)
            _fail(case, f"{recipe}:{task} failed", found)
        elif state != "Succeeded":  # started, never ended: the build stopped in it
            failures += 1
            _fail(case, f"{recipe}:{task} did not finish ({state.lower()})", None)
    if not cases:
        case = ET.SubElement(suite, "testcase", classname="kasctl", name=command)
        if status != 0:
            failures += 1
            why = f"kas {command} failed (exit status {status}) before any task ran"
            fail = ET.SubElement(case, "failure", message=why)
            if summary and summary.failure:
                fail.text = f"{summary.failure.render('a recipe')}\nfix: {summary.failure.fix}"
            if summary:
                out = ET.SubElement(case, "system-out")
                out.text = _xml(tail(summary.console_log) or "")
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.ElementTree(root)


def _fail(case: ET.Element, message: str, found: FailedTask | None) -> None:
    fail = ET.SubElement(case, "failure", message=message)
    lines = []
    if found is not None:
        lines.append(f"log: {found.host_log or found.log or 'none named'}")
        if found.failure:
            recipe = found.host_recipe_file or found.recipe_file
            lines.append(f"cause: {found.failure.render(recipe)}")
            lines.append(f"fix: {found.failure.fix}")
        text = tail(found.host_log) if found.host_log else None
        if text:
            lines += ["", text]
    fail.text = _xml("\n".join(lines))


def _xml(text: str) -> str:
    return _NOT_XML.sub("?", text)


def write(path: Path, tree: ET.ElementTree) -> None:
    """Write the report (replacing the file at once: a CI job may read it while it is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
