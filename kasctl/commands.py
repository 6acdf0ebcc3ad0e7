"""kas's commands as kasctl passes them on: one table, one parser.

kasctl does not re-implement kas's options. It only needs to know, per
command, which positional arguments are config files (their host paths are
checked, mounted and rewritten to container paths), whether the command
writes into the config's repository, and which kas options take a value (so
that value is not mistaken for a config). Everything else goes to kas as
given, in the order given; what follows `--` goes to bitbake.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from kasctl.errors import UsageError


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    #: How many leading positional arguments are config files (diff: two).
    configs: int = 1
    #: The command writes into the config's repository (mounted read-write).
    writes_repo: bool = False
    #: A clean command: may run without a config, so the build system is passed.
    cleans: bool = False
    #: The positional argument is a Kconfig file, not a kas config (menu).
    kconfig: bool = False


COMMANDS = {
    c.name: c
    for c in (
        Command("build", "Check out the repos and run bitbake. [CONFIG] [-- bitbake args]"),
        Command("checkout", "Check out the repos and set up the build dir, without building."),
        Command("dump", "Print the flattened config (--inplace rewrites it in the repo)."),
        Command("lock", "Pin the repos' revisions in a lock file next to the config.",
                writes_repo=True),
        Command("shell", "Open a shell in the build environment (-c CMD runs one command).",
                writes_repo=True),
        Command("diff", "Compare two configs: CONFIG1 CONFIG2.", configs=2),
        Command("for-all-repos", "Run a command in every repo: CONFIG COMMAND."),
        Command("menu", "Configure the build from a Kconfig menu: [KCONFIG].", kconfig=True),
        Command("clean", "Remove the build's tmp dirs (rootless: without sudo).", cleans=True),
        Command("cleansstate", "clean, and empty the sstate cache.", cleans=True),
        Command("cleanall", "cleansstate, and empty the downloads.", cleans=True),
        Command("purge", "Remove everything kas manages for this config.", cleans=True),
    )
}  # fmt: skip

#: kas options that take a value (the value is never a config).
VALUE_OPTIONS = {"--format", "--indent", "--provenance", "--skip", "--target", "--task", "--sort"}
REFUSED = {"-E", "--preserve-env"}


@dataclass(frozen=True)
class KasArgs:
    """The command's arguments: all of them in order, with where the configs stand."""

    args: tuple[str, ...]
    config_positions: tuple[int, ...]
    bitbake: tuple[str, ...]

    def configs(self) -> list[str]:
        return [self.args[i] for i in self.config_positions]

    def with_configs(self, replacements: list[str]) -> tuple[str, ...]:
        args = list(self.args)
        for position, value in zip(self.config_positions, replacements, strict=True):
            args[position] = value
        return tuple(args)

    def writes_repo(self, command: Command) -> bool:
        return command.writes_repo or (
            command.name == "dump" and ("--inplace" in self.args or "-i" in self.args)
        )


def parse(command: Command, args: list[str], bitbake: list[str] | None = None) -> KasArgs:
    """Find the configs among kas's arguments; bitbake's (after `--`) are kept as given."""
    for arg in args:
        if arg in REFUSED or arg.startswith("--preserve-env="):
            raise UsageError(
                f"{arg} is not supported: the container's environment is built explicitly",
                fix="pass the variables you need (kasctl forwards KAS_*, proxies, TERM, ...)",
            )
    positions: list[int] = []
    skip_value = False
    for index, arg in enumerate(args):
        if skip_value:
            skip_value = False
            continue
        if arg.startswith("-"):
            skip_value = arg in VALUE_OPTIONS
            continue
        positions.append(index)
    wanted = positions[: command.configs]
    if command.configs == 2 and len(wanted) != 2:
        raise UsageError(
            f"kasctl {command.name} needs two configs", fix=f"kasctl {command.name} A.yml B.yml"
        )
    if command.name == "for-all-repos" and len(positions) < 2:
        raise UsageError(
            "kasctl for-all-repos needs a config and a command",
            fix="kasctl for-all-repos kas.yml 'git status'",
        )
    return KasArgs(tuple(args), tuple(wanted), tuple(bitbake or ()))


def split_runtime_args(raw: str | None) -> tuple[str, ...]:
    """--runtime-args as the engine gets them: split like a shell would, quotes balanced."""
    try:
        return tuple(shlex.split(raw or ""))
    except ValueError as exc:  # shlex's only complaint: an open quote or a trailing backslash
        raise UsageError(
            f"--runtime-args {raw!r} cannot be split into arguments: {exc}",
            fix="balance its quotes, e.g. --runtime-args \"--env 'A=b c'\"",
        ) from None
