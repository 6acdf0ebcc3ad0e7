"""What each command does, step by step: the one path from the parsed command line down.

A kas command: the Request from the user's input (kasctl.input.request), the
host's and the engine's facts (kasctl.host.detect), the RunPlan
(kasctl.decide.plan), the preflight on the same facts (kasctl.report.doctor),
then either the plan printed or the container run (kasctl.engine.launch) and,
after a failed build, the failure summary (kasctl.report.failures).
kasctl's own commands (doctor, image build, completion) are here too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from kasctl.build_system import BuildSystem
from kasctl.config import read
from kasctl.decide import privileges
from kasctl.decide.plan import Request, RunPlan, plan, worktree_gitfile_text
from kasctl.engine import engines, image, launch
from kasctl.errors import UsageError
from kasctl.host import detect
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts
from kasctl.input import cmdline, request
from kasctl.input.commands import COMMANDS, Command
from kasctl.input.options import Options
from kasctl.inside import clean
from kasctl.report import cilog, doctor

log = logging.getLogger("kasctl")


def kas_command(given: cmdline.Parsed, opts: Options) -> int:
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
    if opts.emit is not None:
        return emit(given, spec, opts, cmd)
    if spec.cleans and given.after.get("dry_run") and not opts.as_json:
        # kas's meaning, as kas-container users know it: list what would go
        return run_kas(given, spec, opts.replaced(dry_run=False), cmd, clean_dry_run=True)
    return run_kas(given, spec, opts, cmd)


def run_kas(
    given: cmdline.Parsed,
    spec: Command,
    opts: Options,
    kas_cmd: str | None,
    *,
    clean_dry_run: bool = False,
) -> int:
    """Request, facts, plan, then print or run. Returns the exit status."""
    env = os.environ
    cilog.LOG.start("kasctl_checks", f"kasctl {spec.name}: host checks and plan")
    req = request.build(given, spec, opts, kas_cmd, env, clean_dry_run=clean_dry_run)
    if clean_dry_run and spec.cleaner:
        return _clean_preview(spec.name, req.work_dir, env)
    host = detect.host_facts()
    container = detect.container_id()
    privileges.refuse_root(host, env, in_job=container is not None)
    kind = detect.choose_engine(opts.engine, req.build_system, env)
    engine = detect.engine_facts(kind, env, req.work_dir, container)
    with _worktree_gitfile(req) as req:
        return plan_and_run(req, host, engine, opts)


def plan_and_run(req: Request, host: HostFacts, engine: EngineFacts, opts: Options) -> int:
    run_plan = plan(req, host, engine)
    doctor.preflight(host, run_plan.mode, req.build_system)
    for warning in run_plan.warnings:
        log.warning("%s", warning)
    if opts.dry_run:
        _show(run_plan, opts)
        return 0
    if log.isEnabledFor(logging.DEBUG):  # engines.run renders the plan itself
        log.debug("running: %s", engines.show(engines.render(run_plan)))
    build_dir = Path(request.build_dir(req.work_dir, req.env))
    started = time.time()
    status = launch.launch(run_plan, req, host, build_dir, wait=not opts.no_wait)
    cilog.LOG.start("kasctl_cleanup", "kasctl: after the run", collapsed=status == 0)
    if req.command == "build" and (status != 0 or opts.junit):
        _build_report(build_dir, run_plan, started, status, opts.junit)
    if status == 0 and COMMANDS[req.command].kconfig and req.config is not None:
        read.remember_source_dir(req.work_dir, req.config.repo_dir)
    return status


def _build_report(
    build_dir: Path, run_plan: RunPlan, started: float, status: int, junit_file: str | None
) -> None:
    """After a build: the failure summary when it failed, the JUnit report when asked for."""
    from kasctl.report import failures  # only a failed or reported build reads its logs

    if status != 0:
        failures.report(build_dir, run_plan.mounts, started)
    if junit_file:
        from kasctl.report import junit

        summary = failures.analysed(build_dir, run_plan.mounts, started)
        path = Path(junit_file)
        junit.write(path, junit.report("build", status, summary))
        print(f"kasctl: JUnit report: {path}", file=sys.stderr)


def emit(given: cmdline.Parsed, spec: Command, opts: Options, kas_cmd: str | None) -> int:
    """`build --emit kubernetes CONFIG...`: one Job per config, the same plan as a run's."""
    from kasctl.config import repo
    from kasctl.decide.plan import PodRequest
    from kasctl.engine import kubernetes

    if opts.emit != "kubernetes":
        raise UsageError(f"--emit {opts.emit!r} is not a format", fix="use --emit kubernetes")
    from kasctl.input.commands import positionals

    at = set(positionals(given.args))  # each config is a Job; kas's options go to every Job
    configs = [a for i, a in enumerate(given.args) if i in at]
    options = [a for i, a in enumerate(given.args) if i not in at]
    if not configs:
        raise UsageError(
            "--emit kubernetes needs a config", fix="kasctl build --emit kubernetes CONFIG..."
        )
    env = os.environ
    host = detect.host_facts()
    engine = EngineFacts(mode=EngineMode.KUBERNETES, binary="", version="")
    plans = []
    for config in configs:
        one = replace(given, args=(*options, config))
        req = request.build(one, spec, opts, kas_cmd, env)
        if req.config is None:  # pragma: no cover (build always has one)
            raise UsageError("--emit kubernetes needs a config")
        source = repo.published(req.config.repo_dir)
        pod = PodRequest(
            remote=source.remote,
            commit=source.commit,
            downloads_claim=opts.claim_downloads or "kasctl-downloads",
            sstate_claim=opts.claim_sstate or "kasctl-sstate",
            storage_class=opts.storage_class,
        )
        plans.append((Path(config.split(":")[0]).stem, plan(replace(req, pod=pod), host, engine)))
    shown: set[str] = set()
    for _name, one_plan in plans:  # each once, as a run shows them, before the documents
        for warning in one_plan.warnings:
            if warning not in shown:
                shown.add(warning)
                log.warning("%s", warning)
    print(kubernetes.to_yaml(kubernetes.documents(plans)), end="")
    if opts.explain:  # each config's grants: their build systems may differ
        for config, (_name, one_plan) in zip(configs, plans, strict=True):
            print(f"# {config}:")
            for grant in one_plan.grants:
                print(f"# {grant.flag}: {grant.reason}")
    return 0


def _show(run_plan: RunPlan, opts: Options) -> None:
    """--dry-run: the engine command (or, with --json, the plan too); --explain: why each flag."""
    argv = engines.render(run_plan)
    if opts.as_json:
        print(json.dumps({"plan": run_plan.to_json(), "argv": argv}, indent=2))
        return
    print(engines.show(argv))
    if opts.explain:
        for grant in run_plan.grants:
            print(f"# {grant.flag}: {grant.reason}")


@contextlib.contextmanager
def _worktree_gitfile(req: Request) -> Iterator[Request]:
    """A git worktree's .git file as the container sees it, in a scratch file for the run."""
    if req.worktree is None:
        yield req
        return
    import tempfile  # only a git worktree needs a scratch dir

    with tempfile.TemporaryDirectory(prefix="kasctl-") as scratch:
        gitfile = Path(scratch) / "dotgit"
        gitfile.write_text(worktree_gitfile_text(req.worktree))
        gitfile.chmod(0o644)
        yield replace(req, worktree_gitfile=str(gitfile))


def _clean_preview(command: str, work_dir: Path, env: Mapping[str, str]) -> int:
    """`kasctl clean --dry-run`: the paths the real clean removes, listed on the host."""
    build_dir = request.build_dir(work_dir, env)
    report = clean.preview(command, build_dir, env, work_dir=str(work_dir), home=env.get("HOME"))
    for path in report.removed:
        print(path)
    for path, why in report.left:
        print(f"kasctl: would be left: {path}: {why}", file=sys.stderr)
    return 1 if report.left else 0


def doctor_command(given: cmdline.Parsed, opts: Options) -> int:
    """Check this host for a build: one line per check, with the fix. 0 when it can work."""
    override = opts.build_system_override()
    if given.args:
        build_system = read.load(given.args[0], override).build_system
    else:
        build_system = override or BuildSystem.ISAR_ROOTLESS
    env = os.environ
    host = detect.host_facts(full=True)
    image_name = image.default_image(env)
    probes = {k: detect.probe_engine(k, env, image_name) for k in ("podman", "docker")}
    found = [k for k, p in probes.items() if p.binary]
    kind = detect.choose_engine(opts.engine, build_system, env) if found or opts.engine else None
    checks = doctor.judge(host, probes[kind], build_system, image_name) if kind else []
    container = detect.container_id()
    binary = probes[kind].binary if kind else None
    if kind and binary:
        job = detect.job_container(binary, container, None) if container else None
        checks.insert(0, doctor.setup_check(container, job, kind, fuse=os.path.exists("/dev/fuse")))
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


def image_build_command(given: cmdline.Parsed, opts: Options) -> int:
    """Build the kasctl image (kas, Isar's host tools, kasctl's entrypoint)."""
    kind = detect.choose_engine(opts.engine, BuildSystem.ISAR_ROOTLESS, os.environ)
    binary = detect.engine_facts(kind, os.environ).binary
    bootstrap = True if given.after.get("bootstrap_base") else None
    image.build([binary], image.default_image(os.environ), bootstrap=bootstrap)
    return 0


def completion_command(given: cmdline.Parsed, opts: Options) -> int:
    """Print the completion script for the shell named (its choices checked by the parser)."""
    from kasctl.input import completion  # only this command generates one

    print(completion.script(given.args[0]), end="")
    return 0


#: kasctl's own commands (kasctl.spec's OWN ones), each carried out here.
OWN_COMMANDS = {
    "doctor": doctor_command,
    "image build": image_build_command,
    "completion": completion_command,
}
