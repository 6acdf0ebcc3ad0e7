"""kasctl's command line: its own options, declared once, and everything else for kas.

    kasctl [OPTIONS] COMMAND [OPTIONS | KAS ARGS]... [-- BITBAKE ARGS]
    kasctl [OPTIONS] doctor [OPTIONS] [CONFIG]
    kasctl [OPTIONS] image build [OPTIONS]

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
from kasctl.commands import COMMANDS, split_runtime_args
from kasctl.errors import UsageError


@dataclass(frozen=True)
class Option:
    """One of kasctl's own options; a flag unless it has a metavar (then it takes a value)."""

    names: tuple[str, ...]
    dest: str
    help: str
    metavar: str | None = None
    #: What a flag stores.
    const: Any = True
    hidden: bool = False


def _flag(*names: str, dest: str, help: str, const: Any = True, hidden: bool = False) -> Option:
    return Option(names, dest, help, const=const, hidden=hidden)


def _valued(*names: str, dest: str, metavar: str, help: str) -> Option:
    return Option(names, dest, help, metavar=metavar)


#: -l's values: kas's choices, which kas-container passes on (kas refuses any other).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

ISAR_ROOTLESS = _flag(
    "--isar-rootless", dest="isar_rootless", help="Isar without root (user namespaces)."
)
ISAR_PRIVILEGED = _flag(
    "--isar-privileged", dest="isar_privileged", help="Isar with sudo in a privileged container."
)
ISAR = _flag("--isar", dest="isar", help="Deprecated: means --isar-privileged.", hidden=True)
ENGINE = _valued(
    "--engine",
    dest="engine",
    metavar="ENGINE",
    help="docker or podman (default: KAS_CONTAINER_ENGINE, or detected).",
)
DRY_RUN = _flag(
    "--dry-run", dest="dry_run", help="Print the exact engine command line; run nothing."
)
RUNTIME_ARGS = _valued(
    "--runtime-args",
    "--docker-args",
    dest="runtime_args",
    metavar="ARGS",
    help="Extra engine run arguments (repeated: they add up).",
)
REPO_RW = _flag("--repo-rw", dest="repo_rw", help="Mount the config's repository writable.")
REPO_RO = _flag(
    "--repo-ro", dest="repo_rw", const=False, help="Mount the config's repository read-only."
)
NO_PROXY_FROM_ENV = _flag(
    "--no-proxy-from-env", dest="no_proxy_from_env", help="Do not pass the host's proxy variables."
)
SSH_DIR = _valued(
    "--ssh-dir", dest="ssh_dir", metavar="DIR", help="Share this ssh dir (read-only) as ~/.ssh."
)
SSH_AGENT = _flag(
    "--ssh-agent", dest="ssh_agent", help="Share the ssh agent socket (SSH_AUTH_SOCK)."
)
AWS_DIR = _valued(
    "--aws-dir", dest="aws_dir", metavar="DIR", help="Share this AWS config dir (read-only)."
)
GIT_CREDENTIAL_STORE = _valued(
    "--git-credential-store",
    dest="git_credential_store",
    metavar="FILE",
    help="Share this git credential store file.",
)
GIT_CREDENTIAL_SOCKET = _valued(
    "--git-credential-socket",
    dest="git_credential_socket",
    metavar="SOCKET",
    help="Share this git credential cache socket.",
)
LOG_LEVEL = _valued(
    "-l",
    "--log-level",
    dest="log_level",
    metavar="LEVEL",
    help="kasctl's log level: " + ", ".join(LOG_LEVELS) + " (default: warning).",
)
VERSION = _flag("--version", dest="version", help="Show the version and exit.")
HELP = _flag("-h", "--help", dest="help", help="Show this help and exit.")

#: kas-container 5.5's options before the command (but --kvm), with kasctl's own.
GLOBAL = (
    ISAR_ROOTLESS,
    ISAR_PRIVILEGED,
    ISAR,
    ENGINE,
    DRY_RUN,
    RUNTIME_ARGS,
    REPO_RW,
    REPO_RO,
    NO_PROXY_FROM_ENV,
    SSH_DIR,
    SSH_AGENT,
    AWS_DIR,
    GIT_CREDENTIAL_STORE,
    GIT_CREDENTIAL_SOCKET,
    LOG_LEVEL,
    VERSION,
    HELP,
)
KAS = (
    ISAR_ROOTLESS,
    ISAR_PRIVILEGED,
    ISAR,
    ENGINE,
    DRY_RUN,
    _flag("--explain", dest="explain", help="With --dry-run: print why each privilege is granted."),
    _flag("--json", dest="as_json", help="With --dry-run: the RunPlan as JSON."),
    RUNTIME_ARGS,
    REPO_RW,
    REPO_RO,
    NO_PROXY_FROM_ENV,
    SSH_DIR,
    SSH_AGENT,
    AWS_DIR,
    GIT_CREDENTIAL_STORE,
    GIT_CREDENTIAL_SOCKET,
    LOG_LEVEL,
    VERSION,
    _valued(
        "-c",
        "--cmd",
        "--command",
        dest="cmd",
        metavar="CMD",
        help="build: the bitbake task to run; shell: run this command, not a shell.",
    ),
    HELP,
)
DOCTOR = (
    ISAR_ROOTLESS,
    ISAR_PRIVILEGED,
    ENGINE,
    _flag("--json", dest="as_json", help="The checks as JSON."),
    HELP,
)
IMAGE_BUILD = (
    ENGINE,
    _flag(
        "--bootstrap-base",
        dest="bootstrap_base",
        help="Make the base image with mmdebstrap, never pull.",
    ),
    HELP,
)

SUMMARY = (
    "Run kas builds (OpenEmbedded, Isar privileged and rootless) in podman or docker, "
    "with the fewest privileges that work."
)
DOCTOR_SUMMARY = (
    "Check this host for a build: one line per check, with the fix. Exit 0 when it can work. "
    "CONFIG, if given, chooses the build system to check for."
)
IMAGE_SUMMARY = "Manage the kasctl build image."
IMAGE_BUILD_SUMMARY = "Build the kasctl image (kas, Isar's host tools, kasctl's entrypoint)."


class Shown(Exception):
    """Help or the version was asked for (status 0), or help is the answer to nothing (2)."""

    def __init__(self, text: str, status: int = 0) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


@dataclass(frozen=True)
class Parsed:
    """A command line taken apart."""

    #: A kas command's name, "doctor" or "image build".
    command: str
    #: kasctl's options given before the command, and the command's own (which win).
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    #: Everything else after the command, in order: kas's options and arguments.
    args: tuple[str, ...] = ()
    #: What follows the first `--` after the command, untouched.
    bitbake: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        merged = {**self.before, **self.after}
        both = [v for v in (self.before, self.after) if RUNTIME_ARGS.dest in v]
        if len(both) == 2:  # they add up, before the command first
            merged[RUNTIME_ARGS.dest] = " ".join(v[RUNTIME_ARGS.dest] for v in both)
        return merged


def _store(values: dict[str, Any], option: Option, value: Any) -> None:
    """Keep an option's value: the last one given wins, but --runtime-args add up."""
    if option is RUNTIME_ARGS:
        split_runtime_args(value)  # each value on its own: a quote never spans two of them
        if option.dest in values:
            value = f"{values[option.dest]} {value}"
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
    #: The last option before the command that took the next argument as its value.
    took: tuple[str, str, str] | None = None
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        found = _match(GLOBAL, argv, i)
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
        _store(before, option, value)
    if i == len(argv):
        if took is not None and took[1] in (*COMMANDS, "doctor", "image"):
            _value_missing(*took)
        raise Shown(main_help(), status=2)
    name, rest = argv[i], argv[i + 1 :]
    if name == "image":
        return _parse_image(before, rest)
    if name == "doctor":
        return _parse_strict("doctor", before, rest, DOCTOR, DOCTOR_SUMMARY, "[CONFIG]")
    if name not in COMMANDS:
        if took is not None and took[1] in (*COMMANDS, "doctor", "image"):
            _value_missing(*took)
        raise UsageError(f"no such command {name!r}{_did_you_mean(name)}", fix="see `kasctl -h`")
    after: dict[str, Any] = {}
    args: list[str] = []
    j = 0
    while j < len(rest):
        if rest[j] == "--":
            return Parsed(name, before, after, tuple(args), tuple(rest[j + 1 :]))
        found = _match(KAS, rest, j)
        if found is None:
            args.append(rest[j])
            j += 1
            continue
        option, value, j = found
        if option is HELP:
            raise Shown(command_help(name))
        if option is VERSION:
            raise Shown(f"kasctl {__version__}")
        _store(after, option, value)
    return Parsed(name, before, after, tuple(args))


def _value_missing(name: str, value: str, metavar: str) -> NoReturn:
    """`--ssh-dir build kas.yml` (say, from an empty $VAR): the command became the value."""
    raise UsageError(
        f"option {name} requires an argument (it took the command {value!r} as its value)",
        fix=f"give it one before the command: {name} {metavar} {value} ...",
    )


def _parse_image(before: dict[str, Any], rest: Sequence[str]) -> Parsed:
    if not rest:
        raise Shown(image_help(), status=2)
    if rest[0] in HELP.names:
        raise Shown(image_help())
    if rest[0] != "build":
        raise UsageError(
            f"no such command 'image {rest[0]}'", fix="the image command is `kasctl image build`"
        )
    return _parse_strict("image build", before, rest[1:], IMAGE_BUILD, IMAGE_BUILD_SUMMARY)


def _parse_strict(
    name: str,
    before: dict[str, Any],
    rest: Sequence[str],
    options: Sequence[Option],
    summary: str,
    positional: str = "",
) -> Parsed:
    """A command of kasctl's own: only its options, and at most one positional argument."""
    after: dict[str, Any] = {}
    args: list[str] = []
    j = 0
    while j < len(rest):
        found = _match(options, rest, j)
        if found is None and (rest[j].startswith("-") or not positional or args):
            raise UsageError(
                f"kasctl {name} does not take {rest[j]!r}", fix=f"see `kasctl {name} -h`"
            )
        if found is None:
            args.append(rest[j])
            j += 1
            continue
        option, value, j = found
        if option is HELP:
            raise Shown(_help(f"kasctl {name} [OPTIONS] {positional}".rstrip(), summary, options))
        after[option.dest] = value
    return Parsed(name, before, after, tuple(args))


def _did_you_mean(name: str) -> str:
    import difflib  # only on this error's path

    close = difflib.get_close_matches(name, [*COMMANDS, "doctor", "image"], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(left) for left, _ in rows) + 2
    return [f"  {left:<{width}}{right}" for left, right in rows]


def _option_rows(options: Sequence[Option]) -> list[tuple[str, str]]:
    return [
        (", ".join(o.names) + (f" {o.metavar}" if o.metavar else ""), o.help)
        for o in options
        if not o.hidden
    ]


def _help(usage: str, summary: str, options: Sequence[Option], extra: str = "") -> str:
    import textwrap  # only when help is shown

    lines = [f"Usage: {usage}", ""]
    for paragraph in (summary, extra) if extra else (summary,):
        lines += [*textwrap.wrap(paragraph, 78, initial_indent="  ", subsequent_indent="  "), ""]
    lines.pop()
    lines += ["", "Options:", *_table(_option_rows(options))]
    return "\n".join(lines)


def main_help() -> str:
    commands = [(c.name, c.help) for c in COMMANDS.values()]
    commands += [("doctor", DOCTOR_SUMMARY.split(". ")[0] + "."), ("image", IMAGE_SUMMARY)]
    text = _help("kasctl [OPTIONS] COMMAND [ARGS]...", SUMMARY, GLOBAL)
    return "\n".join([text, "", "Commands:", *_table(commands)])


def command_help(name: str) -> str:
    return _help(
        f"kasctl {name} [OPTIONS] [KAS ARGS]... [-- BITBAKE ARGS]",
        COMMANDS[name].help,
        KAS,
        "Options not listed here go to kas, in the order given.",
    )


def image_help() -> str:
    text = _help("kasctl image COMMAND [OPTIONS]", IMAGE_SUMMARY, (HELP,))
    return "\n".join([text, "", "Commands:", *_table([("build", IMAGE_BUILD_SUMMARY)])])
