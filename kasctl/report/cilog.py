"""Logs a CI page can fold: GitLab's collapsible sections, GitHub's groups and annotations.

A run's own phases (host checks, image, container start, the kas run,
clean-up) each become one section. The style comes from `--ci-log`, else
from the CI's own variable (GITLAB_CI=true, GITHUB_ACTIONS=true), and is
never used when stdout is a terminal unless `--ci-log` asks for it: markers
are for a CI page, not for a person at a terminal.

GitLab's markers (docs.gitlab.com, "Custom collapsible sections"):
`ESC[0Ksection_start:UNIX_TIME:NAME[collapsed=true]\\rESC[0KHEADER` and
`ESC[0Ksection_end:UNIX_TIME:NAME\\rESC[0K`, each on a line of its own.
GitHub's workflow commands: `::group::TITLE` ... `::endgroup::` (groups do
not nest), `::error file=F,line=L,title=T::MESSAGE`.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import TextIO

from kasctl.errors import KasctlError, UsageError

NONE = "none"
GITLAB = "gitlab"
GITHUB = "github"
STYLES = (NONE, GITLAB, GITHUB)

#: Section names GitLab accepts: letters, digits, _ . -
_NAME = re.compile(r"[^a-z0-9_.-]+")


def choose(given: str | None, env: Mapping[str, str], tty: bool) -> str:
    """The style: --ci-log as given, else the CI's variable, and none at a terminal."""
    if given is not None:
        if given not in STYLES:
            raise UsageError(
                f"--ci-log {given!r} is not a log style",
                fix="use one of: " + ", ".join(STYLES),
            )
        return given
    if tty:
        return NONE
    if env.get("GITLAB_CI") == "true":
        return GITLAB
    if env.get("GITHUB_ACTIONS") == "true":
        return GITHUB
    return NONE


class Log:
    """Where sections are written, in one style; at most one section is open at a time."""

    def __init__(self, style: str = NONE, stream: TextIO | None = None) -> None:
        self.style = style
        self._stream = stream
        self._open: str | None = None

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, name: str, title: str, *, collapsed: bool = True) -> None:
        """Open a section (closing one still open: sections follow one another)."""
        if self.style == NONE:
            return
        self.end()
        name = _NAME.sub("_", name.lower())
        if self.style == GITLAB:
            options = "[collapsed=true]" if collapsed else ""
            self._write(f"\x1b[0Ksection_start:{int(time.time())}:{name}{options}\r\x1b[0K{title}")
        else:
            self._write(f"::group::{title}")
        self._open = name

    def end(self) -> None:
        """Close the open section, if any."""
        if self._open is None:
            return
        if self.style == GITLAB:
            self._write(f"\x1b[0Ksection_end:{int(time.time())}:{self._open}\r\x1b[0K")
        else:
            self._write("::endgroup::")
        self._open = None

    @contextlib.contextmanager
    def section(self, name: str, title: str, *, collapsed: bool = True) -> Iterator[None]:
        """A phase as one section; closed however the phase ends."""
        self.start(name, title, collapsed=collapsed)
        try:
            yield
        finally:
            self.end()

    def error(self, exc: KasctlError) -> None:
        """A GitHub annotation for an error with a file (and line): shown on the job's page."""
        if self.style != GITHUB:
            return
        self.end()
        where = exc.where or ""
        file, _, line = where.rpartition(":")
        if not (file and line.isdigit()):
            file, line = where, ""
        props = []
        if file:
            props.append(f"file={_property(file)}")
        if line:
            props.append(f"line={line}")
        props.append("title=kasctl")
        text = exc.message + (f" (fix: {exc.fix})" if exc.fix else "")
        self._write(f"::error {','.join(props)}::{_data(text)}")


def _data(text: str) -> str:
    """A workflow command's message, escaped as GitHub reads it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A workflow command's property value, escaped as GitHub reads it."""
    return _data(text).replace(":", "%3A").replace(",", "%2C")


#: The run's log: kasctl.cli sets its style once the command line is read.
LOG = Log()
