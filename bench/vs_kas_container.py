"""Benchmark: kasctl against kas 5.5's kas-container, `shell CONFIG -c true`, side by side.

Run as root (everything runs as --user through runuser with a clean
environment, as bench/overhead.py and the end-to-end tests do):

    python3 bench/vs_kas_container.py [--modes rootless-podman,system-docker] [--rounds 9] [--json]

The fixture tests/fixtures/isar-standin (build_system: isar-rootless) is
copied into a fresh git repository owned by the user, and per engine mode
two commands run on that one config, each in a work dir of its own (both
write build/ there):

  kasctl         `kasctl shell CONFIG -c true`, with kasctl's image
                 (--image, default kasctl's image of this version, passed as
                 KAS_CONTAINER_IMAGE);
  kas-container  `kas-container --isar-rootless shell CONFIG -c true`, with
                 the stand-in image below (KAS_CONTAINER_IMAGE).

kas-container is the script from kas 5.5's source distribution on PyPI:
`pip download --no-deps --no-binary :all: kas==5.5` into --cache-dir (once),
checked against the sdist's sha256, and only the script extracted, at every
run, into the run's temp dir; it is never part of this repository
(--kas-sdist FILE uses a tarball you have). `--isar-rootless` and not
`--isar`: in kas-container 5.5, `--isar` is the deprecated spelling of
`--isar-privileged`, which on podman runs `sudo --preserve-env podman run
--privileged` (rootful podman, another engine); for this config
kas-container would pick isar-rootless by itself (it greps build_system:
from the config), the flag only says so. On rootless podman it then runs
`podman run ... --rm --init --log-driver=none --user=root --security-opt
label=disable --userns=keep-id --privileged IMAGE shell -c true
/repo/CONFIG`, on system docker the same with `--security-opt
seccomp=unconfined --security-opt apparmor=unconfined --security-opt
systempaths=unconfined --cap-add=SYS_ADMIN` instead of the last three, with
USER_ID/GROUP_ID the user's ids; before that it runs about fifteen small
programs (realpath, git rev-parse, awk, sed, id, timedatectl; `docker
context show` on docker).

The image kas-container runs: kas's own images are not reachable here (no
registry) and their entrypoint is not in the sdist, so the benchmark builds,
in the engine under test and as the user, an image FROM kasctl's (same kas
5.5, same Python, same Isar tools) whose ENTRYPOINT is bench/kas_like_
entrypoint.sh, this project's own stand-in for the kas-isar image's
entrypoint (`container-entrypoint` in kas's git repository, releases 5.4
and 5.5; the script lists its steps), with the image's
real sudo restored setuid and passwordless for builder, as kas's image has
it. Like kas-isar's it: mounts binfmt_misc when it is not mounted and runs
`sudo update-binfmts --enable` (qemu's handlers), failing when no
binfmt_misc is left; falls back to TERM=xterm for an unknown terminal and
warns on aufs (`mount | grep`); with USER_ID set and not 0 gives `builder`
that uid and GROUP_ID (`groupmod -o`, `usermod -o`: under podman's keep-id
the uid already has an entry, the one keep-id maps to the host user),
`chown -R` builder's home, takes over an ssh dir and TZ, writes builder's
/etc/subuid and /etc/subgid line from the last row of the container's id
maps, and runs `kas ARGS` as builder through gosu; without USER_ID, or 0,
it runs as root. It leaves out the rootless-docker chown of the managed
dirs (not a mode benchmarked here) and GitLab's safe.directory, which only
apply elsewhere. kasctl's side runs its own entrypoint with all its work
(builder's ids, sub-id ranges from the container's id maps, the
isar-rootless lock-down check), as users run it; kasctl's image registers
no binfmt handlers at start (isar-rootless needs none for an image of the
host's architecture, and doctor reports the host's handlers).

Per command it measures, for each run:

  wall  from start to the command's exit, taken by a worker running as the
        user (this script with --worker), so runuser's start is not in it;
  cpu   user+sys of every process the worker reaped for the run: the
        command's own tree (os.wait4) and, the worker being a child
        subreaper, what daemonized out of it. On podman that is conmon,
        the container's processes conmon reaps (init, entrypoint, kas) and
        conmon's exit command (`podman container cleanup`), so cpu is the
        whole run; on docker the container runs under dockerd's
        containerd-shim, so cpu is the client side only;
  tree  the command's own tree alone (os.wait4): kasctl or kas-container
        and the programs they wait for, the engine CLI included.

Rounds alternate the two commands (the order swapped every round) and every
mode; one untimed warm-up round comes first. It prints the medians (with min
and max) and the ratios kasctl / kas-container of wall, cpu and tree; the
target is wall ratio <= 0.8 (cpu is reported against the same mark). It
exits non-zero only when a command fails, never because of a time.

Modes: rootless podman (default) and system docker (as bench/overhead.py
runs them). Not rootless docker (kas-container 5.5 refuses `shell` there,
which mounts the repository read-write, and detects rootless docker only by
a docker context named `rootless`) nor rootful podman (kas-container has no
SUDO_UID handling: as root it runs builder as root).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the worker runs under -I

from overhead import (  # noqa: E402  (bench/ is no package)
    IMAGE,
    BenchError,
    Mode,
    as_mode,
    check,
    interpreter_of,
    make_project,
    mode_for,
)

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
ENTRYPOINT = HERE / "kas_like_entrypoint.sh"
KAS_VERSION = "5.5"
#: sha256 of kas-5.5.tar.gz as PyPI lists it (its simple index's #sha256=).
KAS_SDIST_SHA256 = "ae6b7be8d4396dabcbbef9f7d4fb3d4516b9f5038920cc7914d86e3ebe2ef687"
KAS_IMAGE = "localhost/kasctl/bench-kas-like:" + IMAGE.rsplit(":", 1)[1]
MODES = ("rootless-podman", "system-docker")
VARIANTS = ("kasctl", "kas-container")
MEASURES = ("wall", "cpu", "tree")
TARGET = 0.8
#: How long the worker waits, after a run, for what daemonized out of it (conmon) to end.
STRAGGLER_WAIT = 20.0
PR_SET_CHILD_SUBREAPER = 36


def default_kasctl() -> str:
    return shutil.which("kasctl") or "/opt/kasctl-venv/bin/kasctl"


def kas_sdist(args: argparse.Namespace) -> Path:
    """kas's sdist: --kas-sdist, else the cached download, else pip download into the cache."""
    if args.kas_sdist:
        return Path(args.kas_sdist)
    cache = Path(args.cache_dir)
    sdist = cache / f"kas-{KAS_VERSION}.tar.gz"
    if not sdist.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            result = subprocess.run(
                [*pip, f"kas=={KAS_VERSION}", "-d", tmp], capture_output=True, text=True
            )
            got = Path(tmp) / sdist.name
            if result.returncode != 0 or not got.is_file():
                raise BenchError(
                    f"pip download kas=={KAS_VERSION} failed (pass --kas-sdist FILE):\n"
                    + result.stderr[-1500:]
                )
            got.replace(sdist)
    return sdist


def extract_kas_container(sdist: Path, dest: Path) -> Path:
    """kas-container from the sdist, checked against the pinned digest, into dest."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != KAS_SDIST_SHA256:
        raise BenchError(f"{sdist}: sha256 {digest}, not kas {KAS_VERSION}'s {KAS_SDIST_SHA256}")
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"kas-{KAS_VERSION}/kas-container")
        if member is None:
            raise BenchError(f"{sdist} has no kas-container")
        text = member.read()
    if f'KAS_CONTAINER_SCRIPT_VERSION="{KAS_VERSION}"'.encode() not in text:
        raise BenchError(f"{sdist}: kas-container is not version {KAS_VERSION}")
    dest.mkdir()
    script = dest / "kas-container"
    script.write_bytes(text)
    script.chmod(0o755)
    return script


def build_kas_like(
    mode: Mode, user: pwd.struct_passwd, args: argparse.Namespace, work: Path
) -> None:
    """The stand-in image, FROM kasctl's with bench/kas_like_entrypoint.sh, in mode's store."""
    context = work / f"image-{mode.name}"
    context.mkdir()
    shutil.copy(ENTRYPOINT, context / "kas-like-entrypoint")
    (context / "kas-like-entrypoint").chmod(0o755)
    (context / "Containerfile").write_text(
        f"FROM {args.image}\n"
        "COPY kas-like-entrypoint /usr/local/bin/kas-like-entrypoint\n"
        # kas's image: a working sudo, passwordless for builder.
        "RUN install -m 4755 /usr/lib/kasctl/sudo.real /usr/bin/sudo"
        " && echo 'builder ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/builder"
        " && chmod 0440 /etc/sudoers.d/builder\n"
        'LABEL io.kasctl.bench="vs_kas_container: kas-like entrypoint"\n'
        'ENTRYPOINT ["/usr/local/bin/kas-like-entrypoint"]\n'
    )
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(context)], check=True)
    build = [mode.engine, "build", "-q", "-t", args.kas_image, "-f", str(context / "Containerfile")]
    check(as_mode(mode, user, [*build, str(context)]), work)


def engine_version(mode: Mode, user: pwd.struct_passwd, work: Path) -> str:
    fmt = "{{.Client.Version}}" if mode.engine == "podman" else "{{.Server.Version}}"
    return check(as_mode(mode, user, [mode.engine, "version", "--format", fmt]), work).strip()


def children() -> list[int]:
    """This (single-threaded) process's children, reparented ones included."""
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        return [int(pid) for pid in f.read().split()]


def cpu_of(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def worker() -> int:
    """Run the jobs on stdin in order; print each one's wall, cpu, tree and tail times (JSON)."""
    spec = json.load(sys.stdin)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(json.dumps({"error": f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}"}))
        return 1
    out: dict[str, dict[str, float]] = {}
    for key, job in spec["jobs"]:
        env = dict(os.environ, **job["env"])
        with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
            before = cpu_of(resource.getrusage(resource.RUSAGE_CHILDREN))
            start = time.perf_counter()
            proc = subprocess.Popen(
                job["argv"], cwd=job["cwd"], env=env, stdin=subprocess.DEVNULL,
                stdout=stdout, stderr=stderr,
            )  # fmt: skip
            _, status, usage = os.wait4(proc.pid, 0)
            ended = time.perf_counter()
            proc.returncode = os.waitstatus_to_exitcode(status)
            # what daemonized out of the run (conmon) was reparented to us: reap it too
            deadline = ended + STRAGGLER_WAIT
            while children() and time.perf_counter() < deadline:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    time.sleep(0.005)
            tail = time.perf_counter() - ended
            left = children()
            cpu = cpu_of(resource.getrusage(resource.RUSAGE_CHILDREN)) - before
            if proc.returncode != 0 or left:
                stderr.seek(0)
                print(json.dumps({
                    "failed": key, "argv": job["argv"], "rc": proc.returncode,
                    "left": left, "stderr": stderr.read().decode(errors="replace")[-1500:],
                }))  # fmt: skip
                return 1
        out[key] = {"wall": ended - start, "cpu": cpu, "tree": cpu_of(usage), "tail": tail}
    print(json.dumps({"times": out}))
    return 0


def run_round(
    mode: Mode, user: pwd.struct_passwd, args: argparse.Namespace, work: Path,
    jobs: dict[str, dict[str, Any]], order: list[str],
) -> dict[str, dict[str, float]]:  # fmt: skip
    spec = {"jobs": [(k, jobs[k]) for k in order]}
    argv = as_mode(mode, user, [args.worker_python, "-I", str(SCRIPT), "--worker"])
    result = subprocess.run(argv, cwd=work, input=json.dumps(spec), capture_output=True, text=True)
    try:
        report = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"{mode.name}: worker failed: {result.stderr[-2000:]}") from None
    if "error" in report:
        raise BenchError(f"{mode.name}: worker: {report['error']}")
    if "failed" in report:
        left = f" (left running: {report['left']})" if report["left"] else ""
        raise BenchError(
            f"{mode.name}: {report['failed']} exited {report['rc']}{left}: "
            f"{' '.join(report['argv'])}\n{report['stderr']}"
        )
    times: dict[str, dict[str, float]] = report["times"]
    return times


def summary(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    def over(fn: Any) -> dict[str, dict[str, float]]:
        return {v: {m: fn(s) for m, s in samples[v].items()} for v in VARIANTS}

    med = over(statistics.median)
    ratios = {m: med["kasctl"][m] / med["kas-container"][m] for m in MEASURES}
    return {
        "samples": samples,
        "median": med,
        "min": over(min),
        "max": over(max),
        "ratios": ratios,
        "met": {m: ratios[m] <= TARGET for m in ("wall", "cpu")},
    }


def print_summary(name: str, result: dict[str, Any]) -> None:
    rounds = len(result["samples"]["kasctl"]["wall"])
    print(f"\n{name}: median (min-max) of {rounds} rounds, ms")
    print(f"  {'':<20}" + "".join(f"{m:>20}" for m in MEASURES))
    for variant in VARIANTS:
        cells = []
        for m in MEASURES:
            med, lo, hi = (1000 * result[s][variant][m] for s in ("median", "min", "max"))
            cells.append(f"{med:7.0f} ({lo:.0f}-{hi:.0f})".rjust(20))
        print(f"  {variant:<20}" + "".join(cells))
    ratios = result["ratios"]
    print(f"  {'kasctl/kas-container':<20}" + "".join(f"{ratios[m]:>20.2f}" for m in MEASURES))
    for m in ("wall", "cpu"):
        verdict = "met" if result["met"][m] else "NOT met"
        print(f"  {m} ratio {ratios[m]:.2f}  (target <= {TARGET:g}: {verdict})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", default="kasci", help="the unprivileged user (default kasci)")
    parser.add_argument(
        "--modes", default="rootless-podman", help=f"comma list of {', '.join(MODES)}"
    )
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--image", default=IMAGE, help=f"kasctl's image (default {IMAGE})")
    parser.add_argument(
        "--kas-image", default=KAS_IMAGE, help=f"tag of the stand-in image (default {KAS_IMAGE})"
    )
    parser.add_argument(
        "--kasctl",
        default=default_kasctl(),
        help="kasctl to time (default: kasctl on PATH, else /opt/kasctl-venv/bin/kasctl)",
    )
    parser.add_argument("--kas-sdist", help=f"kas-{KAS_VERSION}.tar.gz to take kas-container from")
    parser.add_argument(
        "--cache-dir",
        default=str(Path.home() / ".cache" / "kasctl-bench"),
        help="where kas's sdist is downloaded once (default ~/.cache/kasctl-bench)",
    )
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
    args.worker_python = interpreter_of(args.kasctl)
    user = pwd.getpwnam(args.user)
    sdist = kas_sdist(args)
    work, config_rel = make_project("isar-standin", user)
    config = str(work / config_rel)
    modes = [mode_for(n, user, args.kasctl, args.image) for n in modes_wanted]
    log = sys.stderr if args.json else sys.stdout
    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    jobs: dict[str, dict[str, dict[str, Any]]] = {}
    engines: dict[str, str] = {}
    try:
        kas_container = extract_kas_container(sdist, work / "bin")
        for variant in VARIANTS:
            (work / variant).mkdir()
            os.chown(work / variant, user.pw_uid, user.pw_gid)
        try:
            version = check(as_mode(modes[0], user, [args.kasctl, "--version"]), work).strip()
        except BenchError as exc:
            raise BenchError(
                f"{user.pw_name} cannot run {args.kasctl} (is its interpreter "
                f"{args.worker_python} executable by {user.pw_name}? pass --kasctl): {exc}"
            ) from None
        # byte-compile kasctl's modules wherever they are (bench/overhead.py says why)
        as_root = {**modes[0].env, "HOME": "/root", "KAS_ALLOW_ROOT": "yes"}
        env_argv = ["env", "-i", *(f"{k}={v}" for k, v in as_root.items())]
        check([*env_argv, args.kasctl, "build", "--dry-run", config], work)
        for mode in modes:
            # also starts rootless podman's pause process, outside the timed runs
            check(as_mode(mode, user, [mode.engine, "image", "inspect", args.image]), work)
            build_kas_like(mode, user, args, work)
            engines[mode.name] = engine_version(mode, user, work)
            jobs[mode.name] = {
                "kasctl": {
                    "argv": [args.kasctl, "shell", config, "-c", "true"],
                    "cwd": str(work / "kasctl"),
                    "env": {},
                },
                "kas-container": {
                    "argv": [str(kas_container), "--isar-rootless", "shell", config, "-c", "true"],
                    "cwd": str(work / "kas-container"),
                    "env": {"KAS_CONTAINER_IMAGE": args.kas_image},
                },
            }
            samples[mode.name] = {v: {m: [] for m in (*MEASURES, "tail")} for v in VARIANTS}
        print(
            f"{version} ({args.kasctl}) against kas-container {KAS_VERSION}; images "
            f"{args.image} / {args.kas_image}; {args.rounds} rounds + 1 warm-up; modes "
            + ", ".join(f"{m} ({engines[m]})" for m in modes_wanted),
            file=log,
        )
        for index in range(-1, args.rounds):
            line = []
            for mode in modes:
                order = list(VARIANTS if index % 2 == 0 else VARIANTS[::-1])
                times = run_round(mode, user, args, work, jobs[mode.name], order)
                if index < 0:
                    continue
                for variant, measured in times.items():
                    for m, value in measured.items():
                        samples[mode.name][variant][m].append(value)
                k, c = times["kasctl"]["wall"], times["kas-container"]["wall"]
                line.append(f"{mode.name} kasctl {1000 * k:.0f} kas-container {1000 * c:.0f} ms")
            if index >= 0:
                print(f"round {index + 1}: " + "  ".join(line), file=log, flush=True)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    results = {name: summary(samples[name]) for name in modes_wanted}
    if args.json:
        meta = {
            "kasctl": version,
            "kasctl_path": args.kasctl,
            "kas_container": KAS_VERSION,
            "kas_sdist_sha256": KAS_SDIST_SHA256,
            "images": {"kasctl": args.image, "kas-container": args.kas_image},
            "engines": engines,
            "rounds": args.rounds,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.node()} {platform.release()}, {os.cpu_count()} cpus",
            "target": {"wall": TARGET},
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
        print(f"vs_kas_container: error: {exc}", file=sys.stderr)
        sys.exit(1)
