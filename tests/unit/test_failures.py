"""A failed build names its cause: the failed tasks, their logs on the host, and the fix.

Each test lays out a build dir the way bitbake does (the console log under
tmp/log/cooker/<MACHINE>/, with its console-latest.log link; each task's
log under tmp/work/<distro-arch>/<recipe>/<ver>/temp/, with its log.do_x
link) and reads what kasctl would print after the container exited non-zero.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from kasctl import flow
from kasctl.build_system import BuildSystem
from kasctl.decide.plan import Mount, Request
from kasctl.engine import engines, image, launch
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts
from kasctl.input.options import Options
from kasctl.report import doctor, failures
from kasctl.report.failures import FailedTask, analyse, report, summarize

ROOT = Path(__file__).resolve().parent.parent.parent
ARCH = "debian-bookworm-amd64"
ISAR = "/work/isar/meta-isar"
IMAGE_BB = f"{ISAR}/recipes-core/images/isar-image-base.bb"
STAMP = "20250301101500"


class BuildDir:
    """A host dir mounted at /work, with kas's build dir at /work/build (the default)."""

    def __init__(self, root: Path, build: Path | None = None, target: str = "/work/build"):
        self.work = root / "proj"
        self.build = build or self.work / "build"
        self.target = target
        self.build.mkdir(parents=True, exist_ok=True)
        self.mounts: list[Mount] = [Mount(str(self.work), "/work")]
        if build is not None:
            self.mounts.append(Mount(str(build), target))
        self.since = time.time() - 5  # the run started a moment ago

    def task_log(
        self, recipe: str, task: str, text: str, *, ver: str = "1.0-r0", pid: int = 4242
    ) -> str:
        """Write a task's log on the host; return its path as bitbake names it (container)."""
        temp = self.build / "tmp" / "work" / ARCH / recipe / ver / "temp"
        temp.mkdir(parents=True, exist_ok=True)
        log = temp / f"log.{task}.{pid}"
        log.write_text(text)
        (temp / f"run.{task}.{pid}").write_text("#!/bin/sh\n")
        link = temp / f"log.{task}"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(log.name)
        return f"{self.target}/tmp/work/{ARCH}/{recipe}/{ver}/temp/log.{task}.{pid}"

    def console(self, text: str, *, machine: str = "qemuamd64", stamp: str = STAMP) -> Path:
        """Write this run's console log (and console-latest.log pointing at it)."""
        cooker = self.build / "tmp" / "log" / "cooker" / machine
        cooker.mkdir(parents=True, exist_ok=True)
        log = cooker / f"{stamp}.log"
        log.write_text(text)
        latest = cooker / "console-latest.log"
        if latest.is_symlink():
            latest.unlink()
        latest.symlink_to(log.name)
        return log

    def host(self, container_path: str) -> str:
        return str(self.build) + container_path.removeprefix(self.target)

    def summarize(self) -> list[str]:
        return summarize(self.build, self.mounts, self.since)

    def tasks(self) -> tuple[FailedTask, ...]:
        summary = analyse(self.build, self.mounts, self.since)
        assert summary is not None
        return summary.tasks


def task_failure(
    pnv: str, recipe_file: str, task: str, log: str | None, quoted: str = "", code: int = 1
) -> str:
    """The console lines bitbake writes when a shell task fails."""
    run = (log or f"/work/build/tmp/work/{ARCH}/x/1.0-r0/temp/log.{task}.1").replace(
        "/log.", "/run."
    )
    lines = [f"ERROR: {pnv} {task}: Execution of '{run}' failed with exit code {code}"]
    if log:
        lines.append(f"ERROR: Logfile of failure stored in: {log}")
    if quoted:
        lines.append("Log data follows:")
        lines += [f"| {line}" for line in quoted.splitlines()]
    lines.append(f"ERROR: Task ({recipe_file}:{task}) failed with exit code '{code}'")
    return "\n".join(lines) + "\n"


def console_of(*failed: str, tasks: int = 1) -> str:
    """A whole console log around the failures, as bitbake writes it."""
    head = (
        "NOTE: Reconnecting to bitbake server...\n"
        "Loading cache: 100% |###########################################| Time: 0:00:01\n"
        "Loaded 1832 entries from dependency cache.\n"
        "NOTE: Resolving any missing task queue dependencies\n"
        "Initialising tasks: 100% |######################################| Time: 0:00:00\n"
        "NOTE: Executing Tasks\n"
    )
    tail = (
        f"NOTE: Tasks Summary: Attempted 214 tasks of which 200 didn't need to be rerun "
        f"and {tasks} failed.\n"
        f"Summary: {tasks} task{'s' if tasks > 1 else ''} failed:\n"
        "Summary: There were 2 ERROR messages, returned a non-zero exit status.\n"
    )
    return head + "".join(failed) + tail


def shell_log(*body: str, function: str = "do_rootfs_install") -> str:
    """A shell task's log, with the error somewhere before bitbake's own last lines."""
    return "\n".join(
        [
            f"DEBUG: Executing shell function {function}",
            *(
                f"Get:{i} http://deb.debian.org/debian bookworm/main pkg{i} [12 kB]"
                for i in range(30)
            ),
            *body,
            "WARNING: exit code 1 from a shell command.",
            "",
        ]
    )


def blocker_output(*argv: str) -> str:
    """What kasctl's image prints when a step calls sudo (its real blocker script)."""
    result = subprocess.run(
        ["sh", str(ROOT / "container" / "sudo-blocked"), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    return result.stderr


def cause_and_fix(lines: list[str]) -> tuple[str, str]:
    causes = [line for line in lines if re.match(r"kasctl: +cause: ", line)]
    fixes = [line for line in lines if re.match(r"kasctl: +fix: ", line)]
    assert len(causes) == 1 and len(fixes) == 1, lines
    return causes[0], fixes[0]


def test_a_failed_task_is_named_with_its_host_log(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    log = b.task_log("isar-image-base-qemuamd64", "do_rootfs_install", shell_log("E: oops"))
    b.console(
        console_of(task_failure("isar-image-base-1.0-r0", IMAGE_BB, "do_rootfs_install", log))
    )

    assert b.summarize() == [
        "kasctl: the build failed in 1 task:",
        "kasctl:   isar-image-base.bb:do_rootfs_install",
        f"kasctl:     log: {b.work}/build/tmp/work/{ARCH}/isar-image-base-qemuamd64/1.0-r0"
        "/temp/log.do_rootfs_install.4242",
    ]
    (task,) = b.tasks()
    assert task.recipe_file == IMAGE_BB
    assert (
        task.host_recipe_file == f"{b.work}/isar/meta-isar/recipes-core/images/isar-image-base.bb"
    )
    assert task.task == "do_rootfs_install"
    assert task.recipe == "isar-image-base-qemuamd64"
    assert task.log == log
    assert task.host_log is not None and Path(task.host_log).is_file()
    assert task.failure is None


# One case per rootless failure kasctl knows: the task log's words, what the
# user must read in the cause and in the fix.
KNOWN = [
    pytest.param(
        "do_bootstrap",
        [
            "I: automatically chosen mode: unshare",
            "I: chroot architecture amd64 is equal to the host's architecture",
            "newuidmap: write to uid_map failed: Operation not permitted",
            "E: setting up uid_map failed: 256",
            "E: mmdebstrap failed to run",
        ],
        "userns-refused",
        ["user namespace", "CAP_SYS_ADMIN", "seccomp"],
        ["--runtime-args", "kasctl doctor", "no-new-privileges", "seccomp profile must be podman"],
        id="newuidmap-not-permitted",
    ),
    pytest.param(
        "do_bootstrap",
        [
            "I: automatically chosen mode: unshare",
            "newgidmap: write to gid_map failed: Operation not permitted",
            "E: setting up gid_map failed: 256",
        ],
        "userns-refused",
        ["user namespace"],
        ["kasctl doctor"],
        id="newgidmap-not-permitted",
    ),
    pytest.param(
        "do_bootstrap",
        [
            "I: automatically chosen mode: unshare",
            "newuidmap: write to uid_map failed: Invalid argument",
            "E: setting up uid_map failed: 256",
        ],
        "subid-outside-map",
        ["/etc/subuid", "id map"],
        ["kasctl doctor", "overlap"],
        id="newuidmap-invalid-argument",
    ),
    pytest.param(
        "do_rootfs_install",
        [
            "+ unshare --mount --mount-proc --pid --fork -- /bin/true",
            "unshare: mount /proc failed: Operation not permitted",
        ],
        "proc-masked",
        ["/proc", "masked"],
        ["unmask=ALL", "systempaths=unconfined", "isar-rootless"],
        id="mount-proc-refused",
    ),
    pytest.param(
        "do_rootfs_install",
        ["mount: /proc: fsmount() failed: VFS: Mount too revealing."],
        "proc-masked",
        ["/proc"],
        ["unmask=ALL"],
        id="mount-too-revealing",
    ),
    pytest.param(
        "do_rootfs_install",
        [
            "+ bwrap --bind /work/build/tmp/work/rootfs / --dev /dev --proc /proc apt-get",
            "bwrap: pivot_root: Operation not permitted",
        ],
        "pivot-root-refused",
        ["seccomp", "pivot_root", "bubblewrap"],
        ["containers-common", "golang-github-containers-common", "never"],
        id="bwrap-pivot-root",
    ),
    pytest.param(
        "do_rootfs_install",
        [
            "+ bwrap --bind rootfs / --bind /work/build/tmp/deploy /bin apt-get update",
            "bwrap: Can't mount on symlink destination /bin: Too many levels of symbolic links",
        ],
        "bwrap-symlink-destination",
        ["0.12", "merged-/usr"],
        ["kasctl's image", "bwrap wrapper"],
        id="bwrap-symlink-destination",
    ),
    pytest.param(
        "do_bootstrap",
        ["ERROR: No sub-id range specified for user builder"],
        "no-subid-range",
        ["sub-id range", "/etc/subuid"],
        ["100000:65536", "kasctl doctor", "podman system migrate"],
        id="isar-no-subid-range",
    ),
    pytest.param(
        "do_bootstrap",
        ["I: automatically chosen mode: unshare", "E: no entry in /etc/subuid for builder"],
        "no-subid-range",
        ["sub-id range"],
        ["kasctl doctor"],
        id="mmdebstrap-no-subuid-entry",
    ),
    pytest.param(
        "do_bootstrap",
        ["E: /etc/subgid does not contain an entry for builder"],
        "no-subid-range",
        ["sub-id range"],
        ["podman system migrate"],
        id="mmdebstrap-subgid-no-entry",
    ),
    pytest.param(
        "do_dpkg_build",
        [
            "I: NOTICE: Log filtering will replace 'build/hello-1.0' with '<<PKGBUILDDIR>>'",
            "hostname: you must be root to change the host name",
            "E: Error creating chroot session: skipping hello",
        ],
        "sbuild-sethostname",
        ["sbuild", "sethostname", "seccomp"],
        ["kasctl's own plan", "seccomp"],
        id="sbuild-hostname",
    ),
    pytest.param(
        "do_dpkg_build",
        [
            "I: Unpacking /work/build/tmp/schroot-overlay/chroot.tar.zst",
            'Can\'t exec "ip": No such file or directory at /usr/bin/sbuild-usernsexec line 95.',
        ],
        "sbuild-no-ip",
        ["iproute2"],
        ["iproute2"],
        id="sbuild-usernsexec-no-ip",
    ),
]


@pytest.mark.parametrize(("task", "body", "key", "in_cause", "in_fix"), KNOWN)
def test_a_known_rootless_failure_gets_its_cause_and_fix(
    tmp_path: Path, task: str, body: list[str], key: str, in_cause: list[str], in_fix: list[str]
) -> None:
    b = BuildDir(tmp_path)
    log = b.task_log("isar-image-base-qemuamd64", task, shell_log(*body, function=task))
    b.console(console_of(task_failure("isar-image-base-1.0-r0", IMAGE_BB, task, log)))

    lines = b.summarize()
    cause, fix = cause_and_fix(lines)
    assert lines[:3] == [
        "kasctl: the build failed in 1 task:",
        f"kasctl:   isar-image-base.bb:{task}",
        f"kasctl:     log: {b.host(log)}",
    ]
    assert lines[3:] == [cause, fix]  # cause and fix are the last lines
    assert cause.startswith("kasctl:     cause: ")
    assert fix.startswith("kasctl:     fix: ")
    for words in in_cause:
        assert words in cause
    for words in in_fix:
        assert words in fix
    (found,) = b.tasks()
    assert found.failure is not None and found.failure.key == key


def test_an_error_far_above_the_tail_of_a_long_log_is_not_blamed(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    early = "bwrap: pivot_root: Operation not permitted\n"
    noise = "".join(f"checking for feature {i}... yes\n" for i in range(5000))
    log = b.task_log("hello", "do_compile", early + noise + "make: *** [all] Error 2\n")
    b.console(console_of(task_failure("hello-1.0-r0", f"{ISAR}/hello/hello.bb", "do_compile", log)))

    (task,) = b.tasks()
    assert task.failure is None
    assert not any("cause:" in line for line in b.summarize())


def test_sudo_blocked_names_the_recipe_that_called_it(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    layer_bb = "/work/meta-custom/recipes-app/customtool/customtool_2.1.bb"
    blocked = blocker_output("-E", "chroot", "/work/build/tmp/rootfs", "dpkg", "-i", "x.deb")
    log = b.task_log(
        "customtool",
        "do_install_into_rootfs",
        shell_log("+ sudo -E chroot /work/build/tmp/rootfs dpkg -i x.deb", *blocked.splitlines()),
        ver="2.1-r0",
    )
    b.console(
        console_of(task_failure("customtool-2.1-r0", layer_bb, "do_install_into_rootfs", log))
    )

    lines = b.summarize()
    cause, fix = cause_and_fix(lines)
    assert lines[1] == "kasctl:   customtool_2.1.bb:do_install_into_rootfs"
    assert f"{b.work}/meta-custom/recipes-app/customtool/customtool_2.1.bb" in cause
    assert "sudo" in cause and "rootless" in cause
    assert "run_privileged" in fix and "--isar-privileged" in fix
    (task,) = b.tasks()
    assert task.recipe == "customtool"
    assert task.failure is not None and task.failure.key == "sudo-blocked"


def test_sudo_blocked_in_an_image_task_names_the_image_recipe(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    blocked = blocker_output("mount", "-t", "proc", "proc", "rootfs/proc")
    log = b.task_log(
        "isar-image-base-qemuamd64", "do_rootfs_postprocess", shell_log(*blocked.splitlines())
    )
    b.console(
        console_of(task_failure("isar-image-base-1.0-r0", IMAGE_BB, "do_rootfs_postprocess", log))
    )

    cause, _ = cause_and_fix(b.summarize())
    assert f"{b.work}/isar/meta-isar/recipes-core/images/isar-image-base.bb" in cause


def test_several_failed_tasks_are_each_reported_once_in_order(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    pivot = b.task_log(
        "isar-image-base-qemuamd64",
        "do_rootfs_install",
        shell_log("bwrap: pivot_root: Operation not permitted"),
    )
    hello_bb = f"{ISAR}/recipes-app/hello/hello.bb"
    hello = b.task_log("hello", "do_dpkg_build", shell_log("dh: error: oops"), pid=77)
    failed = [
        task_failure("isar-image-base-1.0-r0", IMAGE_BB, "do_rootfs_install", pivot),
        "NOTE: recipe hello-1.0-r0: task do_dpkg_build: Started\n",
        task_failure("hello-1.0-r0", hello_bb, "do_dpkg_build", hello),
        # bitbake -k may repeat a task's failure line: it is still one failed task
        f"ERROR: Task ({hello_bb}:do_dpkg_build) failed with exit code '1'\n",
    ]
    b.console(console_of(*failed, tasks=2))

    lines = b.summarize()
    assert lines[0] == "kasctl: the build failed in 2 tasks:"
    names = [line for line in lines if line.startswith("kasctl:   ") and ":do_" in line]
    assert names == [
        "kasctl:   isar-image-base.bb:do_rootfs_install",
        "kasctl:   hello.bb:do_dpkg_build",
    ]
    first, second = b.tasks()
    assert first.failure is not None and first.failure.key == "pivot-root-refused"
    assert second.failure is None
    assert second.host_log == b.host(hello)
    # the cause belongs to the first task, under it, not under the second
    assert lines.index(names[1]) > next(i for i, x in enumerate(lines) if "cause:" in x)


def test_interleaved_failures_keep_each_task_with_its_own_log(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    foo = b.task_log("foo", "do_fetch", "ERROR: foo fetch failed\n", pid=1)
    bar = b.task_log("bar", "do_fetch", "bwrap: pivot_root: Operation not permitted\n", pid=2)
    b.console(
        console_of(
            f"ERROR: Logfile of failure stored in: {foo}\n",
            f"ERROR: Logfile of failure stored in: {bar}\n",
            "ERROR: Task (/work/meta/bar/bar_1.0.bb:do_fetch) failed with exit code '1'\n",
            "ERROR: Task (/work/meta/foo/foo_1.0.bb:do_fetch) failed with exit code '1'\n",
            tasks=2,
        )
    )

    bar_task, foo_task = b.tasks()
    assert (bar_task.recipe, bar_task.log) == ("bar", bar)
    assert (foo_task.recipe, foo_task.log) == ("foo", foo)
    assert bar_task.failure is not None and foo_task.failure is None


def test_multiconfig_and_virtual_targets_keep_their_prefix(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    mc_log = b.task_log("hello", "do_fetch", "ERROR: Fetcher failure\n")
    native_log = b.task_log("sbuild-chroot-host", "do_compile", "make: Error 2\n")
    native_bb = f"{ISAR}/recipes-devtools/sbuild-chroot/sbuild-chroot-host.bb"
    b.console(
        console_of(
            task_failure(
                "mc:foo:hello-1.0-r0", f"mc:foo:{ISAR}/hello/hello.bb", "do_fetch", mc_log
            ),
            task_failure(
                "sbuild-chroot-host-1.0-r0", f"virtual:native:{native_bb}", "do_compile", native_log
            ),
            task_failure("x", f"mc:bar:virtual:native:{native_bb}", "do_compile", None, code=2),
            tasks=3,
        )
    )

    lines = b.summarize()
    assert "kasctl:   mc:foo:hello.bb:do_fetch" in lines
    assert "kasctl:   virtual:native:sbuild-chroot-host.bb:do_compile" in lines
    assert "kasctl:   mc:bar:virtual:native:sbuild-chroot-host.bb:do_compile" in lines
    mc, native, both = b.tasks()
    assert (mc.variant, mc.recipe_file, mc.task) == ("mc:foo", f"{ISAR}/hello/hello.bb", "do_fetch")
    assert mc.host_log == b.host(mc_log)
    assert (native.variant, native.recipe_file) == ("virtual:native", native_bb)
    assert native.host_log == b.host(native_log)
    assert (both.variant, both.recipe_file) == ("mc:bar:virtual:native", native_bb)
    assert both.target == f"mc:bar:virtual:native:{native_bb}:do_compile"


def test_a_task_without_a_logfile_is_still_reported(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    console = b.console(
        console_of(
            "ERROR: hello-1.0-r0 do_fetch: Fetcher failure: Unable to find file "
            "file://fix.patch anywhere. The paths that were searched were:\n"
            "    /work/isar/meta-isar/recipes-app/hello/files\n"
            "ERROR: hello-1.0-r0 do_fetch: Bitbake Fetcher Error: FetchError('Unable to fetch')\n"
            f"ERROR: Task ({ISAR}/recipes-app/hello/hello_1.0.bb:do_fetch) failed with "
            "exit code '1'\n"
        )
    )

    assert b.summarize() == [
        "kasctl: the build failed in 1 task:",
        "kasctl:   hello_1.0.bb:do_fetch",
        f"kasctl:     log: none named; see {console}",
    ]
    (task,) = b.tasks()
    assert (task.task, task.log, task.host_log) == ("do_fetch", None, None)


def test_a_cause_in_the_console_only_is_found(tmp_path: Path) -> None:
    # the task log is where kasctl cannot read it, but bitbake quoted its tail
    b = BuildDir(tmp_path)
    log = f"/tmp/isar-tmp/work/{ARCH}/isar-image-base-qemuamd64/1.0-r0/temp/log.do_bootstrap.9"
    b.console(
        console_of(
            task_failure(
                "isar-image-base-1.0-r0",
                IMAGE_BB,
                "do_bootstrap",
                log,
                quoted=shell_log("E: no entry in /etc/subuid for builder"),
            )
        )
    )

    lines = b.summarize()
    assert f"kasctl:     log: {log} (in the container)" in lines
    cause, _ = cause_and_fix(lines)
    assert "sub-id range" in cause


def test_a_failure_before_any_task_points_at_bitbakes_log(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    console = b.console(
        "NOTE: Reconnecting to bitbake server...\n"
        "ERROR: ExpansionError during parsing /work/isar/meta/classes/rootfs.bbclass\n"
        "ERROR: No sub-id range specified for builder in /etc/subuid\n"
        "ERROR: Parsing halted due to errors, see error messages above\n"
    )

    lines = b.summarize()
    assert lines[0] == f"kasctl: the build failed before any task failed; see {console}"
    cause, fix = cause_and_fix(lines)
    assert "sub-id range" in cause
    assert "podman system migrate" in fix


def test_a_console_log_from_an_earlier_run_is_ignored(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    log = b.task_log("hello", "do_compile", "bwrap: pivot_root: Operation not permitted\n")
    old = b.console(console_of(task_failure("hello-1.0-r0", "/work/h/hello.bb", "do_compile", log)))
    an_hour_ago = b.since - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert b.summarize() == []


def test_the_newest_console_log_of_this_run_is_read(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    old = b.console(
        console_of(task_failure("a-1.0-r0", "/work/a/a.bb", "do_fetch", None)),
        stamp="20250301090000",
    )
    os.utime(old, (b.since - 3600, b.since - 3600))
    earlier = b.console(
        console_of(task_failure("b-1.0-r0", "/work/b/b.bb", "do_fetch", None)),
        machine="qemuarm64",
        stamp="20250301101400",
    )
    os.utime(earlier, (b.since + 1, b.since + 1))
    newest = b.console(console_of(task_failure("c-1.0-r0", "/work/c/c.bb", "do_fetch", None)))
    os.utime(newest, (b.since + 2, b.since + 2))
    # console-latest.log, touched last, is a link to a log, not a log of its own
    latest = newest.parent / "console-latest.log"
    os.utime(latest, (b.since + 9, b.since + 9), follow_symlinks=False)

    lines = b.summarize()
    assert lines[:2] == ["kasctl: the build failed in 1 task:", "kasctl:   c.bb:do_fetch"]
    assert len([line for line in lines if line.startswith("kasctl:   ") and ":do_" in line]) == 1


def test_no_console_log_means_nothing_is_printed(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    assert b.summarize() == []  # the build dir exists, bitbake never ran
    assert summarize(tmp_path / "no-such-build", b.mounts, b.since) == []
    (b.build / "tmp" / "log" / "cooker").mkdir(parents=True)
    (b.build / "tmp" / "log" / "cooker" / "stray-file").write_text("x")
    assert b.summarize() == []


def test_unreadable_and_binary_logs_give_no_traceback(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    binary = b.task_log("a", "do_compile", "")
    Path(b.host(binary)).write_bytes(os.urandom(64 * 1024) + b"\xff\xfe\x00bwrap")
    fifo = b.task_log("b", "do_compile", "")
    Path(b.host(fifo)).unlink()
    os.mkfifo(b.host(fifo))  # reading it would block forever
    directory = b.task_log("c", "do_compile", "")
    Path(b.host(directory)).unlink()
    Path(b.host(directory)).mkdir()
    missing = f"/work/build/tmp/work/{ARCH}/d/1.0-r0/temp/log.do_compile.5"
    console = b.console(
        console_of(
            task_failure("a-1.0-r0", "/work/m/a.bb", "do_compile", binary),
            task_failure("b-1.0-r0", "/work/m/b.bb", "do_compile", fifo),
            task_failure("c-1.0-r0", "/work/m/c.bb", "do_compile", directory),
            task_failure("d-1.0-r0", "/work/m/d.bb", "do_compile", missing),
            tasks=4,
        )
    )
    # and the console log itself with bytes that are not UTF-8
    console.write_bytes(b"\xc3\x28 garbage \x80\n" + console.read_bytes() + b"\xff\n")

    lines = b.summarize()
    assert [t.recipe_file for t in b.tasks()] == [f"/work/m/{x}.bb" for x in "abcd"]
    assert not any("cause:" in line for line in lines)
    assert f"kasctl:     log: {b.host(missing)}" in lines


def test_a_console_log_that_is_not_text_names_no_task(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    console = b.console("")
    console.write_bytes(bytes(range(256)) * 64)

    assert b.summarize() == [f"kasctl: the build failed before any task failed; see {console}"]


def test_nested_mounts_translate_by_the_longest_prefix(tmp_path: Path) -> None:
    # KAS_BUILD_DIR outside the work dir: /work and /work/build mounted separately
    build = tmp_path / "scratch" / "isar-build"
    b = BuildDir(tmp_path, build=build, target="/work/build")
    log = b.task_log("hello", "do_compile", "bwrap: pivot_root: Operation not permitted\n")
    b.console(console_of(task_failure("hello-1.0-r0", f"{ISAR}/hello/hello.bb", "do_compile", log)))

    (task,) = b.tasks()
    assert task.host_log == f"{build}/tmp/work/{ARCH}/hello/1.0-r0/temp/log.do_compile.4242"
    assert task.host_recipe_file == f"{b.work}/isar/meta-isar/hello/hello.bb"
    assert task.failure is not None  # read through the right mount
    assert f"kasctl:     log: {task.host_log}" in b.summarize()


def test_a_build_dir_mounted_at_build_is_translated(tmp_path: Path) -> None:
    build = tmp_path / "elsewhere"
    b = BuildDir(tmp_path, build=build, target="/build")
    log = b.task_log("hello", "do_compile", "make: Error 2\n")
    assert log.startswith("/build/tmp/work/")
    b.console(console_of(task_failure("hello-1.0-r0", "/work/meta/hello.bb", "do_compile", log)))

    (task,) = b.tasks()
    assert task.host_log == f"{build}/tmp/work/{ARCH}/hello/1.0-r0/temp/log.do_compile.4242"


def test_a_path_outside_every_mount_is_shown_as_in_the_container(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    # /workx is not below /work
    log = "/workx/tmp/work/hello/1.0-r0/temp/log.do_compile.3"
    b.console(console_of(task_failure("hello-1.0-r0", "/opt/layers/hello.bb", "do_compile", log)))

    lines = b.summarize()
    assert f"kasctl:     log: {log} (in the container)" in lines
    (task,) = b.tasks()
    assert (task.host_log, task.host_recipe_file) == (None, None)


def test_path_translation_is_component_wise() -> None:
    mounts = [
        Mount("/srv/build", "/work/build"),
        Mount("/home/me/proj", "/work"),
        Mount("/home/me/proj/.git-file", "/repo/.git", readonly=True),
    ]
    assert failures.to_host("/work/build/tmp/x", mounts) == "/srv/build/tmp/x"
    assert failures.to_host("/work/builds/x", mounts) == "/home/me/proj/builds/x"
    assert failures.to_host("/work", mounts) == "/home/me/proj"
    assert failures.to_host("/work//build/./y", mounts) == "/srv/build/y"
    assert failures.to_host("/workx/y", mounts) is None
    assert failures.to_host("/repo/.git", mounts) == "/home/me/proj/.git-file"
    assert failures.to_host("/repo/kas.yml", mounts) is None


def test_report_prints_the_lines_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = BuildDir(tmp_path)
    log = b.task_log("hello", "do_compile", "bwrap: pivot_root: Operation not permitted\n")
    b.console(console_of(task_failure("hello-1.0-r0", "/work/m/hello.bb", "do_compile", log)))

    report(b.build, b.mounts, b.since)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == b.summarize()
    assert err.splitlines()[-1].startswith("kasctl:     fix: ")


def test_report_never_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> list[str]:
        raise RuntimeError("a bug in reading logs")

    monkeypatch.setattr(failures, "summarize", broken)
    report(tmp_path, [], 0.0)
    assert capsys.readouterr().err == ""


# The hook: kasctl's run of a build reports after the container exits non-zero.


def run_plan_and_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, status: int
) -> str:
    """Run flow.plan_and_run with a stand-in engine whose 'bitbake' leaves a failed log."""
    work = tmp_path / "proj"
    work.mkdir()
    monkeypatch.delenv("KAS_BUILD_DIR", raising=False)
    monkeypatch.setattr(doctor, "preflight", lambda *_a, **_k: None)
    monkeypatch.setattr(image, "image_labels", lambda *_a: {"io.kasctl.version": "test"})
    monkeypatch.setattr(launch, "leftovers", lambda *_a: ([], []))

    def container(_plan: object) -> int:
        b = BuildDir(tmp_path)
        log = b.task_log("hello", "do_compile", "bwrap: pivot_root: Operation not permitted\n")
        b.console(console_of(task_failure("hello-1.0-r0", "/work/hello.bb", "do_compile", log)))
        return status

    monkeypatch.setattr(engines, "run", container)
    req = Request(
        command=command,
        build_system=BuildSystem.OPENEMBEDDED,
        work_dir=work,
        image="localhost/kasctl/kas:test",
        name="kasctl-unit",
    )
    host = HostFacts(uid=1000, gid=1000, user="me", home=str(tmp_path))
    engine = EngineFacts(mode=EngineMode.ROOTFUL_PODMAN, binary="/usr/bin/podman", version="5")
    result = flow.plan_and_run(req, host, engine, Options())
    assert result == status
    return str(work)


def test_a_failed_build_run_ends_with_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = run_plan_and_container(tmp_path, monkeypatch, "build", 1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "kasctl: the build failed in 1 task:"
    assert (
        f"kasctl:     log: {work}/build/tmp/work/{ARCH}/hello/1.0-r0/temp/log.do_compile.4242"
        in lines
    )
    assert lines[-1].startswith("kasctl:     fix: ")


@pytest.mark.parametrize(("command", "status"), [("build", 0), ("shell", 1), ("checkout", 1)])
def test_no_report_after_success_or_for_commands_that_do_not_build(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    status: int,
) -> None:
    run_plan_and_container(tmp_path, monkeypatch, command, status)
    assert "the build failed" not in capsys.readouterr().err


def test_analysed_is_the_analysis_itself_when_the_logs_can_be_read(tmp_path: Path) -> None:
    """The guard around the analysis passes its result through, whatever it holds."""
    b = BuildDir(tmp_path)
    log = b.task_log("isar-image-base-qemuamd64", "do_rootfs_install", shell_log("E: oops"))
    b.console(
        console_of(task_failure("isar-image-base-1.0-r0", IMAGE_BB, "do_rootfs_install", log))
    )
    guarded = failures.analysed(b.build, b.mounts, b.since)
    assert guarded == analyse(b.build, b.mounts, b.since)
    assert guarded is not None and [t.task for t in guarded.tasks] == ["do_rootfs_install"]
