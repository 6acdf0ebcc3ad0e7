"""The `kasctl` command line: kas-container's commands and options, and one error handler.

Data flows one way: options and config -> facts -> plan -> engine. This
module only wires them; each step lives in its own module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer

from kasctl import __version__, config, detect, engines, image
from kasctl.config import BuildSystem
from kasctl.errors import KasctlError, UsageError
from kasctl.plan import Request, plan

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

    def merged(self, **later: object) -> Options:
        """Command-level options win over global ones; flags add up."""
        values = {k: v for k, v in later.items() if v not in (None, False)}
        return replace(self, **values)  # type: ignore[arg-type]

    def build_system_override(self) -> BuildSystem | None:
        if self.isar_rootless and self.isar_privileged:
            raise UsageError("--isar-rootless and --isar-privileged exclude each other")
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


def _split_args(args: list[str]) -> tuple[str | None, list[str], list[str]]:
    """ctx.args -> (CONFIG, kas options, bitbake args after --)."""
    bitbake: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, bitbake = args[:cut], args[cut + 1 :]
    for refused in ("-E", "--preserve-env"):
        if refused in args:
            raise UsageError(
                f"{refused} is not supported: the container's environment is built explicitly",
                fix="pass the variables you need (kasctl forwards KAS_*, proxies, TERM, ...)",
            )
    positional = [a for a in args if not a.startswith("-")]
    cfg = (
        positional[-1]
        if positional and positional[-1].endswith((".yml", ".yaml", ".json"))
        else None
    )
    if cfg is None:
        cfg = next((a for a in args if ":" in a or a.endswith((".yml", ".yaml", ".json"))), None)
    rest = list(args)
    if cfg is not None:
        rest.remove(cfg)
    return cfg, rest, bitbake


def _work_dir(env: os._Environ[str]) -> Path:
    raw = env.get("KAS_WORK_DIR") or os.getcwd()
    path = Path(os.path.abspath(raw))
    if not path.is_dir():
        raise UsageError(
            f"KAS_WORK_DIR {raw!r} does not exist or is not a directory",
            fix="create it, or unset KAS_WORK_DIR to use the current directory",
        )
    return path


def run_kas(ctx: typer.Context, command: str, opts: Options, kas_args: list[str]) -> int:
    """Load config, gather facts, plan, then print or run. Returns the exit status."""
    cfg_arg, extra, bitbake = _split_args(list(ctx.args))
    env = os.environ
    work_dir = _work_dir(env)
    cfg_arg = cfg_arg or config.default_config(work_dir)
    override = opts.build_system_override()
    cfg = config.load(cfg_arg, override) if cfg_arg else None
    build_system = cfg.build_system if cfg else (override or BuildSystem.OPENEMBEDDED)

    host = detect.host_facts()
    if host.uid == 0 and host.sudo_uid is None and env.get("KAS_ALLOW_ROOT") != "yes":
        raise UsageError(
            "refusing to run as root: builds should run as a normal user",
            fix="run as your own user (or through sudo, which keeps your ids), "
            "or set KAS_ALLOW_ROOT=yes if you really mean it",
        )
    kind = detect.choose_engine(opts.engine, build_system, env)
    engine = detect.engine_facts(kind, env)
    import shlex

    req = Request(
        command=command,
        build_system=build_system,
        work_dir=work_dir,
        image=image.default_image(env),
        name=f"kasctl-{uuid.uuid4().hex[:12]}",
        config=cfg,
        kas_args=tuple(kas_args + extra),
        bitbake_args=tuple(bitbake),
        repo_rw=opts.repo_rw,
        runtime_args=tuple(shlex.split(opts.runtime_args or "")),
        env=dict(env),
        sudo_cmd=env.get("KAS_SUDO_CMD", "sudo"),
        pid=os.getpid(),
    )
    run_plan = plan(req, host, engine)
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
    log.debug("running: %s", engines.show(argv))
    if not image.image_exists(engine.binary, run_plan.image):
        if run_plan.image != image.default_image({}) and "KAS_CONTAINER_IMAGE" in env:
            raise UsageError(
                f"image {run_plan.image} (KAS_CONTAINER_IMAGE) is not in {kind}'s store",
                fix="load or build it first",
            )
        print(f"kasctl: image {run_plan.image} is missing; building it now", file=sys.stderr)
        image.build(engine.binary, run_plan.image)
    return engines.run(run_plan)


def _kas_command(name: str, help_text: str, *, with_cmd: bool = False) -> None:
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
        )
        if cmd is not None and not with_cmd:
            raise UsageError(f"-c/--cmd is only for `kasctl shell`, not `kasctl {name}`")
        kas_args = ["-c", cmd] if cmd is not None else []
        raise typer.Exit(run_kas(ctx, name, opts, kas_args))

    command.__doc__ = help_text
    app.command(name, context_settings=PASS_THROUGH)(command)


_kas_command("build", "Check out the repos and run bitbake. [CONFIG] [-- bitbake args]")
_kas_command(
    "shell", "Open a shell in the build environment (-c CMD runs one command).", with_cmd=True
)
_kas_command("clean", "Remove the build's tmp dirs (rootless: without sudo).")


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
    image.build(binary, image.default_image(os.environ), bootstrap=True if bootstrap_base else None)


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
        app(args=args, prog_name="kasctl")
    except KasctlError as exc:
        print(exc.render(), file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
