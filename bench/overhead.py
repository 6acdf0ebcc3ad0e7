"""Benchmark: what kasctl adds to a container run, next to the engine's own cost.

Run as root (it runs everything as --user through runuser, with a clean
environment, as the end-to-end tests do; rootful podman runs as root with
SUDO_UID/SUDO_GID):

    python3 bench/overhead.py [--modes rootless-podman,system-docker] [--rounds 15] [--json]

The fixture project (tests/fixtures/isar-standin, or --fixture oe-standin)
is copied into a fresh git repository owned by the user. Per engine mode it
times, with the image IMAGE (--image, default kasctl's image of this version,
also passed to kasctl as KAS_CONTAINER_IMAGE) and the kasctl at --kasctl
(default /opt/kasctl-dev/bin/kasctl):

  a  floor: `ENGINE run --rm --entrypoint true IMAGE`, a container of this
     image that does nothing. (`ENGINE run --rm IMAGE true` would not be the
     floor with this image: its default entrypoint is kasctl's, which is c.)
  b  host side: `kasctl build --dry-run CONFIG` (interpreter and CLI start,
     config read and validation, host and engine facts, planning, printing);
     measured warm, as every run after the first is;
  b0 reference: b with an empty cache dir every time (a first run);
  c  the entrypoint's own cost: c1 - c0, where c1 is the exact engine command
     `kasctl shell --dry-run --json CONFIG -c true` prints, with the command
     after the image replaced by `-- true` (the entrypoint prepares builder,
     sub-ids and the lock-down, then execs true instead of kas), and c0 the
     same command with `--entrypoint true` (same flags, mounts, user
     namespace; no entrypoint);
  d  end to end: `kasctl shell CONFIG -c true` (includes kas's own start in
     the container);
  e  `kasctl --version`, against
  p  `PYTHON -c pass`, PYTHON being the interpreter of kasctl's script.

Before timing, kasctl runs once as root (`build --dry-run`), so that its
modules are byte-compiled wherever they are: pip does that at install time,
but in a source tree the user cannot write to, every run would compile them
again. Rounds interleave everything: every round runs each mode once and,
within a mode, every variant once, in an order rotated from round to round.
One untimed round comes first (warms caches, page cache, the engine). The
times are taken by a small worker running as the user (this script with
--worker), so runuser's own start is not in them.

It prints medians, min and max per variant, and the ratios against the
targets b/a <= 1/2, c/a <= 1/5, e/p <= 2. It exits non-zero only when a
command fails, never because of a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
FIXTURES = REPO / "tests" / "fixtures"
#: kasctl's default image for the version in this tree (kasctl/__init__.py).
IMAGE = "localhost/kasctl/kas-isar:" + re.search(
    r'__version__ = "([^"]+)"', (REPO / "kasctl" / "__init__.py").read_text()
).group(1)
MODES = ("rootless-podman", "system-docker", "rootless-docker", "rootful-podman")
VARIANTS = ("a", "b", "b0", "c0", "c1", "d", "e", "p")
LABELS = {
    "a": "a  floor: run --rm --entrypoint true IMAGE",
    "b": "b  kasctl build --dry-run CONFIG (warm)",
    "b0": "b0 same, empty cache (first run)",
    "c0": "c0 kasctl's run command, --entrypoint true",
    "c1": "c1 kasctl's run command, entrypoint -- true",
    "c": "c  entrypoint's own cost (c1 - c0)",
    "d": "d  kasctl shell CONFIG -c true",
    "e": "e  kasctl --version",
    "p": "p  python -c pass",
}
TARGETS = {"b/a": 0.5, "c/a": 0.2, "e/p": 2.0}


class BenchError(Exception):
    pass


@dataclass
class Mode:
    name: str
    engine: str
    as_root: bool
    env: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)


def mode_for(name: str, user: pwd.struct_passwd, kasctl: str, image: str) -> Mode:
    as_root = name == "rootful-podman"
    engine = "podman" if name.endswith("podman") else "docker"
    env = {
        "HOME": "/root" if as_root else user.pw_dir,
        "USER": "root" if as_root else user.pw_name,
        "LANG": "C.UTF-8",
        "PATH": f"{Path(kasctl).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "KAS_CONTAINER_ENGINE": engine,
        "KAS_CONTAINER_IMAGE": image,  # b and d use the image a and c use
    }
    if as_root:
        env.update(SUDO_UID=str(user.pw_uid), SUDO_GID=str(user.pw_gid))
    else:
        env["XDG_RUNTIME_DIR"] = f"/run/user/{user.pw_uid}"
    if name == "rootless-docker":
        env["DOCKER_HOST"] = f"unix:///run/user/{user.pw_uid}/docker.sock"
    return Mode(name, engine, as_root, env)


def as_mode(mode: Mode, user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    """argv as the mode's user, with nothing of this process's environment."""
    prefix = [] if mode.as_root else ["runuser", "-u", user.pw_name, "--"]
    return [*prefix, "env", "-i", *(f"{k}={v}" for k, v in mode.env.items()), *argv]


def check(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise BenchError(f"exit {result.returncode}: {' '.join(argv)}\n{result.stderr[-2000:]}")
    return result.stdout


def make_project(fixture: str, user: pwd.struct_passwd) -> tuple[Path, str]:
    """A work dir holding a git repo with the fixture, owned by the user; (work, config)."""
    work = Path(tempfile.mkdtemp(prefix="kasctl-bench-", dir="/tmp"))
    work.chmod(0o755)
    repo = work / "repo"
    shutil.copytree(FIXTURES / fixture, repo)
    git = ["git", "-C", str(repo)]
    ident = ["-c", "user.name=kasctl-bench", "-c", "user.email=bench@example.invalid"]
    for argv in (["init", "-q"], ["add", "-A"], [*ident, "commit", "-qm", "fixture"]):
        subprocess.run([*git, *argv], check=True, capture_output=True)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(work)], check=True)
    return work, f"repo/{fixture}.yml"


def interpreter_of(script: str) -> str:
    """The interpreter on a console script's #! line (kasctl's venv python)."""
    with open(script, "rb") as f:
        first = f.readline().decode().strip()
    if not first.startswith("#!"):
        raise BenchError(f"{script} has no #! line; pass --python")
    return first[2:].split()[0]


def entrypoint_pair(planned: list[str], image: str) -> tuple[list[str], list[str]]:
    """kasctl's engine command as c0 (--entrypoint true) and c1 (entrypoint, `-- true`)."""
    at = planned.index(image)
    flags = planned[:at]
    # isar-rootless names kasctl's entrypoint: `--entrypoint=python3 IMAGE -I PATH COMMAND...`
    forced = planned[at + 1 : at + 3] if any(f.startswith("--entrypoint=") for f in flags) else []
    return [*flags, "--entrypoint", "true", image], [*flags, image, *forced, "--", "true"]


def fresh_name(argv: list[str]) -> list[str]:
    return [f"--name=kasctl-bench-{uuid.uuid4().hex[:12]}" if a.startswith("--name=") else a
            for a in argv]  # fmt: skip


def jobs_for(
    mode: Mode, args: argparse.Namespace, config: str, planned: list[str]
) -> dict[str, dict[str, Any]]:
    kasctl, image = args.kasctl, args.image
    c0, c1 = entrypoint_pair(planned, image)
    argvs = {
        "a": [mode.engine, "run", "--rm", "--entrypoint", "true", image],
        "b": [kasctl, "build", "--dry-run", config],
        "b0": [kasctl, "build", "--dry-run", config],
        "c0": fresh_name(c0),
        "c1": fresh_name(c1),
        "d": [kasctl, "shell", config, "-c", "true"],
        "e": [kasctl, "--version"],
        "p": [args.python, "-c", "pass"],
    }
    return {k: {"argv": v, "env": {}} for k, v in argvs.items()}


def worker() -> int:
    """Run the jobs on stdin in order, as given; print each one's wall time (JSON)."""
    spec = json.load(sys.stdin)
    out = {}
    for key, job in spec["jobs"]:
        env = dict(os.environ, **job["env"])
        start = time.perf_counter()
        result = subprocess.run(
            job["argv"], cwd=spec["cwd"], env=env, capture_output=True, stdin=subprocess.DEVNULL
        )
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace")[-1500:]
            print(json.dumps({"failed": key, "argv": job["argv"], "rc": result.returncode,
                              "stderr": tail}))  # fmt: skip
            return 1
        out[key] = elapsed
    print(json.dumps({"times": out}))
    return 0


def run_round(
    mode: Mode, user: pwd.struct_passwd, args: argparse.Namespace, work: Path,
    jobs: dict[str, dict[str, Any]], order: list[str],
) -> dict[str, float]:  # fmt: skip
    spec = {"cwd": str(work), "jobs": [(k, jobs[k]) for k in order]}
    argv = as_mode(mode, user, [args.worker_python, "-I", str(SCRIPT), "--worker"])
    result = subprocess.run(argv, input=json.dumps(spec), capture_output=True, text=True)
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"{mode.name}: worker failed: {result.stderr[-2000:]}") from None
    if "failed" in report:
        raise BenchError(
            f"{mode.name}: {report['failed']} exited {report['rc']}: "
            f"{' '.join(report['argv'])}\n{report['stderr']}"
        )
    times: dict[str, float] = report["times"]
    return times


def summary(mode: Mode) -> dict[str, Any]:
    s = dict(mode.samples)
    s["c"] = [c1 - c0 for c0, c1 in zip(s["c0"], s["c1"], strict=True)]
    med = {k: statistics.median(v) for k, v in s.items()}
    ratios = {"b/a": med["b"] / med["a"], "c/a": med["c"] / med["a"], "e/p": med["e"] / med["p"]}
    return {
        "samples": s,
        "median": med,
        "min": {k: min(v) for k, v in s.items()},
        "max": {k: max(v) for k, v in s.items()},
        "ratios": ratios,
        "met": {k: ratios[k] <= TARGETS[k] for k in TARGETS},
    }


def print_summary(name: str, result: dict[str, Any]) -> None:
    print(f"\n{name}: median / min / max of {len(result['samples']['a'])} rounds, ms")
    for key in ("a", "b", "b0", "c0", "c1", "c", "d", "e", "p"):
        med, lo, hi = (1000 * result[s][key] for s in ("median", "min", "max"))
        print(f"  {LABELS[key]:<46} {med:8.1f} {lo:8.1f} {hi:8.1f}")
    for key, target in TARGETS.items():
        ratio = result["ratios"][key]
        verdict = "met" if result["met"][key] else "NOT met"
        print(f"  {key} = {ratio:.3f}  (target <= {target:g}: {verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", default="kasci", help="the unprivileged user (default kasci)")
    parser.add_argument(
        "--modes", default="rootless-podman,system-docker", help=f"comma list of {', '.join(MODES)}"
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--fixture", default="isar-standin", choices=("isar-standin", "oe-standin"))
    parser.add_argument("--kasctl", default="/opt/kasctl-dev/bin/kasctl", help="kasctl to time")
    parser.add_argument("--python", help="baseline interpreter (default: kasctl's #! line)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()

    if os.geteuid() != 0:
        raise BenchError("run it as root: it switches to --user with runuser")
    modes_wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    for name in modes_wanted:
        if name not in MODES:
            raise BenchError(f"unknown mode {name!r}; use {', '.join(MODES)}")
    if args.rounds < 1:
        raise BenchError("--rounds must be at least 1")
    args.kasctl = os.path.abspath(args.kasctl)
    args.python = args.python or interpreter_of(args.kasctl)
    args.worker_python = args.python
    user = pwd.getpwnam(args.user)
    work, config = make_project(args.fixture, user)
    scratch = Path(tempfile.mkdtemp(prefix="kasctl-bench-cache-", dir="/tmp"))
    os.chown(scratch, user.pw_uid, user.pw_gid)
    modes = [mode_for(n, user, args.kasctl, args.image) for n in modes_wanted]
    jobs: dict[str, dict[str, dict[str, Any]]] = {}
    log = sys.stderr if args.json else sys.stdout
    try:
        version = check(as_mode(modes[0], user, [args.kasctl, "--version"]), work).strip()
        compile_as_root = {**modes[0].env, "HOME": "/root", "KAS_ALLOW_ROOT": "yes"}
        env_argv = ["env", "-i", *(f"{k}={v}" for k, v in compile_as_root.items())]
        check([*env_argv, args.kasctl, "build", "--dry-run", config], work)
        for mode in modes:
            check(as_mode(mode, user, [mode.engine, "image", "inspect", args.image]), work)
            dry = as_mode(mode, user, [args.kasctl, "shell", "--dry-run", "--json", config])
            planned = json.loads(check([*dry, "-c", "true"], work))["argv"]
            jobs[mode.name] = jobs_for(mode, args, config, planned)
            mode.samples = {k: [] for k in VARIANTS}
        print(
            f"{version}, {args.kasctl} ({args.python}); image {args.image}; fixture "
            f"{args.fixture}; {args.rounds} rounds + 1 warm-up; modes {', '.join(modes_wanted)}",
            file=log,
        )
        for index in range(-1, args.rounds):
            for mode in modes:
                turn = index % len(VARIANTS)
                order = list(VARIANTS[turn:] + VARIANTS[:turn])
                # b0 is a first run every time: a cache dir no run has seen
                fresh = scratch / f"cache-{uuid.uuid4().hex[:8]}"
                jobs[mode.name]["b0"]["env"] = {"XDG_CACHE_HOME": str(fresh)}
                times = run_round(mode, user, args, work, jobs[mode.name], order)
                if index < 0:
                    continue
                for key, value in times.items():
                    mode.samples[key].append(value)
            if index >= 0:
                line = "  ".join(
                    f"{m.name} a {1000 * m.samples['a'][-1]:.0f} b {1000 * m.samples['b'][-1]:.0f}"
                    f" e {1000 * m.samples['e'][-1]:.0f} ms"
                    for m in modes
                )
                print(f"round {index + 1}: {line}", file=log, flush=True)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work), str(scratch)], check=False)
    results = {m.name: summary(m) for m in modes}
    if args.json:
        meta = {
            "kasctl": version,
            "image": args.image,
            "fixture": args.fixture,
            "rounds": args.rounds,
            "machine": f"{platform.node()} {platform.release()}, {os.cpu_count()} cpus",
            "targets": TARGETS,
        }
        print(json.dumps({"meta": meta, "modes": results}, indent=2))
    else:
        for name, result in results.items():
            print_summary(name, result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, OSError, KeyError, subprocess.CalledProcessError) as exc:
        print(f"overhead: error: {exc}", file=sys.stderr)
        sys.exit(1)
