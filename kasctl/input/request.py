"""From what the user gave (options, kas's arguments, the environment) to the Request.

Everything here is the user's own input, checked before any engine is looked
for: the work dir and the dirs kas manages, the configs (rewritten to their
container paths), the credentials to share, the runtime arguments. Facts about
the host come later (kasctl.host.detect); the Request needs none of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kasctl.build_system import BuildSystem
from kasctl.config import read, repo
from kasctl.config.read import Config
from kasctl.decide import credentials
from kasctl.decide.plan import Request
from kasctl.engine import image
from kasctl.errors import UsageError
from kasctl.input import cmdline, commands
from kasctl.input.commands import Command
from kasctl.input.options import Options
from kasctl.inside import clean
from kasctl.layout import MANAGED_DIRS, REPO, REPO2, mountable


def build(
    given: cmdline.Parsed,
    spec: Command,
    opts: Options,
    kas_cmd: str | None,
    env: Mapping[str, str],
    *,
    clean_dry_run: bool = False,
) -> Request:
    """The Request for one kas command, every input checked; raises on the first bad one."""
    parsed = commands.parse(spec, list(given.args), list(given.bitbake))
    work = work_dir(env)
    check_managed_dirs(env)
    override = opts.build_system_override()
    cfg, cfg2, kas_args = load_configs(spec, parsed, work, override)
    shares = credentials.collect(opts.credentials, env)
    runtime_args = commands.split_runtime_args(opts.runtime_args)
    build_system = cfg.build_system if cfg else (override or BuildSystem.OPENEMBEDDED)
    if kas_cmd is not None:
        kas_args = ("-c", kas_cmd, *kas_args)
    if spec.cleaner:
        # refused on the host, before any container: /, $HOME, the work dir itself
        clean.check_dirs(spec.name, build_dir(work, env), env, str(work), env.get("HOME"))
    elif clean_dry_run:  # purge: kas itself lists what it would remove
        kas_args = (*kas_args, "--dry-run")
    return Request(
        command=spec.name,
        build_system=build_system,
        work_dir=work,
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
        worktree=repo.worktree_of(cfg.repo_dir) if cfg else None,
    )


def build_dir(work: Path, env: Mapping[str, str]) -> str:
    return env.get("KAS_BUILD_DIR") or str(work / "build")


def work_dir(env: Mapping[str, str]) -> Path:
    raw = env.get("KAS_WORK_DIR") or os.getcwd()
    path = Path(os.path.abspath(raw))
    if not path.is_dir():
        raise UsageError(
            f"KAS_WORK_DIR {raw!r} does not exist or is not a directory",
            fix="create it, or unset KAS_WORK_DIR to use the current directory",
        )
    mountable(
        path,
        "KAS_WORK_DIR",
        fix="work in a directory with a plain path (a symlink to this one will do)",
    )
    return path


def check_managed_dirs(env: Mapping[str, str]) -> None:
    """Before any engine: a managed dir that cannot be mounted, created or found."""
    for var, _target, created in MANAGED_DIRS:
        value = env.get(var)
        if not value:
            continue
        mountable(value, var, fix=f"point {var} at a directory with a plain path")
        if created and os.path.exists(value) and not os.path.isdir(value):
            raise UsageError(
                f"{var} {value!r} exists and is not a directory",
                fix=f"point {var} at a directory (it is created when missing)",
            )
        if not created and not Path(value).is_dir():
            raise UsageError(
                f"{var} {value!r} does not exist",
                fix=f"create it (it holds reference clones), or unset {var}",
            )


def load_configs(
    spec: Command, parsed: commands.KasArgs, work_dir: Path, override: BuildSystem | None
) -> tuple[Config | None, Config | None, tuple[str, ...]]:
    """The configs named on the command line (or menu's default), and kas's rewritten args."""
    named = parsed.configs()
    if spec.kconfig:
        kconfig = read.load_kconfig(named[0] if named else "Kconfig", override)
        path = kconfig.container_paths(REPO)[0]
        return kconfig, None, parsed.with_configs([path]) if named else (*parsed.args, path)
    if not named:
        return read.default_config(work_dir, override), None, parsed.args
    first = read.load(named[0], override)
    second = read.load(named[1], override) if len(named) > 1 else None
    rewritten = [":".join(first.container_paths(REPO))]
    if second is not None:
        rewritten.append(":".join(second.container_paths(REPO2)))
    return first, second, parsed.with_configs(rewritten)
