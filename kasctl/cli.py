"""The `kasctl` command line: kas-container's commands and options, and one error handler.

Data flows one way: options and config -> facts -> plan -> engine. This
module only wires them; each step lives in its own module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer

from kasctl import (
    __version__,
    clean,
    commands,
    config,
    credentials,
    detect,
    doctor,
    engines,
    image,
    orphans,
)
from kasctl.commands import COMMANDS, Command
from kasctl.config import BuildSystem, Config
from kasctl.credentials import CredentialOptions
from kasctl.errors import KasctlError, UsageError
from kasctl.facts import EngineFacts, HostFacts
from kasctl.plan import REPO, REPO2, Request, RunPlan, plan, worktree_gitfile_text

log = logging.getLogger("kasctl")

app = typer.Typer(
    name="kasctl",
    help="Run kas builds (OpenEmbedded, Isar privileged and rootless) in podman or docker, "
    "with the fewest privileges that work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
image_app = typer.Typer(help="Manage the kasctl build image.", no_args_is_help=True)
app.add_typer(image_app, name="image")

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

IsarRootless = Annotated[
    bool, typer.Option("--isar-rootless", help="Isar without root (user namespaces).")
]
IsarPrivileged = Annotated[
    bool, typer.Option("--isar-privileged", help="Isar with sudo in a privileged container.")
]
Isar = Annotated[
    bool, typer.Option("--isar", hidden=True, help="Deprecated: means --isar-privileged.")
]
Engine = Annotated[
    str | None,
    typer.Option("--engine", help="docker or podman (default: KAS_CONTAINER_ENGINE, or detected)."),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Print the exact engine command line; run nothing.")
]
Explain = Annotated[
    bool, typer.Option("--explain", help="With --dry-run: print why each privilege is granted.")
]
AsJson = Annotated[bool, typer.Option("--json", help="With --dry-run: the RunPlan as JSON.")]
RuntimeArgs = Annotated[
    str | None,
    typer.Option("--runtime-args", "--docker-args", help="Extra engine run arguments."),
]
NoProxy = Annotated[
    bool,
    typer.Option("--no-proxy-from-env", help="Do not pass the host's proxy variables."),
]
SshDir = Annotated[
    str | None, typer.Option("--ssh-dir", help="Share this ssh dir (read-only) as ~/.ssh.")
]
SshAgent = Annotated[
    bool, typer.Option("--ssh-agent", help="Share the ssh agent socket (SSH_AUTH_SOCK).")
]
AwsDir = Annotated[
    str | None, typer.Option("--aws-dir", help="Share this AWS config dir (read-only).")
]
GitCredStore = Annotated[
    str | None,
    typer.Option("--git-credential-store", help="Share this git credential store file."),
]
GitCredSocket = Annotated[
    str | None,
    typer.Option("--git-credential-socket", help="Share this git credential cache socket."),
]
Cmd = Annotated[
    str | None,
    typer.Option("-c", "--cmd", "--command", help="shell only: run this command, not a shell."),
]
RepoRw = Annotated[
    bool | None,
    typer.Option("--repo-rw/--repo-ro", help="Mount the config's repository writable or not."),
]


@dataclass(frozen=True)
class Options:
    """Options that may stand before the command (kas-container style) or after it."""

    isar_rootless: bool = False
    isar_privileged: bool = False
    engine: str | None = None
    dry_run: bool = False
    explain: bool = False
    as_json: bool = False
    runtime_args: str | None = None
    repo_rw: bool | None = None
    no_proxy_from_env: bool = False
    credentials: CredentialOptions = CredentialOptions()

    def merged(self, **later: object) -> Options:
        """Command-level options win over global ones; flags add up."""
        values = {
            k: v
            for k, v in later.items()
            if v is not None and (v is not False or k == "repo_rw")  # --repo-ro is False
        }
        return replace(self, **values)  # type: ignore[arg-type]

    def build_system_override(self) -> BuildSystem | None:
        if self.isar_rootless and self.isar_privileged:
            raise UsageError(
                "--isar-rootless and --isar-privileged exclude each other",
                fix="choose one (or leave both out and let the config's build_system decide)",
            )
        if self.isar_rootless:
            return BuildSystem.ISAR_ROOTLESS
        if self.isar_privileged:
            return BuildSystem.ISAR_PRIVILEGED
        return None


def _version(value: bool) -> None:
    if value:
        print(f"kasctl {__version__}")
        raise typer.Exit()


def _setup_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise UsageError(
            f"unknown log level {level!r}", fix="use debug, info, warning, error or critical"
        )
    logging.basicConfig(level=numeric, format="kasctl: %(levelname)s: %(message)s")


@app.callback()
def main_callback(
    ctx: typer.Context,
    isar_rootless: IsarRootless = False,
    isar_privileged: IsarPrivileged = False,
    isar: Isar = False,
    engine: Engine = None,
    dry_run: DryRun = False,
    runtime_args: RuntimeArgs = None,
    repo_rw: RepoRw = None,
    log_level: Annotated[
        str, typer.Option("-l", "--log-level", help="debug, info, warning, error.")
    ] = "warning",
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    _setup_logging(log_level)
    if isar:
        log.warning("--isar is deprecated and means --isar-privileged")
    ctx.obj = Options(
        isar_rootless=isar_rootless,
        isar_privileged=isar_privileged or isar,
        engine=engine,
        dry_run=dry_run,
        runtime_args=runtime_args,
        repo_rw=repo_rw,
    )


def _work_dir(env: os._Environ[str]) -> Path:
    raw = env.get("KAS_WORK_DIR") or os.getcwd()
    path = Path(os.path.abspath(raw))
    if not path.is_dir():
        raise UsageError(
            f"KAS_WORK_DIR {raw!r} does not exist or is not a directory",
            fix="create it, or unset KAS_WORK_DIR to use the current directory",
        )
    if any(c in str(path) for c in config.UNMOUNTABLE):
        raise UsageError(
            f"KAS_WORK_DIR {str(path)!r} has a comma or a line break in its path, "
            "which container engines cannot mount",
            fix="work in a directory with a plain path (a symlink to this one will do)",
        )
    return path


MANAGED_CREATED = ("KAS_BUILD_DIR", "DL_DIR", "SSTATE_DIR", "KAS_BUILDTOOLS_DIR")


def _check_managed_dirs(env: os._Environ[str]) -> None:
    """Before any engine: a managed dir that is a file cannot be created or mounted."""
    for var in MANAGED_CREATED:
        value = env.get(var)
        if value and os.path.exists(value) and not os.path.isdir(value):
            raise UsageError(
                f"{var} {value!r} exists and is not a directory",
                fix=f"point {var} at a directory (it is created when missing)",
            )


def _prepare_dirs(env: os._Environ[str]) -> None:
    """Create the managed dirs kas-container creates."""
    for var in MANAGED_CREATED:
        if env.get(var):
            try:
                Path(env[var]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create {var} {env[var]!r}: {exc.strerror}",
                    fix=f"create it yourself, or point {var} at a directory you may write",
                ) from None


def _check_ref_dir(env: os._Environ[str]) -> None:
    """KAS_REPO_REF_DIR holds reference clones: it must exist, it is never created."""
    ref = env.get("KAS_REPO_REF_DIR")
    if ref and not Path(ref).is_dir():
        raise UsageError(
            f"KAS_REPO_REF_DIR {ref!r} does not exist",
            fix="create it (it holds reference clones), or unset KAS_REPO_REF_DIR",
        )


def _load_configs(
    spec: Command, parsed: commands.KasArgs, work_dir: Path, override: BuildSystem | None
) -> tuple[Config | None, Config | None, tuple[str, ...]]:
    """The configs named on the command line (or menu's default), and kas's rewritten args."""
    named = parsed.configs()
    if spec.kconfig:
        kconfig = config.load_kconfig(named[0] if named else "Kconfig", override)
        path = kconfig.container_paths(REPO)[0]
        return kconfig, None, parsed.with_configs([path]) if named else (*parsed.args, path)
    if not named:
        return config.default_config(work_dir, override), None, parsed.args
    first = config.load(named[0], override)
    second = config.load(named[1], override) if len(named) > 1 else None
    rewritten = [":".join(first.container_paths(REPO))]
    if second is not None:
        rewritten.append(":".join(second.container_paths(REPO2)))
    return first, second, parsed.with_configs(rewritten)


def _clean_preview(command: str, work_dir: Path, env: os._Environ[str]) -> int:
    """`kasctl clean --dry-run`: the paths the real clean removes, listed on the host."""
    build_dir = env.get("KAS_BUILD_DIR") or str(work_dir / "build")
    report = clean.preview(command, build_dir, env, work_dir=str(work_dir), home=env.get("HOME"))
    for path in report.removed:
        print(path)
    for path, why in report.left:
        print(f"kasctl: would be left: {path}: {why}", file=sys.stderr)
    return 1 if report.left else 0


def run_kas(
    ctx: typer.Context,
    spec: Command,
    opts: Options,
    shell_cmd: str | None,
    *,
    clean_dry_run: bool = False,
) -> int:
    """Load config, gather facts, plan, then print or run. Returns the exit status."""
    parsed = commands.parse(spec, list(ctx.args))
    env = os.environ
    work_dir = _work_dir(env)
    _check_ref_dir(env)
    _check_managed_dirs(env)
    override = opts.build_system_override()
    cfg, cfg2, kas_args = _load_configs(spec, parsed, work_dir, override)
    # the user's own input, all checked before any engine is looked for
    shares = credentials.collect(opts.credentials, env)
    runtime_args = commands.split_runtime_args(opts.runtime_args)
    build_system = cfg.build_system if cfg else (override or BuildSystem.OPENEMBEDDED)
    if shell_cmd is not None:
        kas_args = ("-c", shell_cmd, *kas_args)
    if spec.name in clean.COMMANDS:
        build_dir = env.get("KAS_BUILD_DIR") or str(work_dir / "build")
        # refused on the host, before any container: /, $HOME, the work dir itself
        clean.check_dirs(spec.name, build_dir, env, str(work_dir), env.get("HOME"))
        if clean_dry_run:
            return _clean_preview(spec.name, work_dir, env)
    elif clean_dry_run:  # purge: kas itself lists what it would remove
        kas_args = (*kas_args, "--dry-run")

    host = detect.host_facts()
    if host.uid == 0 and host.sudo_uid is None and env.get("KAS_ALLOW_ROOT") != "yes":
        raise UsageError(
            "refusing to run as root: builds should run as a normal user",
            fix="run as your own user (or through sudo, which keeps your ids), "
            "or set KAS_ALLOW_ROOT=yes if you really mean it",
        )
    kind = detect.choose_engine(opts.engine, build_system, env)
    engine = detect.engine_facts(kind, env)

    req = Request(
        command=spec.name,
        build_system=build_system,
        work_dir=work_dir,
        image=image.default_image(env),
        name=f"kasctl-{uuid.uuid4().hex[:12]}",
        config=cfg,
        config2=cfg2,
        kas_args=kas_args,
        writes_repo=parsed.writes_repo(spec),
        cleans=spec.cleans,
        bitbake_args=parsed.bitbake,
        repo_rw=opts.repo_rw,
        runtime_args=runtime_args,
        env=dict(env),
        proxies_from_env=not opts.no_proxy_from_env,
        sudo_cmd=env.get("KAS_SUDO_CMD", "sudo"),
        pid=os.getpid(),
        shares=shares,
    )
    with tempfile.TemporaryDirectory(prefix="kasctl-") as scratch:
        worktree = config.worktree_of(cfg.repo_dir) if cfg else None
        if worktree is not None:
            gitfile = Path(scratch) / "dotgit"
            gitfile.write_text(worktree_gitfile_text(worktree))
            gitfile.chmod(0o644)
            req = replace(req, worktree=worktree, worktree_gitfile=str(gitfile))
        return _plan_and_run(req, host, engine, opts, spec, cfg, work_dir)


def _plan_and_run(
    req: Request,
    host: HostFacts,
    engine: EngineFacts,
    opts: Options,
    spec: Command,
    cfg: Config | None,
    work_dir: Path,
) -> int:
    env = os.environ
    kind = engine.kind
    run_plan = plan(req, host, engine)
    doctor.preflight(
        doctor.system_facts(host.home, full=False), host, run_plan.mode, req.build_system
    )
    for warning in run_plan.warnings:
        log.warning("%s", warning)
    argv = engines.render(run_plan)
    if opts.dry_run:
        if opts.as_json:
            print(json.dumps({"plan": run_plan.to_json(), "argv": argv}, indent=2))
        else:
            print(engines.show(argv))
            if opts.explain:
                for grant in run_plan.grants:
                    print(f"# {grant.flag}: {grant.reason}")
        return 0
    _prepare_dirs(env)
    log.debug("running: %s", engines.show(argv))
    engine_cmd = [*run_plan.executor, run_plan.binary]
    if not image.image_exists(engine_cmd, run_plan.image):
        if env.get("KAS_CONTAINER_IMAGE"):
            raise UsageError(
                f"image {run_plan.image} (KAS_CONTAINER_IMAGE) is not in {kind}'s store",
                fix="load or build it first",
            )
        print(f"kasctl: image {run_plan.image} is missing; building it now", file=sys.stderr)
        image.build(engine_cmd, run_plan.image)
    _remove_leftovers(run_plan, host, work_dir)
    status = engines.run(run_plan)
    if status == 0 and spec.kconfig and cfg is not None:
        config.remember_source_dir(work_dir, cfg.repo_dir)
    return status


def _remove_leftovers(run_plan: RunPlan, host: HostFacts, work_dir: Path) -> None:
    """Containers an earlier, killed kasctl left in this work dir: say so and remove them."""
    found = engines.labelled(run_plan.executor, run_plan.binary, run_plan.mode.kind)
    leftover, foreign = orphans.stale(found, str(work_dir), host.hostname, orphans.pid_alive)
    for c in leftover:
        print(
            f"kasctl: removing container {c.name}, left in this work dir by kasctl "
            f"(pid {c.pid}) which is no longer running",
            file=sys.stderr,
        )
        engines.remove(run_plan.executor, run_plan.binary, c.name)
    for c in foreign:
        log.warning(
            "container %s of a kasctl on host %s uses this work dir too; left alone",
            c.name,
            c.host,
        )


def _kas_command(spec: Command) -> None:
    """Register one kas command; all share the same options and flow."""

    def command(
        ctx: typer.Context,
        isar_rootless: IsarRootless = False,
        isar_privileged: IsarPrivileged = False,
        isar: Isar = False,
        engine: Engine = None,
        dry_run: DryRun = False,
        explain: Explain = False,
        as_json: AsJson = False,
        runtime_args: RuntimeArgs = None,
        repo_rw: RepoRw = None,
        no_proxy: NoProxy = False,
        ssh_dir: SshDir = None,
        ssh_agent: SshAgent = False,
        aws_dir: AwsDir = None,
        git_credential_store: GitCredStore = None,
        git_credential_socket: GitCredSocket = None,
        cmd: Cmd = None,
    ) -> None:
        opts = (ctx.obj or Options()).merged(
            isar_rootless=isar_rootless,
            isar_privileged=isar_privileged or isar,
            engine=engine,
            dry_run=dry_run,
            explain=explain,
            as_json=as_json,
            runtime_args=runtime_args,
            repo_rw=repo_rw,
            no_proxy_from_env=no_proxy,
            credentials=CredentialOptions(
                ssh_dir=ssh_dir,
                ssh_agent=ssh_agent,
                aws_dir=aws_dir,
                git_credential_store=git_credential_store,
                git_credential_socket=git_credential_socket,
            ),
        )
        if cmd is not None and spec.name != "shell":
            raise UsageError(
                f"-c/--cmd is only for `kasctl shell`, not `kasctl {spec.name}`",
                fix="run one command with `kasctl shell -c CMD CONFIG`",
            )
        if spec.cleans and dry_run and not as_json:
            # kas's meaning, as kas-container users know it: list what would go
            return_code = run_kas(ctx, spec, replace(opts, dry_run=False), cmd, clean_dry_run=True)
            raise typer.Exit(return_code)
        raise typer.Exit(run_kas(ctx, spec, opts, cmd))

    command.__doc__ = spec.help
    app.command(spec.name, context_settings=PASS_THROUGH)(command)


for _spec in COMMANDS.values():
    _kas_command(_spec)


@app.command("doctor")
def doctor_command(
    ctx: typer.Context,
    config_arg: Annotated[
        str | None,
        typer.Argument(metavar="[CONFIG]", help="The kas config to check for (its build_system)."),
    ] = None,
    isar_rootless: IsarRootless = False,
    isar_privileged: IsarPrivileged = False,
    engine: Engine = None,
    as_json: Annotated[bool, typer.Option("--json", help="The checks as JSON.")] = False,
) -> None:
    """Check this host for a build: one line per check, with the fix. Exit 0 when it can work."""
    opts = (ctx.obj or Options()).merged(
        isar_rootless=isar_rootless, isar_privileged=isar_privileged, engine=engine
    )
    override = opts.build_system_override()
    if config_arg:
        build_system = config.load(config_arg, override).build_system
    else:
        build_system = override or BuildSystem.ISAR_ROOTLESS
    env = os.environ
    host = detect.host_facts()
    system = doctor.system_facts(host.home)
    image_name = image.default_image(env)
    probes = {k: doctor.probe_engine(k, env, image_name) for k in ("podman", "docker")}
    found = [k for k, p in probes.items() if p.binary]
    kind = detect.choose_engine(opts.engine, build_system, env) if found or opts.engine else None
    checks = doctor.judge(system, host, probes[kind], build_system, image_name) if kind else []
    others = [
        doctor.Check(
            f"{p.kind} (not chosen)",
            "ok" if p.reachable else "warn",
            f"{p.version}, {p.mode.value}" if p.mode is not None else f"not usable: {p.error}",
        )
        for k, p in probes.items()
        if k != kind and p.binary
    ]
    if kind is None:
        checks = [
            doctor.Check(
                "engine", "fail", "neither podman nor docker is installed", "install podman"
            )
        ]
    failed = any(c.status == "fail" for c in checks)
    chosen = probes[kind].mode if kind else None
    if as_json:
        print(
            doctor.to_json(
                [*checks, *others],
                engine=kind,
                mode=chosen.value if chosen is not None else None,
                build_system=build_system.value,
                ok=not failed,
            )
        )
    else:
        print(doctor.render([*checks, *others]))
        print("kasctl doctor: " + ("this host cannot build as chosen" if failed else "ready"))
    raise typer.Exit(1 if failed else 0)


@image_app.command("build")
def image_build(
    ctx: typer.Context,
    engine: Engine = None,
    bootstrap_base: Annotated[
        bool,
        typer.Option("--bootstrap-base", help="Make the base image with mmdebstrap, never pull."),
    ] = False,
) -> None:
    """Build the kasctl image (kas, Isar's host tools, kasctl's entrypoint)."""
    opts = (ctx.obj or Options()).merged(engine=engine)
    kind = detect.choose_engine(opts.engine, BuildSystem.ISAR_ROOTLESS, os.environ)
    binary = detect.engine_facts(kind, os.environ).binary
    image.build(
        [binary], image.default_image(os.environ), bootstrap=True if bootstrap_base else None
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: the single place that turns errors into messages and exit codes.

    Usage errors of the command line itself are reported by typer (exit 2);
    everything kasctl raises is a KasctlError, printed without a traceback.
    """
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:  # the fast path: no CLI framework to import
        print(f"kasctl {__version__}")
        sys.exit(0)
    try:
        app(args=commands.mark_bitbake_args(args), prog_name="kasctl")
    except KasctlError as exc:
        print(exc.render(), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
