"""Benchmark: kasctl's one-namespace rootless clean against kas's per-directory unshare.

Run as root (it switches to the test user with runuser):

    python3 bench/rootless_clean.py --user kasci [--reps 5]

Each repetition regenerates, untimed, a tree shaped like an interrupted Isar
build: BUILD/tmp/work/recipe-NN/ owned by the user, under them DIRS rootfs
directories owned by the user's sub-ids, each holding FILES files owned by
the same sub-id (default 1,000 x 100 = 100,000 files). The generator runs as
the user inside `unshare --map-auto --map-root-user`, exactly where a build
would have made such a tree, and the tree is synced to disk before timing.
Then, alternating the order every repetition, it times:

  a  kasctl: `unshare --map-auto --map-root-user PYTHON -I -m kasctl.inside.clean
     clean BUILD` (kasctl.inside.clean.namespaced_argv): one namespace, one process;
  b  kas 5.5: `find BUILD/tmp ( ! -user UID -type d -prune ) -exec unshare
     --map-auto --map-root-user --keep-caps rm -rf {} ;` then `rm -rf
     BUILD/tmp`: one namespace per sub-id-owned directory;
  c  reference only: `unshare --map-auto --map-root-user rm -rf BUILD/tmp`
     (one namespace, C rm; not part of the ratio).

It prints every time, the medians and the ratio a/b (target: <= 1/3). It
exits non-zero only when something fails (a command, a tree left behind),
never because of a time.

Where: --dir, default /dev/shm (tmpfs), where the time is the tools' own
(processes, namespaces, syscalls) and a run takes about two minutes. On a
disk the filesystem's own cost of freeing 100,000 inodes and blocks is added
to every method alike (c shows it); pass --dir /var/tmp to measure that, and
expect much longer runs where creating and freeing files is slow.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve()
RECIPES = 50


class BenchError(Exception):
    pass


def generate(tmp: Path, dirs: int, files: int) -> None:
    """Make the tree; runs as root of the user's sub-id namespace (uid 0 = the user)."""
    payload = b"x" * 256
    for i in range(dirs):
        recipe = tmp / "work" / f"recipe-{i % RECIPES:02}"
        recipe.mkdir(parents=True, exist_ok=True)
        rootfs = recipe / f"rootfs-{i:04}"
        rootfs.mkdir()
        owner = 1 + i  # namespace ids 1.. are the user's first sub-ids
        dfd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for j in range(files):
                fd = os.open(f"f{j:03}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
                os.write(fd, payload)
                os.fchown(fd, owner, owner)
                os.close(fd)
            os.fchown(dfd, owner, owner)
        finally:
            os.close(dfd)


def as_user(user: pwd.struct_passwd, argv: list[str]) -> list[str]:
    env = [f"HOME={user.pw_dir}", "PATH=/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"]
    return ["runuser", "-u", user.pw_name, "--", "env", "-i", *env, *argv]


def run(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise BenchError(f"exit {result.returncode}: {' '.join(argv)}\n{result.stderr[-2000:]}")
    return elapsed


def find_python(user: pwd.struct_passwd, wanted: str | None) -> str:
    """An interpreter the user can run that imports THIS checkout's kasctl.inside.clean under -I."""
    candidates = [wanted] if wanted else [sys.executable, "/opt/kasctl-dev/bin/python"]
    mine = str(REPO / "kasctl" / "clean.py")
    code = "import os, kasctl.inside.clean as c; print(os.path.realpath(c.__file__))"
    for python in filter(None, candidates):
        probe = subprocess.run(
            as_user(user, [python, "-I", "-c", code]), capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and (wanted or probe.stdout.strip() == mine):
            return python
    raise BenchError(
        f"no interpreter that {user.pw_name} can run imports {mine} under -I "
        f"(tried {', '.join(filter(None, candidates))}); "
        "pass --python PATH (a venv with `pip install -e .`)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", default="kasci", help="user with a sub-id range")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dirs", type=int, default=1000, help="sub-id-owned directories")
    parser.add_argument("--files", type=int, default=100, help="files per directory")
    parser.add_argument("--python", help="interpreter with kasctl installed (default: probe)")
    parser.add_argument("--dir", default="/dev/shm", help="where to make the trees")
    parser.add_argument("--generate", metavar="TMP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(Path(args.generate), args.dirs, args.files)
        return 0

    if os.geteuid() != 0:
        raise BenchError("run it as root: it switches to --user with runuser")
    sys.path.insert(0, str(REPO))
    from kasctl.inside.clean import namespaced_argv

    user = pwd.getpwnam(args.user)
    python = find_python(user, args.python)
    base = Path(tempfile.mkdtemp(prefix="kasctl-bench-", dir=args.dir))
    times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    try:
        os.chown(base, user.pw_uid, user.pw_gid)
        os.chmod(base, 0o755)
        work = base / "work"
        build = work / "build"
        tmp = build / "tmp"
        ns = ["unshare", "--map-auto", "--map-root-user"]
        commands = {
            "a": as_user(
                user,
                namespaced_argv(python, "clean", str(build), work_dir=str(work), home=user.pw_dir),
            ),
            "b": as_user(
                user,
                [
                    "sh",
                    "-ec",
                    'find "$1" \\( ! -user "$2" -type d -prune \\) '
                    "-exec unshare --map-auto --map-root-user --keep-caps rm -rf {} \\;\n"
                    'rm -rf "$1"',
                    "sh",
                    str(tmp),
                    str(user.pw_uid),
                ],
            ),
            "c": as_user(user, [*ns, "rm", "-rf", str(tmp)]),
        }
        gen = as_user(
            user,
            [*ns, python, "-I", str(SCRIPT), "--generate", str(tmp)]
            + ["--dirs", str(args.dirs), "--files", str(args.files)],
        )
        fs = subprocess.run(
            ["findmnt", "-no", "FSTYPE,OPTIONS", "-T", str(base)], capture_output=True, text=True
        ).stdout.partition("\n")[0]
        print(
            f"tree: {args.dirs} sub-id-owned dirs x {args.files} files under {RECIPES} user-owned "
            f"dirs, in {base} ({fs or 'unknown fs'}); {args.reps} repetitions; python {python}"
        )
        for rep in range(args.reps):
            order = "abc" if rep % 2 == 0 else "bac"
            for key in order:
                for d in (work, build):
                    d.mkdir(exist_ok=True)
                    os.chown(d, user.pw_uid, user.pw_gid)
                run(gen, base)
                sample = tmp / "work" / "recipe-00" / "rootfs-0000"
                if os.stat(sample).st_uid == user.pw_uid:
                    raise BenchError(f"{sample} is owned by {args.user}, not by a sub-id")
                os.sync()
                times[key].append(run(commands[key], base))
                if tmp.exists():
                    raise BenchError(f"{key} left {tmp} behind")
            print(
                f"rep {rep + 1}: " + "  ".join(f"{k} {times[k][-1]:.2f} s" for k in "abc"),
                flush=True,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median a (kasctl, one namespace):          {med['a']:.2f} s")
    print(f"median b (kas, find -exec unshare per dir): {med['b']:.2f} s")
    print(f"median c (reference: one unshare rm -rf):  {med['c']:.2f} s")
    ratio = med["a"] / med["b"]
    verdict = "met" if ratio <= 1 / 3 else "NOT met"
    print(f"ratio a/b: {ratio:.3f} (b/a {1 / ratio:.1f}x); target <= 0.333: {verdict}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, OSError, KeyError) as exc:
        print(f"rootless_clean: error: {exc}", file=sys.stderr)
        sys.exit(1)
