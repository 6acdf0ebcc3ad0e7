"""Clean behaviour the rest of the suite let change unnoticed (found by mutmut, tests/MUTATION.md).

Like test_clean.py, every test removes a real tree in tmp_path. What the
root-only tests there get from real mounts and chattr, these get without
root, so that a mutation run (never as root) sees them too:

- a mount point is a line of a fake mount table (the real parser reads it);
- an entry the kernel refuses to remove is in a directory made immutable
  (as root: chattr +i) or read-only for its owner (as a user: mode 0555);
- another filesystem is a tmpfs mounted in a user namespace of a child.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kasctl.errors import EXIT_HOST, EXIT_USAGE, HostError, UsageError
from kasctl.inside import clean
from tests.unit.test_clean import args, make_build, run_main

AS_ROOT = os.geteuid() == 0
MP = clean.MOUNT_POINT
#: Where a child python imports kasctl from: wherever this test imported it.
ROOT = Path(clean.__file__).resolve().parent.parent


@contextmanager
def unremovable(directory: Path) -> Iterator[str]:
    """Make the entries of directory unremovable; yields the strerror removal meets."""
    if AS_ROOT:
        made = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"no immutable flag here: {made.stderr.strip()}")
        try:
            yield "Operation not permitted"
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield "Permission denied"
        finally:
            directory.chmod(0o755)


def fake_mount_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *points: Path | str) -> None:
    """The process's mount table, as clean.main reads it, lists these points too."""
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw"]
    for i, point in enumerate(points):
        escaped = str(point).replace("\\", "\\134").replace(" ", "\\040")
        lines.append(f"{90 + i} 22 8:1 /src{i} {escaped} rw shared:1 - ext4 /dev/sda1 rw")
    table = tmp_path / "mountinfo"
    table.write_text("\n".join(lines) + "\n")
    real = clean.mount_points
    monkeypatch.setattr(clean, "mount_points", lambda mountinfo=str(table): real(mountinfo))


def run(build: Path, command: str = "clean", **kw: object) -> clean.Report:
    kw.setdefault("mounts", frozenset())
    return clean.clean(command, str(build), {}, work_dir=str(build.parent), home=None, **kw)  # type: ignore[arg-type]


def tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --------------------------------------------------------------------------
# what a command removes, and what it refuses
# --------------------------------------------------------------------------


def test_a_command_that_is_not_a_clean_command_says_which_are() -> None:
    with pytest.raises(UsageError) as info:
        clean.targets("purge", "/work/build", {})
    assert info.value.exit_code == EXIT_USAGE
    assert info.value.message == "'purge' is not a clean command"
    assert info.value.fix == "use one of: clean, cleansstate, cleanall"


def test_a_missing_build_dir_does_not_hide_the_sstate_dir(tmp_path: Path) -> None:
    (tmp_path / "sstate" / "00").mkdir(parents=True)
    env = {"SSTATE_DIR": str(tmp_path / "sstate")}
    got = clean.targets("cleansstate", str(tmp_path / "no-build"), env)
    assert got == [f"{tmp_path}/sstate/00"]


def test_a_directory_that_cannot_be_listed_is_a_host_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build = make_build(tmp_path)
    loop = tmp_path / "sstate-loop"
    loop.symlink_to(loop.name)
    with pytest.raises(HostError) as info:
        clean.targets("cleansstate", str(build), {"SSTATE_DIR": str(loop)})
    assert info.value.where == "SSTATE_DIR"
    assert info.value.message == f"cannot list {loop}: Too many levels of symbolic links"
    monkeypatch.setenv("SSTATE_DIR", str(loop))
    code, out, err = run_main(args(build, "cleansstate"), capsys)
    assert (code, out) == (EXIT_HOST, "")
    assert (
        err == f"kasctl: error: SSTATE_DIR: cannot list {loop}: Too many levels of symbolic links\n"
    )


@pytest.mark.parametrize("name", ["build ", "buildX"])
def test_a_build_dir_name_ending_in_a_space_or_x_is_taken_as_it_is(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / name / "tmp").mkdir(parents=True)
    (tmp_path / "build" / "tmp").mkdir(parents=True)  # the name without its last character
    assert clean.targets("clean", str(tmp_path / name), {}) == [f"{tmp_path / name}/tmp"]
    clean.check_build_dir(str(tmp_path / name), str(tmp_path / "build" / "w"), None)


@pytest.mark.parametrize(
    ("var", "target", "said"),
    [
        ("KAS_BUILD_DIR", "/", "it resolves to /, which is the root directory"),
        ("KAS_BUILD_DIR", "{home}", "which is your home directory ($HOME)"),
        ("KAS_BUILD_DIR", "{tmp}", "which contains your home directory ($HOME)"),
        ("KAS_BUILD_DIR", "{work}", "which is the work directory (KAS_WORK_DIR)"),
        ("SSTATE_DIR", "{work}", "which is the work directory (KAS_WORK_DIR)"),
        ("SSTATE_DIR", "{home}", "which is your home directory ($HOME)"),
        ("DL_DIR", "{build}", "which is the directory KAS_BUILD_DIR names"),
    ],
)
def test_a_refusal_names_what_the_directory_is_or_holds(
    tmp_path: Path, var: str, target: str, said: str
) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    build = work / "build"
    for d in (build, home):
        d.mkdir(parents=True)
    path = target.format(home=home, tmp=tmp_path, work=work, build=build)
    build_dir, env = (path, {}) if var == "KAS_BUILD_DIR" else (str(build), {var: path})
    with pytest.raises(UsageError) as info:
        clean.check_dirs("cleanall", build_dir, env, str(work), str(home))
    assert info.value.where == var
    assert info.value.message.endswith(said)
    assert info.value.fix == clean._FIXES[var]


def test_no_mount_table_says_where_to_run_it(tmp_path: Path) -> None:
    with pytest.raises(HostError) as info:
        clean.mount_points(str(tmp_path / "missing"))
    assert info.value.message.endswith(
        "bind mounts under the tree could not be told apart, refusing to clean"
    )
    assert info.value.fix == "run it where /proc is mounted"


def test_the_mount_point_is_the_fifth_field_of_any_line_that_has_one(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text("1 2 3 4\n1 2 3 4 /five\n\n22 1 8:1 / /mnt rw - ext4 /dev/sda1 rw\n")
    assert clean.mount_points(str(table)) == {"/five", "/mnt"}


# --------------------------------------------------------------------------
# mount points and other trees are left alone, by the threads too
# --------------------------------------------------------------------------


def test_a_wide_tree_s_mount_point_links_and_a_same_named_tree_nearby_are_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wide enough that the work goes to threads; each thread must keep every rule."""
    build = make_build(tmp_path)
    work = build / "tmp" / "work"
    for i in range(4 * clean.WORKERS + 6):
        (work / f"recipe-{i:03}" / "rootfs" / "usr").mkdir(parents=True)
        (work / f"recipe-{i:03}" / "rootfs" / "usr" / "tool").write_text("x")
    point = work / "recipe-003" / "rootfs" / "usr" / "mnt"
    point.mkdir()
    (point / "sentinel").write_text("keep")
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "keep").write_text("keep")
    for i in range(8):  # links to directories, among the directories handed out
        (work / f"link-{i}").symlink_to(outside / "dir")
    cwd = tmp_path / "elsewhere"  # holds a tree with the target's names
    (cwd / "tmp" / "work" / "recipe-000").mkdir(parents=True)
    (cwd / "tmp" / "work" / "recipe-000" / "keep").write_text("keep")
    monkeypatch.chdir(cwd)

    report = run(build, mounts=frozenset({str(point)}))

    assert report.left == [(str(point), MP)]
    assert report.kept == [f"{build}/tmp"]
    assert report.removed == [f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert tree(build / "tmp") == [
        "work",
        "work/recipe-003",
        "work/recipe-003/rootfs",
        "work/recipe-003/rootfs/usr",
        "work/recipe-003/rootfs/usr/mnt",
        "work/recipe-003/rootfs/usr/mnt/sentinel",
    ]
    assert (outside / "dir" / "keep").read_text() == "keep"
    assert (cwd / "tmp" / "work" / "recipe-000" / "keep").read_text() == "keep"


def test_a_target_that_is_a_mount_point_is_left_whole(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    report = run(build, mounts=frozenset({f"{build}/tmp"}))
    assert report.left == [(f"{build}/tmp", MP)]
    assert report.kept == [f"{build}/tmp"]
    assert report.removed == [f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert (build / "tmp" / "stamps" / "done").exists()


def test_the_real_mount_table_is_read_when_none_is_given(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    report = clean.clean("clean", str(build), {}, work_dir=str(build.parent), home=None)
    assert report.removed == [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert (report.left, report.kept) == ([], [])


def test_another_filesystem_is_not_descended_into_in_a_user_namespace(tmp_path: Path) -> None:
    """The st_dev rule without the mount table: a tmpfs mounted by a child in its own namespace."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing")
    build = make_build(tmp_path)
    point = build / "tmp" / "stamps" / "tmpfs"
    point.mkdir()
    script = (
        "import json, sys; from kasctl.inside import clean; "
        "r = clean.clean('clean', sys.argv[1], {}, work_dir=sys.argv[2], home=None, "
        "mounts=frozenset()); "
        "print(json.dumps([r.left, r.kept, r.removed, open(sys.argv[3]).read()]))"
    )
    shell = (
        'mount -t tmpfs kasctl-test "$1" && echo keep >"$1/sentinel" && '
        'exec "$2" -c "$3" "$4" "$5" "$1/sentinel"'
    )
    child = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", shell, "sh"]
        + [str(point), sys.executable, script, str(build), str(build.parent)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if child.returncode != 0 and "unshare" in child.stderr:
        pytest.skip(f"no user namespace here: {child.stderr.strip()}")
    assert child.returncode == 0, child.stderr
    left, kept, removed, sentinel = json.loads(child.stdout)
    assert left == [[str(point), MP]]
    assert kept == [f"{build}/tmp"]
    assert removed == [f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert sentinel == "keep\n"  # still there when the walk was done


# --------------------------------------------------------------------------
# what the kernel refuses: reported once, exactly, and the rest removed
# --------------------------------------------------------------------------


def test_an_unremovable_file_deep_down_is_the_only_path_left(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    stuck = build / "tmp" / "a" / "b" / "c" / "stuck"
    stuck.mkdir(parents=True)
    (stuck / "f").write_text("f")
    with unremovable(stuck) as why:
        report = run(build)
    assert report.left == [(f"{stuck}/f", why)]  # not its parents: they were not emptied
    assert report.kept == [f"{build}/tmp"]
    assert report.removed == [f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert tree(build / "tmp") == ["a", "a/b", "a/b/c", "a/b/c/stuck", "a/b/c/stuck/f"]


def test_an_emptied_dir_that_cannot_go_is_left_by_its_own_path(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    parent = build / "tmp" / "p"
    (parent / "d").mkdir(parents=True)
    (parent / "d" / "f").write_text("f")
    with unremovable(parent) as why:
        report = run(build)
    assert report.left == [(f"{parent}/d", why)]
    assert tree(build / "tmp") == ["p", "p/d"]


def test_top_level_targets_that_cannot_go_are_each_kept(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    with unremovable(build) as why:
        report = run(build)
    targets = [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert report.left == [(t, why) for t in targets]
    assert report.kept == targets
    assert report.removed == []


def test_a_target_removed_meanwhile_counts_as_removed(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    done: list[str] = []

    def on_removed(path: str) -> None:
        done.append(path)
        if path.endswith("/tmp"):  # someone else removes the next one meanwhile
            shutil.rmtree(build / "tmp-glibc")

    report = run(build, on_removed=on_removed)
    targets = [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert report.removed == done == targets
    assert (report.left, report.kept) == ([], [])


@pytest.mark.skipif(AS_ROOT, reason="root's DAC override reads and searches any directory")
def test_a_tree_the_user_may_not_read_is_reported_not_crashed_on(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    locked = build / "tmp" / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        report = run(build)
    finally:
        locked.chmod(0o755)
    assert report.left == [(str(locked), "Permission denied")]
    assert report.kept == [f"{build}/tmp"]

    build = make_build(tmp_path / "second")
    build.chmod(0o644)  # listable, not searchable: no entry can even be looked at
    try:
        report = run(build)
    finally:
        build.chmod(0o755)
    targets = [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
    assert report.left == [(t, "Permission denied") for t in targets]
    assert report.kept == targets


# --------------------------------------------------------------------------
# the host's preview: no descent, only the mount table
# --------------------------------------------------------------------------


def test_the_preview_keeps_each_target_that_holds_or_is_a_mount_point(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    mounts = frozenset(
        {f"{build}/tmp/work/m", f"{build}/tmp-glibc", f"{build}/tmpfileX", "/elsewhere"}
    )
    report = clean.preview(
        "clean", str(build), {}, work_dir=str(build.parent), home=None, mounts=mounts
    )
    assert report.kept == [f"{build}/tmp", f"{build}/tmp-glibc"]
    assert report.removed == [f"{build}/tmpfile"]
    assert report.left == [(f"{build}/tmp/work/m", MP), (f"{build}/tmp-glibc", MP)]
    assert (build / "tmp" / "stamps" / "done").exists()  # a preview removes nothing


def test_the_preview_reads_the_real_mount_table_by_default(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    env = {"SSTATE_DIR": str(tmp_path / "sst")}
    (tmp_path / "sst" / "x").mkdir(parents=True)
    report = clean.preview("cleansstate", str(build), env, work_dir=str(build.parent), home=None)
    assert report.removed == clean.targets("cleansstate", str(build), env)
    assert f"{tmp_path}/sst/x" in report.removed
    assert (report.left, report.kept) == ([], [])


@pytest.mark.parametrize("which", ["work", "home", "sstate-is-home"])
def test_the_preview_refuses_what_clean_refuses(tmp_path: Path, which: str) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    build = make_build(tmp_path)
    home.mkdir()
    build_dir, env = {
        "work": (str(work), {}),
        "home": (str(home), {}),
        "sstate-is-home": (str(build), {"SSTATE_DIR": str(home)}),
    }[which]
    with pytest.raises(UsageError):
        clean.preview(
            "cleansstate", build_dir, env, work_dir=str(work), home=str(home), mounts=frozenset()
        )


# --------------------------------------------------------------------------
# the command line inside the namespace
# --------------------------------------------------------------------------


def test_namespaced_argv_adds_only_what_is_asked() -> None:
    assert clean.namespaced_argv("/usr/bin/python3", "clean", "/work/build") == [
        "unshare",
        "--map-auto",
        "--map-root-user",
        "/usr/bin/python3",
        "-I",
        "-m",
        "kasctl.inside.clean",
        "clean",
        "/work/build",
    ]


def test_help_names_the_program_its_arguments_and_dry_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        clean.main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    assert out.startswith("usage: python3 -I -m kasctl.inside.clean [-h] [--dry-run]")
    assert "{clean,cleansstate,cleanall} BUILD_DIR" in out
    assert (
        " BUILD_DIR Remove what kas clean/cleansstate/cleanall remove, in one process, safely. "
        "Run it inside `unshare --map-auto --map-root-user` for sub-id-owned trees. positional"
    ) in out
    assert "--dry-run walk and list, remove nothing" in out


def test_an_unknown_command_is_a_usage_error_listing_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        clean.main(["purge", "/work/build"])
    assert info.value.code == EXIT_USAGE
    assert "argument command: invalid choice: 'purge'" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["KAS_WORK_DIR", "cwd", "HOME"])
def test_the_work_dir_and_home_default_to_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
) -> None:
    build = make_build(tmp_path)
    monkeypatch.delenv("KAS_WORK_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    if source == "KAS_WORK_DIR":
        monkeypatch.setenv("KAS_WORK_DIR", str(build))
    elif source == "cwd":
        monkeypatch.chdir(build)
    else:
        monkeypatch.setenv("HOME", str(build))
    code, out, err = run_main(["clean", str(build)], capsys)
    assert (code, out) == (EXIT_USAGE, "")
    what = "your home directory ($HOME)" if source == "HOME" else "the work directory"
    assert f"which is {what}" in err
    assert (build / "tmp").exists()


@pytest.mark.parametrize("dry", [False, True], ids=["real", "dry-run"])
def test_what_is_left_is_said_on_stderr_with_what_stays_and_how_to_fix(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dry: bool,
) -> None:
    build = make_build(tmp_path)
    one, two = build / "tmp" / "work" / "m", build / "tmp-glibc" / "work"
    one.mkdir()
    fake_mount_table(monkeypatch, tmp_path, one, two)
    code, out, err = run_main(args(build, *(["--dry-run"] if dry else []), "clean"), capsys)
    verb = "would be left" if dry else "left"
    assert code == 1
    assert out == f"{build}/tmpfile\n"
    assert err.splitlines() == [
        f"kasctl: {verb}: {two}: {MP}",  # sorted: '-' before '/'
        f"kasctl: {verb}: {one}: {MP}",
        f"kasctl: error: 2 path(s) {verb}, so these stay: {build}/tmp, {build}/tmp-glibc",
        "kasctl: fix: unmount what is mounted there (umount PATH) or clear what blocks "
        "removal (e.g. chattr -i), then clean again",
    ]


def test_each_removed_path_is_on_stdout_before_the_report_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Progress: a path is written (flushed) when it is gone, not when the process ends.

    stdout and stderr share one pipe, as in `2>&1`: stdout is block-buffered
    there, so only a flush puts the paths before the report.
    """
    build = make_build(tmp_path)
    stuck = build / "tmpfile-stuck"
    stuck.mkdir()
    fake_mount_table(monkeypatch, tmp_path, stuck)
    read_end, write_end = os.pipe()
    out = io.TextIOWrapper(io.FileIO(write_end, "w", closefd=False), write_through=False)
    err = io.TextIOWrapper(io.FileIO(write_end, "w", closefd=False), write_through=True)
    try:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        code = clean.main(args(build, "clean"))
        monkeypatch.undo()
    finally:
        out.close()
        err.close()
        os.close(write_end)
        with open(read_end, encoding="utf-8") as pipe:
            said = pipe.read().splitlines()
    assert code == 1
    assert said[:4] == [
        f"{build}/tmp",
        f"{build}/tmp-glibc",
        f"{build}/tmpfile",
        f"kasctl: left: {stuck}: {MP}",
    ]


def test_a_clean_asks_for_the_hard_limit_of_open_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deep tree needs two descriptors per level: the soft limit is raised to the hard one,
    left alone when they agree, and a refusal to raise it does not stop the clean."""
    import resource

    calls: list[tuple[int, tuple[int, int]]] = []
    limits = {"now": (1024, 20000)}
    monkeypatch.setattr(resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda which, pair: calls.append((which, pair)))
    clean._allow_open_files()
    assert calls == [(resource.RLIMIT_NOFILE, (20000, 20000))]

    calls.clear()
    limits["now"] = (4096, 4096)
    clean._allow_open_files()
    assert calls == []

    limits["now"] = (1024, resource.RLIM_INFINITY)
    for refusal in (ValueError("not allowed above nr_open"), PermissionError(1, "EPERM")):

        def refuse(which: int, pair: tuple[int, int], exc: Exception = refusal) -> None:
            raise exc

        monkeypatch.setattr(resource, "setrlimit", refuse)
        clean._allow_open_files()  # swallowed: the clean goes on with the limit it has
