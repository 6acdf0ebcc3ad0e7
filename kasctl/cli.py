"""The `kasctl` command line: parse it, hand it to its command, turn errors into exit statuses.

Nothing else happens here. What a command does, step by step, is kasctl.flow;
data moves down from there (input -> host facts -> decide -> engine) and never
comes back to this module.
"""

from __future__ import annotations

import logging
import os
import sys

from kasctl import flow
from kasctl.errors import KasctlError, UsageError
from kasctl.input import cmdline
from kasctl.input.options import Options
from kasctl.report import cilog
from kasctl.spec import COMMAND_BY_NAME, KAS

log = logging.getLogger("kasctl")


def _setup_logging(level: str) -> None:
    """-l takes kas's choices, exactly (as kas-container, whose kas refuses `DEBUG` or `warn`)."""
    if level not in cmdline.LOG_LEVELS:
        raise UsageError(
            f"unknown log level {level!r}", fix="use debug, info, warning, error or critical"
        )
    logging.basicConfig(level=level.upper(), format="kasctl: %(levelname)s: %(message)s")


def run(given: cmdline.Parsed) -> int:
    """Carry out a parsed command line; returns the exit status."""
    opts = Options.given(given.options())
    _setup_logging("warning" if opts.log_level is None else opts.log_level)
    cilog.LOG.style = cilog.choose(opts.ci_log, os.environ, sys.stdout.isatty())
    for warning in given.warnings:
        log.warning("%s", warning)
    if COMMAND_BY_NAME[given.command].runs == KAS:
        return flow.kas_command(given, opts)
    return flow.OWN_COMMANDS[given.command](given, opts)


def main(argv: list[str] | None = None) -> None:
    """Entry point: the single place that turns errors into messages and exit codes.

    Everything kasctl raises, mistakes on the command line included, is a
    KasctlError: one message and a fix, no traceback.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        status = run(cmdline.parse(args))
    except cmdline.Shown as shown:
        print(shown.text, file=sys.stdout if shown.status == 0 else sys.stderr)
        status = shown.status
    except KasctlError as exc:
        cilog.LOG.error(exc)
        print(exc.render(), file=sys.stderr)
        status = exc.exit_code
    except KeyboardInterrupt:
        status = 130
    except OSError as exc:  # a host call no check foresaw: still one line, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"kasctl: error: {where}{exc.strerror or exc}", file=sys.stderr)
        print(
            "kasctl: fix: check that path and its permissions; rerun with -l debug", file=sys.stderr
        )
        status = 3
    finally:
        cilog.LOG.end()
    sys.exit(status)
