"""Two builds at once, in different build dirs, sharing one DL_DIR and one SSTATE_DIR.

Each case starts two real `kasctl build`s of the Isar stand-in at the same
moment, each in its own work dir (KAS_WORK_DIR, KAS_BUILD_DIR), both with the
same DL_DIR and SSTATE_DIR outside them (kasctl mounts those at /downloads
and /sstate). The stand-in's recipe standin-src (STANDIN_SOURCES) uses the
caches as bitbake does (see "Shared caches" in the workload): each download
under DL_DIR/NAME.lock, to NAME.tmp, checked, renamed, then NAME.done; each
sstate task's archive, named by the task's hash, packed to a temporary file
and linked into place once, and reused by the other build.

Both builds must succeed and leave the caches whole: each download once,
complete (its sha256 is the recipe's, and its content is what the upstream
serves), with its .done stamp; each sstate archive once, matching its
sidecar and holding the task's output; no .tmp, .lock, bad-checksum or
temporary archive left; everything the test user's.

And the overlap must have happened: every download is fetched by exactly one
build, and the other build's task log shows it WAITED for that download's
lock, then found the .done stamp and did not fetch again. That is how the
test fails when the protection is gone:

- without the lock, both builds download the same file at once: both logs
  say "fetched", neither says "waiting for lock"; the two writers to the one
  NAME.tmp also truncate and interleave each other's writes, so one build
  usually fails its checksum, or its rename finds NAME.tmp already gone;
- when the two builds do not really overlap (serialised by accident: one
  starts after the other's fetch is over), the second gets the lock at once
  and finds .done: no "waiting for lock" in its log, and the test fails;
- without the .done check under the lock, the waiting build fetches again
  (two "fetched" lines) and drops the stamp under the other build's unpack;
- an archive rewritten instead of linked once shows as a second "wrote"
  whenever both builds ran the task at once (the one that finds the archive
  first reuses it through the setscene task instead).

Each download takes FETCH_SECONDS with its lock held, so the two builds'
start-up (engine, container, kas) may differ by that much and still overlap.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import (
    FIXTURES,
    Project,
    Runner,
    kasctl_bin,
    make_project,
    make_runner,
    owners,
    remove_tree,
)

pytestmark = pytest.mark.e2e

MODES = ["rootless-podman", "system-docker"]
FETCH_SECONDS = 4
DOWNLOADS = ("standin-src-1.0.tar.gz", "standin-src-data-1.0.txt")
SSTATE_TASKS = ("populate_sysroot", "deploy")
SRC_WORKDIR = Path("tmp/work/debian-trixie-amd64/standin-src/1.0-r0")
ARCHIVE = re.compile(
    r"sstate:standin-src:amd64:1\.0:r0:amd64:3:(?P<hash>[0-9a-f]{64})_(?P<task>\w+)\.tgz"
)


@pytest.fixture
def caches() -> Iterator[Path]:
    """A dir for the shared caches, outside every work dir; kasctl creates the caches in it."""
    root = Path(tempfile.mkdtemp(prefix="kasctl-e2e-caches-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    remove_tree(root)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _served_data() -> bytes:
    """What the stand-in's upstream serves as the data file, made here independently."""
    return "".join(f"standin-src data line {i:08d}\n" for i in range(1, 100001)).encode()


def _check_source_tarball(data: bytes) -> None:
    """The tarball is complete: every file of the fixture's standin-pkg, byte for byte."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        for member in tar.getmembers():
            content = tar.extractfile(member) if member.isfile() else None
            if content is not None:
                files[member.name] = content.read()
    pkg = FIXTURES / "isar-standin" / "standin-pkg"
    expected = {
        str(Path("standin-pkg") / p.relative_to(pkg)): p.read_bytes()
        for p in pkg.rglob("*")
        if p.is_file()
    }
    assert files == expected


def _task_log(project: Project, task: str) -> str:
    log = project.build / SRC_WORKDIR / "temp" / f"log.do_{task}"
    return log.read_text() if log.exists() else ""


def _start(
    runner: Runner, project: Project, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`kasctl build` as the test user, in the project's own work and build dirs."""
    env = {**env, "KAS_WORK_DIR": str(project.work), "KAS_BUILD_DIR": str(project.build)}
    return runner.spawn([kasctl_bin(), "build", project.config], project.work, log, env)


@pytest.mark.parametrize("mode", MODES)
def test_parallel_builds_share_dl_dir_and_sstate_dir(
    mode: str, project_factory: list[Project], caches: Path, tmp_path: Path
) -> None:
    runner = make_runner(mode)
    conf = f'STANDIN_SOURCES = "1"\n    STANDIN_FETCH_SECONDS = "{FETCH_SECONDS}"'
    projects = [make_project(runner, extra_conf=conf) for _ in range(2)]
    project_factory.extend(projects)
    os.chown(caches, runner.uid, runner.gid)
    dl_dir, sstate_dir = caches / "downloads", caches / "sstate-cache"
    env = {"DL_DIR": str(dl_dir), "SSTATE_DIR": str(sstate_dir)}

    logs = [tmp_path / f"build-{i}.log" for i in range(2)]
    started = time.monotonic()
    procs = [_start(runner, p, log, env) for p, log in zip(projects, logs, strict=True)]
    deadline = started + 240
    try:
        codes = [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.monotonic() - started
    outputs = [log.read_text(errors="replace") for log in logs]
    for i, out in enumerate(outputs):
        print(f"--- build {i} ({mode}), exit {codes[i]}\n{out[-6000:]}")
    print(f"two builds at once on {mode}: {elapsed:.1f} s")

    assert codes == [0, 0], "both builds must succeed (their output is above)"
    for out in outputs:
        assert "isar-standin: done (rootless)" in out

    # DL_DIR: exactly each download and its .done stamp, nothing half-written or left over
    assert sorted(os.listdir(dl_dir)) == sorted([*DOWNLOADS, *(f"{n}.done" for n in DOWNLOADS)])
    for name in DOWNLOADS:
        data = (dl_dir / name).read_bytes()
        assert (dl_dir / f"{name}.done").read_text() == f"{_sha256(data)}  {name}\n"
    data_file = (dl_dir / "standin-src-data-1.0.txt").read_bytes()
    assert data_file == _served_data(), "the download is complete"
    _check_source_tarball((dl_dir / "standin-src-1.0.tar.gz").read_bytes())

    # Every download fetched by one build; the other waited for its lock, then skipped it.
    fetch_logs = [_task_log(p, "fetch") for p in projects]
    for name in DOWNLOADS:
        fetched = [i for i, log in enumerate(fetch_logs) if f"{name}: fetched into" in log]
        skipped = [i for i, log in enumerate(fetch_logs) if f"{name}.done present" in log]
        assert len(fetched) == 1, f"{name} must be downloaded once, not by {fetched}"
        assert len(skipped) == 1 and skipped != fetched, f"the other build must reuse {name}"
        log = fetch_logs[skipped[0]]
        wait = log.find(f"isar-standin: waiting for lock /downloads/{name}.lock")
        assert 0 <= wait < log.find(f"{name}.done present"), (
            f"the build that reused {name} must have waited for its lock while the other "
            "fetched it: without that the builds did not overlap, or nothing locked"
        )
        assert re.search(rf"got lock /downloads/{re.escape(name)}\.lock after \d+\.\d s", log)

    # SSTATE_DIR: one archive per sstate task, with its sidecar, nothing else
    files = sorted(p.relative_to(sstate_dir) for p in sstate_dir.rglob("*") if not p.is_dir())
    archives = [f for f in files if f.suffix == ".tgz"]
    assert sorted(f for f in files if f not in archives) == sorted(
        a.with_name(f"{a.name}.sha256") for a in archives
    ), "only archives and their sidecars: no temporary archive, no lock left"
    found = {}
    for archive in archives:
        match = ARCHIVE.fullmatch(archive.name)
        assert match, archive
        digest = match["hash"]
        assert archive.parent == Path(digest[:2]) / digest[2:4]
        found[match["task"]] = archive
    assert sorted(found) == sorted(SSTATE_TASKS)
    for task, archive in found.items():
        data = (sstate_dir / archive).read_bytes()
        assert (sstate_dir / f"{archive}.sha256").read_text() == (
            f"{_sha256(data)}  {archive.name}\n"
        )
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = {m.name: m for m in tar.getmembers()}
            if task == "populate_sysroot":
                got = tar.extractfile(members["./usr/src/standin-src/standin-src-data-1.0.txt"])
                assert got is not None and got.read() == data_file
                assert "./usr/src/standin-src/standin-pkg/hello.c" in members
            else:
                manifest = tar.extractfile(members["./standin-src.manifest"])
                assert manifest is not None
                line = f"{_sha256(data_file)}  ./usr/src/standin-src/standin-src-data-1.0.txt"
                assert line in manifest.read().decode().splitlines()
        # written by one build, used as it is by the other
        wrote = [
            i for i, p in enumerate(projects) if f"wrote /sstate/{archive}" in _task_log(p, task)
        ]
        used = [
            i
            for i, p in enumerate(projects)
            if f"reused /sstate/{archive}" in _task_log(p, f"{task}_setscene")
            or re.search(rf"/sstate/{re.escape(str(archive))} .*not rewritten", _task_log(p, task))
        ]
        assert len(wrote) == 1 and len(used) == 1 and wrote != used, (task, wrote, used)

    deployed_at = Path("tmp/deploy/standin-src/standin-src.manifest")
    deployed = [(p.build / deployed_at).read_text() for p in projects]
    assert deployed[0] == deployed[1], "both builds deployed the same output"
    assert owners(caches) == {(runner.uid, runner.gid)}, "the caches belong to the user"
