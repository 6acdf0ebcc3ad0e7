"""A failed build's report at its edges (found by mutmut, tests/MUTATION.md).

What the rest of the suite let change unnoticed: which console log is this
run's (a symlinked machine dir, a stray file, a log that vanishes, one
stamped the second the run began), long logs read across their cut and
across reads, recipe paths with a colon, interleaved logs of recipes
without a version, and the debug line when reading the logs fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kasctl.decide.plan import Mount
from kasctl.report import failures
from kasctl.report.failures import TAIL_BYTES, analyse, report, tail, to_host
from tests.unit.test_failures import (  # the same build dir layout and console lines
    ARCH,
    ISAR,
    BuildDir,
    cause_and_fix,
    console_of,
    task_failure,
)

PIVOT = "bwrap: pivot_root: Operation not permitted"

# --------------------------------------------------------------------------
# paths: the mount that holds a path, component by component
# --------------------------------------------------------------------------


def test_a_mount_at_the_root_holds_every_path() -> None:
    assert to_host("/work/x.bb", [Mount("/srv/root", "/")]) == "/srv/root/work/x.bb"
    assert to_host("/", [Mount("/srv/root", "/")]) == "/srv/root"


def test_a_mount_whose_name_extends_a_directory_does_not_hold_it() -> None:
    assert to_host("/work/build/tmp", [Mount("/srv/b", "/work/buildX")]) is None
    assert to_host("/work/buildX/tmp", [Mount("/srv/b", "/work/buildX")]) == "/srv/b/tmp"


# --------------------------------------------------------------------------
# which console log is this run's
# --------------------------------------------------------------------------


@pytest.fixture
def scan_in_name_order(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """List directories in name order (the real order is the filesystem's), with faults.

    `unreadable`: directories whose listing fails (EACCES, as for another user's dir);
    `vanishing`: files removed right after their directory was listed (a log rotated).
    """
    real = os.scandir

    def setup(unreadable: tuple[Path, ...] = (), vanishing: tuple[Path, ...] = ()) -> None:
        def scandir(path: str | Path) -> Iterator[os.DirEntry[str]]:
            if Path(path) in unreadable:
                raise PermissionError(13, "Permission denied", str(path))
            with real(path) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if Path(entry.path) in vanishing:
                    Path(entry.path).unlink()
            return iter(entries)

        monkeypatch.setattr(os, "scandir", scandir)

    return setup


def _one_task_console(b: BuildDir, machine: str = "qemuamd64", stamp: str = "2") -> Path:
    log = b.task_log("hello", "do_compile", f"{PIVOT}\n")
    return b.console(
        console_of(task_failure("hello-1.0-r0", "/work/hello.bb", "do_compile", log)),
        machine=machine,
        stamp=stamp,
    )


def test_a_stray_file_or_unreadable_dir_among_the_machines_is_passed_over(
    tmp_path: Path, scan_in_name_order: Callable[..., None]
) -> None:
    b = BuildDir(tmp_path)
    cooker = b.build / "tmp" / "log" / "cooker"
    cooker.mkdir(parents=True)
    (cooker / "0-stray-file").write_text("x\n")
    (cooker / "1-locked").mkdir()
    console = _one_task_console(b, machine="qemuamd64")
    scan_in_name_order(unreadable=(cooker / "1-locked",))

    summary = analyse(b.build, b.mounts, b.since)
    assert summary is not None and summary.console_log == console


def test_a_log_that_vanishes_while_scanned_is_passed_over(
    tmp_path: Path, scan_in_name_order: Callable[..., None]
) -> None:
    b = BuildDir(tmp_path)
    gone = b.console("rotated away\n", stamp="1")
    console = _one_task_console(b, stamp="2")
    scan_in_name_order(vanishing=(gone,))

    summary = analyse(b.build, b.mounts, b.since)
    assert summary is not None and summary.console_log == console


def test_a_symlinked_machine_dir_is_not_followed(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    console = _one_task_console(b)
    os.utime(console, (b.since + 1, b.since + 1))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "3.log").write_text("ERROR: No sub-id range specified for user builder\n")
    os.utime(elsewhere / "3.log", (b.since + 5, b.since + 5))
    (b.build / "tmp" / "log" / "cooker" / "qemuarm64").symlink_to(elsewhere)

    summary = analyse(b.build, b.mounts, b.since)
    assert summary is not None and summary.console_log == console


def test_a_log_stamped_the_second_the_run_started_is_this_runs(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    b.since = float(int(b.since))  # a whole second, exactly representable
    console = _one_task_console(b)
    os.utime(console, (b.since, b.since))

    summary = analyse(b.build, b.mounts, b.since)
    assert summary is not None and summary.console_log == console


# --------------------------------------------------------------------------
# long logs: the tail, the cut line, several reads
# --------------------------------------------------------------------------


def test_tail_is_the_last_lines_joined_by_newlines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("a\nb\nc\nd\ne\n")
    assert tail(log, 3) == "c\nd\ne"
    assert tail(log) == "a\nb\nc\nd\ne"


def test_the_cause_at_the_end_of_a_log_longer_than_the_tail_is_found(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    noise = "".join(f"checking for feature {i}... yes\n" for i in range(20000))
    assert len(noise) > TAIL_BYTES
    log = b.task_log("hello", "do_compile", noise + f"{PIVOT}\nmake: *** [all] Error 1\n")
    b.console(console_of(task_failure("hello-1.0-r0", "/work/h/hello.bb", "do_compile", log)))

    cause, _ = cause_and_fix(b.summarize())
    assert "pivot_root" in cause


def test_the_line_cut_by_the_tail_is_left_out_even_one_byte_in(tmp_path: Path) -> None:
    log = tmp_path / "log"
    first = f"x{PIVOT}\n"  # the read starts one byte in: this line's rest looks like an error
    rest = "".join(f"line {i:06}\n" for i in range(TAIL_BYTES // 12 + 1))
    log.write_text(first + rest[: TAIL_BYTES + 1 - len(first)])
    assert log.stat().st_size == TAIL_BYTES + 1

    text = tail(log, 10**6)
    assert text is not None
    assert PIVOT not in text
    assert text.startswith("line 000000\n")


def test_a_console_log_longer_than_one_read_is_joined_whole(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    failed = "ERROR: Task (/work/h/hello.bb:do_compile) failed with exit code '1'\n"
    # the failure line straddles the end of the first read (1 MiB), 20 bytes in
    note = "NOTE: a long line of progress "
    filler = note + "." * (1024 * 1024 - 20 - len(note) - 1) + "\n"
    b.console(filler + failed)
    assert len(filler) + 20 == 1024 * 1024

    (task,) = b.tasks()
    assert task.recipe_file == "/work/h/hello.bb"


# --------------------------------------------------------------------------
# bitbake's targets: prefix and recipe file, a colon in the path
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "variant", "recipe_file"),
    [
        ("mc:foo:/work/layers/meta:odd/x.bb", "mc:foo", "/work/layers/meta:odd/x.bb"),
        ("/work/layers/meta:odd/x.bb", "", "/work/layers/meta:odd/x.bb"),
        (
            "mc:a:virtual:native:/work/l:1/x.bb",
            "mc:a:virtual:native",
            "/work/l:1/x.bb",
        ),
        # a path bitbake gives relative: the prefix is up to the last colon
        ("mc:foo:meta-foo/x.bb", "mc:foo", "meta-foo/x.bb"),
        ("x.bb", "", "x.bb"),
    ],
)
def test_a_target_splits_into_prefix_and_recipe_file(
    tmp_path: Path, target: str, variant: str, recipe_file: str
) -> None:
    b = BuildDir(tmp_path)
    b.console(console_of(f"ERROR: Task ({target}:do_fetch) failed with exit code '1'\n"))

    (task,) = b.tasks()
    assert (task.variant, task.recipe_file, task.task) == (variant, recipe_file, "do_fetch")


# --------------------------------------------------------------------------
# which log belongs to which task
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("hello", "hello.bb"), ("world", "world.bb")),
        (("foo", "foo_1.0.bb"), ("bar", "bar_2.0.bb")),
        (
            ("isar-image-base-qemuamd64", "isar-image-base.bb"),
            ("isar-image-debug-qemuamd64", "isar-image-debug.bb"),
        ),
    ],
    ids=["no-version", "versioned", "images"],
)
def test_interleaved_logs_go_to_their_own_recipe_in_either_order(
    tmp_path: Path, first: tuple[str, str], second: tuple[str, str]
) -> None:
    b = BuildDir(tmp_path)
    logs = {}
    for n, (recipe, _) in enumerate((first, second)):
        logs[recipe] = b.task_log(recipe, "do_fetch", f"ERROR: {recipe} failed\n", pid=n + 1)
    lines = [f"ERROR: Logfile of failure stored in: {logs[r]}\n" for r, _ in (first, second)]
    # the failures come in the order of their logs: the last log is not the first's
    lines += [
        f"ERROR: Task ({ISAR}/recipes-app/{f.partition('.')[0]}/{f}:do_fetch) "
        "failed with exit code '1'\n"
        for _, f in (first, second)
    ]
    b.console(console_of(*lines, tasks=2))

    one, two = b.tasks()
    assert (one.recipe, one.log) == (first[0], logs[first[0]])
    assert (two.recipe, two.log) == (second[0], logs[second[0]])


def test_a_logfile_named_unlike_bitbakes_is_no_tasks_log(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    console = b.console(
        console_of(
            "ERROR: Logfile of failure stored in: "
            f"/work/build/tmp/work/{ARCH}/hello/1.0-r0/temp/notes.txt\n",
            "ERROR: Task (/work/h/hello.bb:do_fetch) failed with exit code '1'\n",
        )
    )

    assert b.summarize() == [
        "kasctl: the build failed in 1 task:",
        "kasctl:   hello.bb:do_fetch",
        f"kasctl:     log: none named; see {console}",
    ]


def test_a_task_named_only_by_its_run_file_still_has_its_recipe(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    run = f"/work/build/tmp/work/{ARCH}/hello/1.0-r0/temp/run.do_compile.77"
    b.console(
        console_of(
            f"ERROR: hello-1.0-r0 do_compile: Execution of '{run}' failed with exit code 1\n"
            "ERROR: Task (/work/h/hello.bb:do_compile) failed with exit code '1'\n"
        )
    )

    (task,) = b.tasks()
    assert (task.recipe, task.log) == ("hello", None)


def test_a_work_dir_just_below_the_root_still_names_the_recipe(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    log = "/hello/1.0-r0/temp/log.do_compile.5"
    b.console(console_of(task_failure("hello-1.0-r0", "/work/h/hello.bb", "do_compile", log)))

    (task,) = b.tasks()
    assert (task.recipe, task.log) == ("hello", log)


# --------------------------------------------------------------------------
# the console's own lines
# --------------------------------------------------------------------------


def test_a_quoted_task_log_line_is_not_a_failure_of_this_build(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    # a recipe's test suite runs bitbake itself; its log quotes that bitbake's errors
    quoted = "ERROR: Task (/inner/x.bb:do_fetch) failed with exit code '1'\n"
    b.console(
        console_of(
            task_failure("selftest-1.0-r0", "/work/selftest.bb", "do_test", None, quoted=quoted)
        )
    )

    assert [t.target for t in b.tasks()] == ["/work/selftest.bb:do_test"]


def test_a_repeated_failure_line_does_not_end_the_report(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    repeated = "ERROR: Task (/work/a.bb:do_fetch) failed with exit code '1'\n"
    b.console(console_of(repeated, repeated, task_failure("b", "/work/b.bb", "do_fetch", None)))

    assert [t.recipe_file for t in b.tasks()] == ["/work/a.bb", "/work/b.bb"]


def test_with_a_failed_task_the_cause_is_the_tasks_not_the_summarys(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    b.console(console_of(task_failure("h", "/work/h.bb", "do_x", None, quoted=f"{PIVOT}\n")))

    summary = analyse(b.build, b.mounts, b.since)
    assert summary is not None
    assert summary.failure is None
    (task,) = summary.tasks
    assert task.failure is not None and task.failure.key == "pivot-root-refused"


def test_sudo_blocked_before_any_task_is_blamed_on_a_recipe(tmp_path: Path) -> None:
    b = BuildDir(tmp_path)
    b.console("sudo is blocked: this is an isar-rootless build\n")

    cause, _ = cause_and_fix(b.summarize())
    assert cause.startswith("kasctl:   cause: a recipe called sudo, which isar-rootless blocks")


def test_a_bug_in_reading_the_logs_leaves_a_debug_line_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> list[str]:
        raise RuntimeError("a bug in reading logs")

    monkeypatch.setattr(failures, "summarize", broken)
    caplog.set_level(logging.DEBUG, logger="kasctl")
    report(tmp_path, [], 0.0)

    (record,) = caplog.records
    assert (record.name, record.levelno) == ("kasctl", logging.DEBUG)
    assert record.getMessage() == "could not summarize the failed build"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
