"""The `kasctl` command line: kas-container's commands and options, and one error handler.

Data flows one way: options and config -> facts -> plan -> engine. This
module only wires them; each step lives in its own module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from kasctl import config
from kasctl.config import BuildSystem, Config
from kasctl.decide import credentials
from kasctl.decide.credentials import CredentialOptions
from kasctl.decide.plan import REPO, REPO2, Request, RunPlan, plan, worktree_gitfile_text
from kasctl.engine import engines, image, orphans
from kasctl.errors import KasctlError, UsageError
from kasctl.host import detect
from kasctl.host.facts import EngineFacts, HostFacts
from kasctl.input import cmdline, commands
from kasctl.input.commands import COMMANDS, Command
from kasctl.inside import clean
from kasctl.report import doctor
from kasctl.spec import COMMAND_BY_NAME, DEFAULTS, KAS

log = logging.getLogger("kasctl")


class Options:
    """kasctl's options as given: one attribute per field the option table fills.

    Built from the parsed values (cmdline.Parsed.options(): the command's own
    win); an option not given has its table default. The attributes are
    exactly kasctl.spec's dests, nothing is declared twice: an unknown name
    is an AttributeError.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        unknown = sorted(set(values or {}) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"not an option's field: {', '.join(unknown)}")
        self._values = dict(values or {})

    @classmethod
    def given(cls, values: Mapping[str, Any]) -> Options:
        """From the options as given (cmdline.Parsed.options(): the command's own win)."""
        return cls(values)

    def __getattr__(self, dest: str) -> Any:
        if dest not in DEFAULTS:
            raise AttributeError(f"kasctl has no option filling {dest!r}")
        return self._values.get(dest, DEFAULTS[dest])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Options) and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Options({self._values!r})"

    def replaced(self, **changes: Any) -> Options:
        return Options({**self._values, **changes})

    @property
    def credentials(self) -> CredentialOptions:
        """The credential options (their fields are the table's dests of the same names)."""
        names = (f.name for f in fields(CredentialOptions))
        return CredentialOptions(**{name: getattr(self, name) for name in names})

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


def _setup_logging(level: str) -> None:
    """-l takes kas's choices, exactly (as kas-container, whose kas refuses `DEBUG` or `warn`)."""
    if level not in cmdline.LOG_LEVELS:
        raise UsageError(
            f"unknown log level {level!r}", fix="use debug, info, warning, error or critical"
        )
    logging.basicConfig(level=level.upper(), format="kasctl: %(levelname)s: %(message)s")


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
    for var in (*MANAGED_CREATED, "KAS_REPO_REF_DIR"):
        value = env.get(var)
        if value and any(c in value for c in config.UNMOUNTABLE):
            raise UsageError(
                f"{var} {value!r} has a comma or a line break in its path, "
                "which container engines cannot mount",
                fix=f"point {var} at a directory with a plain path",
            )
        if (
            value
            and var != "KAS_REPO_REF_DIR"
            and os.path.exists(value)
            and not os.path.isdir(value)
        ):
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
    given: cmdline.Parsed,
    spec: Command,
    opts: Options,
    kas_cmd: str | None,
    *,
    clean_dry_run: bool = False,
) -> int:
    """Load config, gather facts, plan, then print or run. Returns the exit status."""
    parsed = commands.parse(spec, list(given.args), list(given.bitbake))
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
    if kas_cmd is not None:
        kas_args = ("-c", kas_cmd, *kas_args)
    if spec.cleaner:
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
        name=f"kasctl-{os.urandom(6).hex()}",
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
        kvm=bool(opts.kvm),
        kas_log_level=opts.log_level,
    )
    worktree = config.worktree_of(cfg.repo_dir) if cfg else None
    if worktree is None:
        return _plan_and_run(req, host, engine, opts, spec, cfg, work_dir)
    import tempfile  # only a git worktree needs a scratch dir (for its .git file)

    with tempfile.TemporaryDirectory(prefix="kasctl-") as scratch:
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
    doctor.preflight(host, run_plan.mode, req.build_system)
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
    engine_cmd = [*run_plan.executor, run_plan.binary]
    labels = image.image_labels(engine_cmd, run_plan.image)
    if labels is None:
        if env.get("KAS_CONTAINER_IMAGE"):
            raise UsageError(
                f"image {run_plan.image} (KAS_CONTAINER_IMAGE) is not in {kind}'s store",
                fix="load or build it first",
            )
        print(f"kasctl: image {run_plan.image} is missing; building it now", file=sys.stderr)
        image.build(engine_cmd, run_plan.image)
    elif req.build_system is BuildSystem.ISAR_ROOTLESS and not image.is_kasctls(labels):
        raise image.foreign_image_error(run_plan.image, env)
    _prepare_dirs(env)  # only now: a refused run leaves nothing behind
    _remove_leftovers(run_plan, host, work_dir)
    started = time.time()
    status = engines.run(run_plan)
    if status != 0 and spec.name == "build":
        from kasctl.report import failures  # only a failed build reads its logs

        build_dir = Path(env.get("KAS_BUILD_DIR") or work_dir / "build")
        failures.report(build_dir, run_plan.mounts, started)
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


def _kas(given: cmdline.Parsed, opts: Options) -> int:
    """One of kas's commands: all share the same options and flow."""
    spec = COMMANDS[given.command]
    cmd = opts.cmd
    if cmd is not None and spec.cmd is None:
        takers = [c for c in COMMANDS.values() if c.cmd]
        raise UsageError(
            "-c/--cmd is kas's option of "
            + " and ".join(f"`{c.name}` ({c.cmd})" for c in takers)
            + f", not of `{spec.name}`",
            fix=", or ".join(f"`kasctl {c.name} -c {c.cmd_value} CONFIG`" for c in takers),
        )
    if spec.cleans and given.after.get("dry_run") and not opts.as_json:
        # kas's meaning, as kas-container users know it: list what would go
        return run_kas(given, spec, opts.replaced(dry_run=False), cmd, clean_dry_run=True)
    return run_kas(given, spec, opts, cmd)


def _doctor(given: cmdline.Parsed, opts: Options) -> int:
    """Check this host for a build: one line per check, with the fix. 0 when it can work."""
    override = opts.build_system_override()
    if given.args:
        build_system = config.load(given.args[0], override).build_system
    else:
        build_system = override or BuildSystem.ISAR_ROOTLESS
    env = os.environ
    host = detect.host_facts(full=True)
    image_name = image.default_image(env)
    probes = {k: detect.probe_engine(k, env, image_name) for k in ("podman", "docker")}
    found = [k for k, p in probes.items() if p.binary]
    kind = detect.choose_engine(opts.engine, build_system, env) if found or opts.engine else None
    checks = doctor.judge(host, probes[kind], build_system, image_name) if kind else []
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
    if opts.as_json:
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
    return 1 if failed else 0


def _image_build(given: cmdline.Parsed, opts: Options) -> int:
    """Build the kasctl image (kas, Isar's host tools, kasctl's entrypoint)."""
    kind = detect.choose_engine(opts.engine, BuildSystem.ISAR_ROOTLESS, os.environ)
    binary = detect.engine_facts(kind, os.environ).binary
    bootstrap = True if given.after.get("bootstrap_base") else None
    image.build([binary], image.default_image(os.environ), bootstrap=bootstrap)
    return 0


def _completion(given: cmdline.Parsed, opts: Options) -> int:
    """Print the completion script for the shell named (its choices checked by the parser)."""
    from kasctl.input import completion  # only this command generates one

    print(completion.script(given.args[0]), end="")
    return 0


#: kasctl's own commands (kasctl.spec's OWN ones), each carried out here.
OWN_COMMANDS = {"doctor": _doctor, "image build": _image_build, "completion": _completion}


def run(given: cmdline.Parsed) -> int:
    """Carry out a parsed command line; returns the exit status."""
    opts = Options.given(given.options())
    _setup_logging("warning" if opts.log_level is None else opts.log_level)
    for warning in given.warnings:
        log.warning("%s", warning)
    if COMMAND_BY_NAME[given.command].runs == KAS:
        return _kas(given, opts)
    return OWN_COMMANDS[given.command](given, opts)


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
    sys.exit(status)
