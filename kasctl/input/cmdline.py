"""kasctl's command line: its own options (declared once, in kasctl.spec), the rest for kas.

    kasctl [OPTIONS] COMMAND [OPTIONS | KAS ARGS]... [-- BITBAKE ARGS]
    kasctl [OPTIONS] doctor [OPTIONS] [CONFIG]
    kasctl [OPTIONS] image build [OPTIONS]
    kasctl [OPTIONS] completion { bash | zsh | fish }

As with kas-container, kasctl's options may stand before the command (every
option kas-container 5.5 takes there, with its meaning) or after it (after
it, they win), except --runtime-args: its values add up, space-joined in the
order given, as kas-container appends them. After a kas command, every
argument that is not one of kasctl's options goes to kas, in the order
given, and everything after the first `--` goes to bitbake untouched,
options included.

The parser is written for exactly this shape. A general CLI framework costs
more to import and set up than all the rest of kasctl's work before a
container starts, and this grammar (unknown options passed on, a verbatim
tail after `--`) is what such frameworks make awkward. Problems are
UsageErrors (exit 2) in kasctl's one error format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from kasctl import __version__
from kasctl.errors import UsageError
from kasctl.input.commands import split_runtime_args
from kasctl.spec import (
    BEFORE,
    COMMAND_BY_NAME,
    COMMAND_TABLE,
    COMMAND_WORDS,
    GROUPS,
    HELP,
    KAS,
    LOG_LEVELS,
    OWN,
    RUNTIME_ARGS,
    VERSION,
    Command,
    Option,
    options_after,
)

__all__ = ["LOG_LEVELS", "Parsed", "Shown", "command_help", "main_help", "parse", "usage_args"]

SUMMARY = (
    "Run kas builds (OpenEmbedded, Isar privileged and rootless) in podman or docker, "
    "with the fewest privileges that work."
)


class Shown(Exception):
    """Help or the version was asked for (status 0), or help is the answer to nothing (2)."""

    def __init__(self, text: str, status: int = 0) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


@dataclass(frozen=True)
class Parsed:
    """A command line taken apart."""

    #: The command's name in kasctl.spec: a kas command's, "doctor", "image build", ...
    command: str
    #: kasctl's options given before the command, and the command's own (which win).
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    #: Everything else after the command, in order: kas's options and arguments.
    args: tuple[str, ...] = ()
    #: What follows the first `--` after the command, untouched.
    bitbake: tuple[str, ...] = ()
    #: What the deprecated options used say.
    warnings: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        merged = {**self.before, **self.after}
        both = [v for v in (self.before, self.after) if RUNTIME_ARGS.dest in v]
        if len(both) == 2:  # they add up, before the command first
            merged[RUNTIME_ARGS.dest] = " ".join(v[RUNTIME_ARGS.dest] for v in both)
        return merged


def _store(values: dict[str, Any], option: Option, value: Any, warnings: list[str]) -> None:
    """Keep an option's value: the last one given wins, but --runtime-args add up."""
    if option is RUNTIME_ARGS:
        split_runtime_args(value)  # each value on its own: a quote never spans two of them
        if option.dest in values:
            value = f"{values[option.dest]} {value}"
    if option.deprecated and option.deprecated not in warnings:
        warnings.append(option.deprecated)
    values[option.dest] = value


def _match(
    options: Sequence[Option], argv: Sequence[str], i: int
) -> tuple[Option, Any, int] | None:
    """The option at argv[i] with its value and the index after it; None if it is not ours."""
    token = argv[i]
    for option in options:
        for name in option.names:
            if token == name:
                if option.metavar is None:
                    return option, option.const, i + 1
                if i + 1 >= len(argv):
                    raise UsageError(
                        f"option {name} requires an argument",
                        fix=f"give it one: {name} {option.metavar}",
                    )
                return option, argv[i + 1], i + 2
            if name.startswith("--") and token.startswith(name + "="):
                if option.metavar is None:
                    raise UsageError(
                        f"option {name} takes no value (got {token!r})", fix=f"write just {name}"
                    )
                return option, token[len(name) + 1 :], i + 1
            if len(name) == 2 and option.metavar is not None and token.startswith(name):
                return option, token[2:], i + 1  # -cVALUE
    return None


def parse(argv: Sequence[str]) -> Parsed:
    """Take a command line apart; raise Shown for help and --version, UsageError for mistakes."""
    before: dict[str, Any] = {}
    warnings: list[str] = []
    #: The last option before the command that took the next argument as its value.
    took: tuple[str, str, str] | None = None
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        found = _match(BEFORE, argv, i)
        if found is None:
            raise UsageError(
                f"no such option: {argv[i]}",
                fix="`kasctl -h` lists kasctl's options; kas's own options go after the command",
            )
        option, value, j = found
        took = (argv[i], value, option.metavar or "") if j == i + 2 else None
        i = j
        if option is HELP:
            raise Shown(main_help())
        if option is VERSION:
            raise Shown(f"kasctl {__version__}")
        _store(before, option, value, warnings)
    if i == len(argv):
        if took is not None and took[1] in COMMAND_WORDS:
            _value_missing(*took)
        raise Shown(main_help(), status=2)
    name, rest = argv[i], argv[i + 1 :]
    if name in GROUPS:
        return _parse_group(name, before, rest, warnings)
    command = COMMAND_BY_NAME.get(name)
    if command is None:
        if took is not None and took[1] in COMMAND_WORDS:
            _value_missing(*took)
        raise UsageError(f"no such command {name!r}{_did_you_mean(name)}", fix="see `kasctl -h`")
    if command.runs == OWN:
        return _parse_strict(command, before, rest, warnings)
    options = options_after(name)
    after: dict[str, Any] = {}
    args: list[str] = []
    bitbake: tuple[str, ...] = ()
    j = 0
    while j < len(rest):
        if rest[j] == "--":
            bitbake = tuple(rest[j + 1 :])
            break
        found = _match(options, rest, j)
        if found is None:
            args.append(rest[j])
            j += 1
            continue
        option, value, j = found
        if option is HELP:
            raise Shown(command_help(name))
        if option is VERSION:
            raise Shown(f"kasctl {__version__}")
        _store(after, option, value, warnings)
    return Parsed(name, before, after, tuple(args), bitbake, tuple(warnings))


def _value_missing(name: str, value: str, metavar: str) -> NoReturn:
    """`--ssh-dir build kas.yml` (say, from an empty $VAR): the command became the value."""
    raise UsageError(
        f"option {name} requires an argument (it took the command {value!r} as its value)",
        fix=f"give it one before the command: {name} {metavar} {value} ...",
    )


def _subcommands(group: str) -> list[Command]:
    return [c for c in COMMAND_TABLE if c.name.startswith(group + " ")]


def _parse_group(
    group: str, before: dict[str, Any], rest: Sequence[str], warnings: list[str]
) -> Parsed:
    if not rest:
        raise Shown(group_help(group), status=2)
    if rest[0] in HELP.names:
        raise Shown(group_help(group))
    command = COMMAND_BY_NAME.get(f"{group} {rest[0]}")
    if command is None:
        raise UsageError(
            f"no such command '{group} {rest[0]}'",
            fix="the "
            + group
            + " command"
            + (" is " if len(_subcommands(group)) == 1 else "s are ")
            + ", ".join(f"`kasctl {c.name}`" for c in _subcommands(group)),
        )
    return _parse_strict(command, before, rest[1:], warnings)


def _parse_strict(
    command: Command, before: dict[str, Any], rest: Sequence[str], warnings: list[str]
) -> Parsed:
    """A command of kasctl's own: only its options, and at most one positional argument."""
    name = command.name
    options = options_after(name)
    after: dict[str, Any] = {}
    args: list[str] = []
    j = 0
    while j < len(rest):
        found = _match(options, rest, j)
        if found is None and (rest[j].startswith("-") or not command.args or args):
            raise UsageError(
                f"kasctl {name} does not take {rest[j]!r}", fix=f"see `kasctl {name} -h`"
            )
        if found is None:
            if command.choices and rest[j] not in command.choices:
                raise UsageError(
                    f"unknown {command.args.lower()} {rest[j]!r} for kasctl {name}",
                    fix="use one of: " + ", ".join(command.choices),
                )
            args.append(rest[j])
            j += 1
            continue
        option, value, j = found
        if option is HELP:
            raise Shown(own_help(command))
        _store(after, option, value, warnings)
    if len(args) < command.required:
        raise UsageError(
            f"kasctl {name} needs {command.needs}", fix=f"kasctl {name} {command.example}"
        )
    return Parsed(name, before, after, tuple(args), warnings=tuple(warnings))


def _did_you_mean(name: str) -> str:
    import difflib  # only on this error's path

    close = difflib.get_close_matches(name, COMMAND_WORDS, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows) + 2
    return [f"  {left:<{width}}{right}" for left, right in rows]


def _option_rows(options: Sequence[Option], command: str | None) -> list[tuple[str, str]]:
    return [
        (", ".join(o.names) + (f" {o.metavar}" if o.metavar else ""), o.help_for(command))
        for o in options
        if o.help_for(command)
    ]


def _help(
    usage: str,
    summary: str,
    options: Sequence[Option],
    command: str | None,
    extra: str = "",
) -> str:
    import textwrap  # only when help is shown

    lines = [f"Usage: {usage}", ""]
    for paragraph in (summary, extra) if extra else (summary,):
        lines += [*textwrap.wrap(paragraph, 78, initial_indent="  ", subsequent_indent="  "), ""]
    lines.pop()
    lines += ["", "Options:", *_table(_option_rows(options, command))]
    return "\n".join(lines)


def usage_args(command: Command) -> str:
    """Its positional arguments as usage shows them: `{ bash | zsh | fish }` for choices."""
    return "{ " + " | ".join(command.choices) + " }" if command.choices else command.args


def usage_forms() -> list[str]:
    """kas-container's usage forms (kas commands with the same arguments in one), kasctl's own."""
    kas: dict[str, list[str]] = {}
    for c in COMMAND_TABLE:
        if c.runs == KAS:
            kas.setdefault(c.args, []).append(c.name)
    forms = [
        " ".join(
            ["kasctl [OPTIONS]", names[0] if len(names) == 1 else "{ " + " | ".join(names) + " }"]
            + ["[KASOPTIONS]", args]
        )
        for args, names in kas.items()
    ]
    for c in COMMAND_TABLE:
        if c.runs == OWN:
            own = [o for o in options_after(c.name) if o is not HELP]
            words = ["kasctl [OPTIONS]", c.name, "[OPTIONS]" if own else "", usage_args(c)]
            forms.append(" ".join(w for w in words if w))
    return forms


def main_help() -> str:
    commands: list[tuple[str, str]] = []
    for c in COMMAND_TABLE:
        word = c.name.split()[0]
        if word in GROUPS:
            if word not in (left for left, _ in commands):
                commands.append((word, GROUPS[word]))
        else:
            # kasctl's own: the first sentence (doctor's help goes on)
            commands.append((c.name, c.help if c.runs == KAS else c.help.split(". ")[0] + "."))
    usage = "\n       ".join(["kasctl [OPTIONS] COMMAND [ARGS]...", *usage_forms()])
    text = _help(usage, SUMMARY, BEFORE, None)
    return "\n".join([text, "", "Commands:", *_table(commands)])


def command_help(name: str) -> str:
    return _help(
        f"kasctl {name} [OPTIONS] [KAS ARGS]... [-- BITBAKE ARGS]",
        COMMAND_BY_NAME[name].help,
        options_after(name),
        name,
        "Options not listed here go to kas, in the order given.",
    )


def own_help(command: Command) -> str:
    usage = f"kasctl {command.name} [OPTIONS] {usage_args(command)}".rstrip()
    return _help(usage, command.help, options_after(command.name), command.name)


def group_help(group: str) -> str:
    text = _help(f"kasctl {group} COMMAND [OPTIONS]", GROUPS[group], (HELP,), None)
    rows = [(c.name.split(" ", 1)[1], c.help) for c in _subcommands(group)]
    return "\n".join([text, "", "Commands:", *_table(rows)])
