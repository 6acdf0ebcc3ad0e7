"""One error type for everything a user can fix, mapped to exit codes at the top.

Helpers raise; only the CLI's single handler prints and exits. Every error
names what is wrong, where, and how to fix it, so a CI log needs no traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2  # bad command line or bad config: the user's input
EXIT_HOST = 3  # the host or engine cannot do what was asked
EXIT_BUSY = 4  # the build dir is in use by another kasctl run (--no-wait)


class KasctlError(Exception):
    """A problem the user can fix; carries its exit status and a fix hint."""

    exit_code = EXIT_HOST

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.fix = fix

    def render(self) -> str:
        head = f"{self.where}: {self.message}" if self.where else self.message
        lines = [f"kasctl: error: {head}"]
        if self.fix:
            lines.append(f"kasctl: fix: {self.fix}")
        return "\n".join(lines)


class UsageError(KasctlError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class ConfigError(KasctlError):
    """A kas config file is missing, unreadable or invalid."""

    exit_code = EXIT_USAGE


class HostError(KasctlError):
    """The host or the container engine is not set up for the requested run."""

    exit_code = EXIT_HOST


class BusyError(KasctlError):
    """Another kasctl run holds the build dir, and the user asked not to wait."""

    exit_code = EXIT_BUSY
