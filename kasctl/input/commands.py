"""kas's commands as kasctl passes them on: their arguments, taken apart.

The commands themselves are declared in kasctl.spec. kasctl does not
re-implement kas's options. It only needs to know, per command, which
positional arguments are config files (their host paths are checked,
mounted and rewritten to container paths), whether the command writes into
the config's repository, and which kas options take a value (so that value
is not mistaken for a config). Everything else goes to kas as given, in the
order given; what follows `--` goes to bitbake.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from kasctl.errors import UsageError
from kasctl.spec import COMMAND_BY_NAME, KAS_COMMANDS, Command

__all__ = ["COMMANDS", "Command", "KasArgs", "parse", "split_runtime_args"]


#: kas's commands by name (their entries in kasctl.spec, the one table of commands).
COMMANDS = {name: COMMAND_BY_NAME[name] for name in KAS_COMMANDS}

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


def positionals(args: Sequence[str]) -> list[int]:
    """Where kas's positional arguments stand: not an option, nor an option's value."""
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
    return positions


def parse(command: Command, args: list[str], bitbake: list[str] | None = None) -> KasArgs:
    """Find the configs among kas's arguments; bitbake's (after `--`) are kept as given."""
    for arg in args:
        if arg in REFUSED or arg.startswith("--preserve-env="):
            raise UsageError(
                f"{arg} is not supported: the container's environment is built explicitly",
                fix="pass the variables you need (kasctl forwards KAS_*, proxies, TERM, ...)",
            )
    positions = positionals(args)
    wanted = positions[: command.configs]
    if len(positions) < command.required:
        raise UsageError(
            f"kasctl {command.name} needs {command.needs}",
            fix=f"kasctl {command.name} {command.example}",
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
