"""kasctl's commands and options, each declared once: the table everything reads.

One `Command` per command (kas's and kasctl's own) and one `Option` per
option. The parser and the help (kasctl.input.cmdline), the dispatch
(kasctl.cli), kas's arguments (kasctl.input.commands), the rootless cleaner
(kasctl.inside.clean), the shell completion (kasctl.input.completion) and the image's
entrypoint all read these entries; nothing else declares a command or an
option (tests/unit/test_spec.py checks that).

Import-free on purpose (not even dataclasses, which alone costs more than
the rest of the entrypoint's imports): the image's entrypoint imports this
module at every container start.
"""

from __future__ import annotations

#: Where a command runs: in the container, as `kas COMMAND ...` ...
KAS = "kas"
#: ... or on the host, as kasctl's own (doctor, image build, completion).
OWN = "kasctl"

#: What a command's positional arguments complete to (the shell completion).
CONFIGS = "configs"  # kas config files: *.yml, *.yaml, *.json
FILES = "files"
DIRS = "dirs"
NOTHING = "nothing"


class Command:
    """One command: how it is written, what it means and how kasctl carries it out."""

    __slots__ = (
        "name",
        "help",
        "runs",
        "args",
        "arg_kind",
        "choices",
        "configs",
        "required",
        "needs",
        "example",
        "cmd",
        "cmd_value",
        "writes_repo",
        "cleans",
        "cleaner",
        "kconfig",
    )

    def __init__(
        self,
        name: str,
        help: str,
        *,
        runs: str = KAS,
        args: str = "[KASFILE]",
        arg_kind: str = CONFIGS,
        choices: tuple[str, ...] = (),
        configs: int = 1,
        required: int = 0,
        needs: str = "",
        example: str = "",
        cmd: str | None = None,
        cmd_value: str = "CMD",
        writes_repo: bool = False,
        cleans: bool = False,
        cleaner: bool = False,
        kconfig: bool = False,
    ) -> None:
        #: As typed: "build", or a group and its subcommand ("image build").
        self.name = name
        self.help = help
        #: KAS (in the container, via kas) or OWN (kasctl's own, on the host).
        self.runs = runs
        #: Its positional arguments in the usage text, and what they complete to.
        self.args = args
        self.arg_kind = arg_kind
        #: The one positional argument's only values (completion's shells).
        self.choices = choices
        #: kas commands: how many leading positional arguments are config files (diff: two).
        self.configs = configs
        #: At least this many positional arguments, else "kasctl NAME needs NEEDS" (fix: EXAMPLE).
        self.required = required
        self.needs = needs
        self.example = example
        #: What -c/--cmd means for this command (None: it takes no -c), and its value's name.
        self.cmd = cmd
        self.cmd_value = cmd_value
        #: The command writes into the config's repository (mounted read-write).
        self.writes_repo = writes_repo
        #: A clean command: may run without a config, so the build system is passed.
        self.cleans = cleans
        #: In isar-rootless, kasctl's own cleaner (kasctl.inside.clean) does it, not kas.
        self.cleaner = cleaner
        #: The positional argument is a Kconfig file, not a kas config (menu).
        self.kconfig = kconfig

    def __repr__(self) -> str:
        return f"Command({self.name!r})"


#: Groups of commands ("image build"), with their own help.
GROUPS = {"image": "Manage the kasctl build image."}

COMMAND_TABLE: tuple[Command, ...] = (
    Command("build", "Check out the repos and run bitbake. [CONFIG] [-- bitbake args]",
            cmd="the bitbake task", cmd_value="TASK"),
    Command("checkout", "Check out the repos and set up the build dir, without building."),
    Command("dump", "Print the flattened config (--inplace rewrites it in the repo)."),
    Command("lock", "Pin the repos' revisions in a lock file next to the config.",
            writes_repo=True),
    Command("shell", "Open a shell in the build environment (-c CMD runs one command).",
            writes_repo=True, cmd="a command to run instead of a shell"),
    Command("diff", "Compare two configs: CONFIG1 CONFIG2.", args="KASFILE1 KASFILE2",
            configs=2, required=2, needs="two configs", example="A.yml B.yml"),
    Command("for-all-repos", "Run a command in every repo: CONFIG COMMAND.",
            args="KASFILE COMMAND", required=2, needs="a config and a command",
            example="kas.yml 'git status'"),
    Command("menu", "Configure the build from a Kconfig menu: [KCONFIG].", args="[KCONFIG]",
            arg_kind=FILES, kconfig=True),
    Command("clean", "Remove the build's tmp dirs (rootless: without sudo).", cleans=True,
            cleaner=True),
    Command("cleansstate", "clean, and empty the sstate cache.", cleans=True, cleaner=True),
    Command("cleanall", "cleansstate, and empty the downloads.", cleans=True, cleaner=True),
    Command("purge", "Remove everything kas manages for this config.", cleans=True),
    Command("doctor", "Check this host for a build: one line per check, with the fix. Exit 0 "
            "when it can work. CONFIG, if given, chooses the build system to check for.",
            runs=OWN, args="[CONFIG]"),
    Command("image build", "Build the kasctl image (kas, Isar's host tools, kasctl's "
            "entrypoint).", runs=OWN, args="", arg_kind=NOTHING),
    Command("completion", "Print a completion script for this shell (see the README).",
            runs=OWN, args="SHELL", arg_kind=NOTHING, choices=("bash", "zsh", "fish"),
            required=1, needs="a shell", example="bash"),
)  # fmt: skip

COMMAND_BY_NAME = {c.name: c for c in COMMAND_TABLE}
#: kas's commands, run in the container: the only ones the entrypoint accepts.
KAS_COMMANDS = tuple(c.name for c in COMMAND_TABLE if c.runs == KAS)
#: The commands kasctl's own cleaner does in isar-rootless.
CLEANER_COMMANDS = tuple(c.name for c in COMMAND_TABLE if c.cleaner)
#: What may stand as the command word: each command, a group for its subcommands.
COMMAND_WORDS = tuple(dict.fromkeys(c.name.split()[0] for c in COMMAND_TABLE))


class Option:
    """One of kasctl's options: a flag unless it has a metavar (then it takes a value)."""

    __slots__ = (
        "names",
        "dest",
        "help",
        "metavar",
        "const",
        "default",
        "before",
        "commands",
        "values",
        "helps",
        "hidden",
        "deprecated",
    )

    def __init__(
        self,
        *names: str,
        dest: str,
        help: str,
        metavar: str | None = None,
        const: object = True,
        default: object = ...,
        before: bool = True,
        commands: tuple[str, ...] = KAS_COMMANDS,
        values: tuple[str, ...] = (),
        helps: dict[str, str] | None = None,
        hidden: bool = False,
        deprecated: str | None = None,
    ) -> None:
        self.names = names
        #: The field of kasctl.cli.Options it fills.
        self.dest = dest
        #: Its help (where `helps` has none for the command); "" hides it there.
        self.help = help
        self.metavar = metavar
        #: What a flag stores.
        self.const = const
        #: Its field's value when not given: a flag's is False, a valued option's None.
        self.default = default if default is not ... else (None if metavar else False)
        #: Accepted before the command (kas-container style) ...
        self.before = before
        #: ... and after these commands (where it wins over the one before).
        self.commands = commands
        #: Its known values (completion and help).
        self.values = values
        #: Help for one command, in place of `help`.
        self.helps = helps or {}
        self.hidden = hidden
        #: Said as a warning when it is used.
        self.deprecated = deprecated

    def help_for(self, command: str | None) -> str:
        """Its help where it stands (None: before the command); "" when not shown there."""
        if self.hidden:
            return ""
        return self.helps.get(command, self.help) if command else self.help

    def __repr__(self) -> str:
        return f"Option({self.names[0]!r})"


#: -l's values: kas's choices, which kas-container passes on (kas refuses any other).
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ENGINES = ("docker", "podman")
_ISAR = (*KAS_COMMANDS, "doctor")

ISAR_ROOTLESS = Option(
    "--isar-rootless",
    dest="isar_rootless",
    help="Isar without root (user namespaces).",
    commands=_ISAR,
)
ISAR_PRIVILEGED = Option(
    "--isar-privileged",
    dest="isar_privileged",
    help="Isar with sudo in a privileged container.",
    commands=_ISAR,
)
ISAR = Option(
    "--isar",
    dest="isar_privileged",
    help="Deprecated: means --isar-privileged.",
    hidden=True,
    deprecated="--isar is deprecated and means --isar-privileged",
)
ENGINE = Option(
    "--engine",
    dest="engine",
    metavar="ENGINE",
    values=ENGINES,
    help="docker or podman (default: KAS_CONTAINER_ENGINE, or detected).",
    commands=(*KAS_COMMANDS, "doctor", "image build"),
)
DRY_RUN = Option(
    "--dry-run", dest="dry_run", help="Print the exact engine command line; run nothing."
)
EXPLAIN = Option(
    "--explain",
    dest="explain",
    before=False,
    help="With --dry-run: print why each privilege is granted.",
)
JSON = Option(
    "--json",
    dest="as_json",
    before=False,
    help="With --dry-run: the RunPlan as JSON.",
    commands=(*KAS_COMMANDS, "doctor"),
    helps={"doctor": "The checks as JSON."},
)
RUNTIME_ARGS = Option(
    "--runtime-args",
    "--docker-args",
    dest="runtime_args",
    metavar="ARGS",
    help="Extra engine run arguments (repeated: they add up).",
)
#: Neither given: the command decides (kasctl.input.commands.KasArgs.writes_repo).
REPO_RW = Option(
    "--repo-rw", dest="repo_rw", default=None, help="Mount the config's repository writable."
)
REPO_RO = Option(
    "--repo-ro",
    dest="repo_rw",
    const=False,
    default=None,
    help="Mount the config's repository read-only.",
)
KVM = Option(
    "--kvm",
    dest="kvm",
    help="Pass /dev/kvm into the container and give the builder access to it.",
)
NO_PROXY_FROM_ENV = Option(
    "--no-proxy-from-env", dest="no_proxy_from_env", help="Do not pass the host's proxy variables."
)
SSH_DIR = Option(
    "--ssh-dir", dest="ssh_dir", metavar="DIR", help="Share this ssh dir (read-only) as ~/.ssh."
)
SSH_AGENT = Option(
    "--ssh-agent", dest="ssh_agent", help="Share the ssh agent socket (SSH_AUTH_SOCK)."
)
AWS_DIR = Option(
    "--aws-dir", dest="aws_dir", metavar="DIR", help="Share this AWS config dir (read-only)."
)
GIT_CREDENTIAL_STORE = Option(
    "--git-credential-store",
    dest="git_credential_store",
    metavar="FILE",
    help="Share this git credential store file.",
)
GIT_CREDENTIAL_SOCKET = Option(
    "--git-credential-socket",
    dest="git_credential_socket",
    metavar="SOCKET",
    help="Share this git credential cache socket.",
)
LOG_LEVEL = Option(
    "-l",
    "--log-level",
    dest="log_level",
    metavar="LEVEL",
    values=LOG_LEVELS,
    help="Log level of kasctl and kas: " + ", ".join(LOG_LEVELS) + " (default: warning).",
)
CI_LOG = Option(
    "--ci-log",
    dest="ci_log",
    metavar="STYLE",
    values=("none", "gitlab", "github"),
    help="Fold kasctl's phases for a CI page: none, gitlab or github "
    "(default: from GITLAB_CI / GITHUB_ACTIONS, never at a terminal).",
)
JUNIT = Option(
    "--junit",
    dest="junit",
    metavar="FILE",
    before=False,
    commands=("build",),
    help="Write a JUnit XML report of the bitbake tasks that ran (failures with their log's tail).",
)
NO_WAIT = Option(
    "--no-wait",
    dest="no_wait",
    help="Fail at once (exit 4) when another kasctl run uses the build dir, instead of waiting.",
)
EMIT = Option(
    "--emit",
    dest="emit",
    metavar="FORMAT",
    before=False,
    commands=("build",),
    values=("kubernetes",),
    help="Print the build as Kubernetes documents (one Job per CONFIG); run nothing.",
)
CLAIM_DOWNLOADS = Option(
    "--claim-downloads",
    dest="claim_downloads",
    metavar="NAME",
    before=False,
    commands=("build",),
    help="With --emit kubernetes: the claim for DL_DIR (default kasctl-downloads).",
)
CLAIM_SSTATE = Option(
    "--claim-sstate",
    dest="claim_sstate",
    metavar="NAME",
    before=False,
    commands=("build",),
    help="With --emit kubernetes: the claim for SSTATE_DIR (default kasctl-sstate).",
)
STORAGE_CLASS = Option(
    "--storage-class",
    dest="storage_class",
    metavar="NAME",
    before=False,
    commands=("build",),
    help="With --emit kubernetes: the storage class of the caches' claims.",
)
VERSION = Option("--version", dest="version", help="Show the version and exit.")
CMD = Option(
    "-c",
    "--cmd",
    "--command",
    dest="cmd",
    metavar="CMD",
    before=False,
    # parsed after every kas command (kasctl refuses it where it means nothing),
    # shown only where the command says what it means
    help="",
    helps={c.name: c.cmd[0].upper() + c.cmd[1:] + "." for c in COMMAND_TABLE if c.cmd},
)
BOOTSTRAP_BASE = Option(
    "--bootstrap-base",
    dest="bootstrap_base",
    before=False,
    commands=("image build",),
    help="Make the base image with mmdebstrap, never pull.",
)
HELP = Option(
    "-h",
    "--help",
    dest="help",
    help="Show this help and exit.",
    commands=tuple(c.name for c in COMMAND_TABLE),
)

#: Every option, in the order help lists them.
OPTION_TABLE: tuple[Option, ...] = (
    ISAR_ROOTLESS,
    ISAR_PRIVILEGED,
    ISAR,
    ENGINE,
    DRY_RUN,
    EXPLAIN,
    JSON,
    RUNTIME_ARGS,
    REPO_RW,
    REPO_RO,
    KVM,
    NO_PROXY_FROM_ENV,
    SSH_DIR,
    SSH_AGENT,
    AWS_DIR,
    GIT_CREDENTIAL_STORE,
    GIT_CREDENTIAL_SOCKET,
    LOG_LEVEL,
    CI_LOG,
    JUNIT,
    NO_WAIT,
    EMIT,
    CLAIM_DOWNLOADS,
    CLAIM_SSTATE,
    STORAGE_CLASS,
    VERSION,
    CMD,
    BOOTSTRAP_BASE,
    HELP,
)

#: The options accepted before the command.
BEFORE: tuple[Option, ...] = tuple(o for o in OPTION_TABLE if o.before)
#: Each field an option fills, with its value when the option is not given.
DEFAULTS = {o.dest: o.default for o in OPTION_TABLE}


def options_after(command: str) -> tuple[Option, ...]:
    """The options accepted after this command."""
    return tuple(o for o in OPTION_TABLE if command in o.commands)
