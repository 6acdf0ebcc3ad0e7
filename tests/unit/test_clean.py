"""kasctl.inside.clean: rootless clean on real trees, hostile ones included.

Nothing is mocked: every test builds real files, links and (as root) real
mounts in a tmp dir and runs the real removal. The tests that need root
(mounts, chattr, a tree owned by sub-ids) skip with a reason without it, and
fail instead under CI=true, where the machine is set up for them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kasctl.errors import HostError, UsageError
from kasctl.inside import clean

IN_CI = os.environ.get("CI") == "true"
USER = os.environ.get("KASCTL_TEST_USER", "kasci")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the machine must provide it)")
    pytest.skip(reason)


def _need_root() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root (mounts, chattr, chown to sub-ids)")


def make_build(root: Path) -> Path:
    """A work dir with a build dir as kas leaves it: tmp*, conf, sstate-cache, downloads."""
    build = root / "work" / "build"
    for rel in (
        "tmp/work/recipe-a/rootfs/usr/bin",
        "tmp/stamps",
        "tmp-glibc/work",
        "conf",
        "sstate-cache/00",
        "sstate-cache/ab",
        "downloads/git2",
    ):
        (build / rel).mkdir(parents=True)
    for rel in (
        "tmp/work/recipe-a/rootfs/usr/bin/sh",
        "tmp/stamps/done",
        "tmp-glibc/work/log",
        "tmpfile",
        "conf/local.conf",
        "sstate-cache/00/x.tar.zst",
        "sstate-cache/index",
        "downloads/git2/repo",
        "downloads/foo.tar.gz",
    ):
        (build / rel).write_text(rel)
    return build


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = clean.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def args(build: Path, *extra: str) -> list[str]:
    return [*extra, str(build), "--work-dir", str(build.parent), "--home", "/nonexistent-home"]


# --- what each command removes ----------------------------------------------


def test_targets_per_command(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    tmps = [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
    sstate = [f"{build}/sstate-cache/00", f"{build}/sstate-cache/ab", f"{build}/sstate-cache/index"]
    downloads = [f"{build}/downloads/foo.tar.gz", f"{build}/downloads/git2"]

    assert clean.targets("clean", str(build), {}) == tmps
    assert clean.targets("cleansstate", str(build), {}) == sorted(tmps + sstate)
    assert clean.targets("cleanall", str(build), {}) == sorted(tmps + sstate + downloads)


def test_targets_follow_sstate_dir_and_dl_dir(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    (tmp_path / "sst" / "cc").mkdir(parents=True)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "f").write_text("f")
    env = {"SSTATE_DIR": str(tmp_path / "sst"), "DL_DIR": str(tmp_path / "dl")}

    got = clean.targets("cleanall", str(build), env)

    assert got == sorted(
        [f"{build}/tmp", f"{build}/tmp-glibc", f"{build}/tmpfile"]
        + [f"{tmp_path}/sst/cc", f"{tmp_path}/dl/f"]
    )


def test_a_target_inside_another_is_listed_once(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    env = {"SSTATE_DIR": str(build / "tmp" / "work")}

    assert clean.targets("cleansstate", str(build), env) == [
        f"{build}/tmp",
        f"{build}/tmp-glibc",
        f"{build}/tmpfile",
    ]


def test_no_build_dir_means_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(args(tmp_path / "work" / "build", "cleanall"), capsys)

    assert (code, out, err) == (0, "", "")


def test_namespaced_argv_is_one_unshare_for_the_whole_job() -> None:
    argv = clean.namespaced_argv(
        "/usr/bin/python3", "clean", "/work/build", dry_run=True, work_dir="/work", home="/b"
    )

    assert argv == [
        "unshare",
        "--map-auto",
        "--map-root-user",
        "/usr/bin/python3",
        "-I",
        "-m",
        "kasctl.inside.clean",
        "--dry-run",
        "clean",
        "/work/build",
        "--work-dir",
        "/work",
        "--home",
        "/b",
    ]


# --- dry run == real run ------------------------------------------------------


@pytest.mark.parametrize("command", clean.COMMANDS)
def test_dry_run_lists_exactly_what_the_real_run_removes(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = make_build(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    expected = clean.targets(command, str(build), {})

    dry = run_main(args(build, "--dry-run", command), capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before

    real = run_main(args(build, command), capsys)

    assert dry == real
    assert real[0] == 0
    assert real[1].splitlines() == expected
    assert all(not os.path.lexists(p) for p in expected)
    assert (build / "conf" / "local.conf").exists()
    assert (build / "sstate-cache").is_dir() and (build / "downloads").is_dir()


# --- symlinks -----------------------------------------------------------------


def test_symlinks_pointing_outside_are_unlinked_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = make_build(tmp_path)
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "keep").write_text("keep")
    (outside / "file").write_text("keep")
    rootfs = build / "tmp" / "work" / "recipe-a" / "rootfs"
    (rootfs / "dirlink").symlink_to(outside / "dir")
    (rootfs / "filelink").symlink_to(outside / "file")
    (rootfs / "rootlink").symlink_to("/")
    (rootfs / "dangling").symlink_to(tmp_path / "nothing")
    (build / "tmp-link").symlink_to(outside)  # a tmp* entry that is itself a link

    code, out, err = run_main(args(build, "clean"), capsys)

    assert code == 0, err
    assert f"{build}/tmp-link" in out.splitlines()
    assert not (build / "tmp").exists() and not os.path.lexists(build / "tmp-link")
    assert (outside / "dir" / "keep").read_text() == "keep"
    assert (outside / "file").read_text() == "keep"


def test_a_hostile_deep_tree_is_removed_without_recursion(tmp_path: Path) -> None:
    build = make_build(tmp_path)
    deep = build / "tmp" / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):  # deeper than Python's recursion limit
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)

    try:
        report = clean.clean("clean", str(build), {}, work_dir=str(build.parent), home=None)
    finally:
        # pytest's own (recursive) rmtree of old tmp dirs fails on a tree this deep,
        # which breaks every later session of this user: never leave it behind
        subprocess.run(["rm", "-rf", "--", str(deep)], check=False)

    assert report.left == []
    assert not (build / "tmp").exists()


# --- refusals -----------------------------------------------------------------


@pytest.mark.parametrize("which", ["work", "home"])
@pytest.mark.parametrize("via_symlink", [False, True], ids=["direct", "symlink"])
def test_build_dir_resolving_to_home_or_work_dir_is_refused(
    which: str, via_symlink: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    home = tmp_path / "home"
    for d in (work, home):
        (d / "tmp-precious").mkdir(parents=True)
        (d / "tmp-precious" / "data").write_text("keep")
    target = work if which == "work" else home
    build = target
    if via_symlink:
        build = tmp_path / "build-link"
        build.symlink_to(target)

    code, out, err = run_main(
        ["clean", str(build), "--work-dir", str(work), "--home", str(home)], capsys
    )

    assert code == 2
    assert out == ""
    assert "refusing to clean" in err and str(target) in err and "fix:" in err
    assert (target / "tmp-precious" / "data").read_text() == "keep"


@pytest.mark.parametrize("via_symlink", [False, True], ids=["direct", "symlink"])
def test_build_dir_resolving_to_root_is_refused(
    via_symlink: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = "/"
    if via_symlink:
        (tmp_path / "root-link").symlink_to("/")
        build = str(tmp_path / "root-link")

    with pytest.raises(UsageError, match="the root directory"):
        clean.check_build_dir(build, str(tmp_path), None)
    # --dry-run: were the check ever broken, nothing (such as /tmp) would go.
    code, out, err = run_main(["--dry-run", "clean", build, "--work-dir", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert "KAS_BUILD_DIR: refusing to clean" in err


def test_a_build_dir_holding_the_work_dir_or_home_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "tmp-work"  # a tmp* entry of the build dir below
    (work / "data").mkdir(parents=True)

    code, out, err = run_main(["clean", str(tmp_path), "--work-dir", str(work)], capsys)

    assert (code, out) == (2, "")
    assert "which contains the work directory" in err
    assert (work / "data").is_dir()
    with pytest.raises(UsageError, match="contains your home directory"):
        clean.check_build_dir(str(tmp_path), None, str(tmp_path / "tmphome" / "me"))


@pytest.mark.parametrize("var", ["SSTATE_DIR", "DL_DIR"])
def test_a_cache_dir_that_is_the_work_dir_or_the_build_dir_is_refused(
    var: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = make_build(tmp_path)
    for bad in (build.parent, build, tmp_path):
        monkeypatch.setenv(var, str(bad))
        with pytest.raises(UsageError) as info:
            clean.clean("cleanall", str(build), os.environ, work_dir=str(build.parent), home=None)
        assert info.value.where == var
    assert (build / "conf" / "local.conf").exists()
    assert (build.parent / "build").is_dir()


# --- mounts -------------------------------------------------------------------


@pytest.fixture
def mounted() -> Iterator[list[Path]]:
    """Mount points made by a test; always unmounted afterwards."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _mount(points: list[Path], argv: list[str], point: Path) -> None:
    _need_root()
    result = subprocess.run([*argv, str(point)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _unavailable(f"cannot mount here: {result.stderr.strip()}")
    points.append(point)


def _bind_mount_under_tmp(tmp_path: Path, mounted: list[Path]) -> tuple[Path, Path, Path]:
    build = make_build(tmp_path)
    source = tmp_path / "bind-source"
    source.mkdir()
    (source / "sentinel").write_text("keep")
    point = build / "tmp" / "work" / "recipe-a" / "rootfs" / "mnt"
    point.mkdir()
    _mount(mounted, ["mount", "--bind", str(source)], point)
    return build, point, source / "sentinel"


def test_a_bind_mount_under_tmp_is_not_descended_into(
    tmp_path: Path, mounted: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    build, point, sentinel = _bind_mount_under_tmp(tmp_path, mounted)
    assert os.stat(point).st_dev == os.stat(build).st_dev  # only the mount table tells
    preview = clean.preview("clean", str(build), {}, work_dir=str(build.parent), home=None)

    dry = run_main(args(build, "--dry-run", "clean"), capsys)
    real = run_main(args(build, "clean"), capsys)

    assert dry[0] == real[0] == 1
    assert dry[1] == real[1] == f"{build}/tmp-glibc\n{build}/tmpfile\n"
    assert f"left: {point}: a mount point" in real[2]
    assert f"would be left: {point}: a mount point" in dry[2]
    assert preview.removed == [f"{build}/tmp-glibc", f"{build}/tmpfile"]  # the host's view
    assert preview.left == [(str(point), clean.MOUNT_POINT)]
    assert sentinel.read_text() == "keep"
    assert not (build / "tmp" / "stamps").exists()  # the rest of tmp went
    assert sorted(p.name for p in (build / "tmp").rglob("*")) == [
        "mnt",
        "recipe-a",
        "rootfs",
        "sentinel",
        "work",
    ]


def test_a_tmp_dir_that_is_itself_a_mount_is_left_whole(
    tmp_path: Path, mounted: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    build = make_build(tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    (source / "sentinel").write_text("keep")
    _mount(mounted, ["mount", "--bind", str(source)], build / "tmp")

    code, out, err = run_main(args(build, "clean"), capsys)

    assert code == 1
    assert out == f"{build}/tmp-glibc\n{build}/tmpfile\n"
    assert f"{build}/tmp: a mount point" in err
    assert (source / "sentinel").read_text() == "keep"


def test_another_filesystem_is_not_descended_into_even_without_the_mount_table(
    tmp_path: Path, mounted: list[Path]
) -> None:
    build = make_build(tmp_path)
    point = build / "tmp" / "stamps" / "tmpfs"
    point.mkdir()
    _mount(mounted, ["mount", "-t", "tmpfs", "kasctl-test"], point)
    (point / "sentinel").write_text("keep")

    report = clean.clean(
        "clean", str(build), {}, work_dir=str(build.parent), home=None, mounts=frozenset()
    )

    assert report.left == [(str(point), clean.MOUNT_POINT)]
    assert report.kept == [f"{build}/tmp"]
    assert (point / "sentinel").read_text() == "keep"


def test_mount_table_escapes_are_decoded(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_bytes(
        b"22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        b"90 22 8:1 /src /tmp/a\\040b\\011c\\134d rw shared:1 - ext4 /dev/sda1 rw\n"
    )

    assert clean.mount_points(str(info)) == {"/", "/tmp/a b\tc\\d"}


def test_no_mount_table_means_no_clean(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="refusing to clean"):
        clean.mount_points(str(tmp_path / "missing"))


# --- errors half-way ----------------------------------------------------------


def test_an_unremovable_dir_half_way_is_reported_and_the_rest_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _need_root()
    if not shutil.which("chattr"):
        _unavailable("chattr (e2fsprogs) is missing")
    build = make_build(tmp_path)
    stuck = build / "tmp" / "work" / "b-stuck"
    stuck.mkdir()
    (stuck / "one").write_text("1")
    (stuck / "two").write_text("2")
    (build / "tmp" / "work" / "c-after").mkdir()
    (build / "tmp" / "work" / "c-after" / "f").write_text("f")
    made = subprocess.run(["chattr", "+i", str(stuck)], capture_output=True, text=True)
    if made.returncode != 0:
        _unavailable(f"this filesystem has no immutable flag: {made.stderr.strip()}")
    try:
        code, out, err = run_main(args(build, "clean"), capsys)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)

    assert code == 1
    assert out == f"{build}/tmp-glibc\n{build}/tmpfile\n"  # it went on past the error
    assert f"left: {stuck}/one: Operation not permitted" in err
    assert f"left: {stuck}/two: Operation not permitted" in err
    assert f"these stay: {build}/tmp\n" in err
    assert sorted(str(p.relative_to(build)) for p in (build / "tmp").rglob("*")) == [
        "tmp/work",
        "tmp/work/b-stuck",
        "tmp/work/b-stuck/one",
        "tmp/work/b-stuck/two",
    ]


# --- a real tree owned by sub-ids, cleaned by the user in one namespace ----------


def _as_user(
    user: pwd.struct_passwd, argv: list[str], cwd: str
) -> subprocess.CompletedProcess[str]:
    env = [f"HOME={user.pw_dir}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8"]
    return subprocess.run(
        ["runuser", "-u", user.pw_name, "--", "env", "-i", *env, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _subid_user() -> pwd.struct_passwd:
    _need_root()
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        _unavailable(f"test user {USER} is missing (run .ci/setup-engines.sh)")
    for tool in ("runuser", "unshare", "newuidmap", "newgidmap"):
        if not shutil.which(tool):
            _unavailable(f"{tool} is missing (install uidmap / util-linux)")
    probe = _as_user(user, ["unshare", "--map-auto", "--map-root-user", "true"], "/tmp")
    if probe.returncode != 0:
        _unavailable(f"{USER} cannot enter a sub-id namespace: {probe.stderr.strip()}")
    probe = _as_user(user, [sys.executable, "-I", "-c", "import kasctl.inside.clean"], "/tmp")
    if probe.returncode != 0:
        _unavailable(
            f"{USER} cannot import kasctl.inside.clean with {sys.executable}: {probe.stderr}"
        )
    return user


def test_a_tree_owned_by_sub_ids_is_removed_by_the_user_in_one_namespace() -> None:
    user = _subid_user()
    base = Path(tempfile.mkdtemp(prefix="kasctl-clean-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        work = base / "work"
        build = make_build(base)
        for path in [base, *base.rglob("*")]:
            os.lchown(path, user.pw_uid, user.pw_gid)
        parent = build / "tmp" / "work" / "recipe-a"
        for i in range(1000):  # ids 100000..100999, as Isar's rootfs steps leave them
            owner = 100000 + i
            rootfs = parent / f"rootfs-{i:03}"
            rootfs.mkdir()
            for name in ("f1", "f2"):
                (rootfs / name).write_text(name)
                os.chmod(rootfs / name, 0o600)
                os.chown(rootfs / name, owner, owner)
            os.chown(rootfs, owner, owner)
            os.chmod(rootfs, (0o755, 0o700, 0o555, 0o000)[i % 4])
        (parent / "rootfs-000" / "link").symlink_to(work / "build" / "conf")
        argv = clean.namespaced_argv(
            sys.executable, "clean", str(build), work_dir=str(work), home=user.pw_dir
        )

        dry = _as_user(user, argv[:7] + ["--dry-run"] + argv[7:], str(base))
        assert dry.returncode == 0, dry.stderr
        assert (parent / "rootfs-999" / "f1").exists()  # a dry run removes nothing
        real = _as_user(user, argv, str(base))

        assert real.returncode == 0, real.stderr
        assert dry.stdout == real.stdout == f"{build}/tmp\n{build}/tmp-glibc\n{build}/tmpfile\n"
        assert not (build / "tmp").exists()
        assert (build / "conf" / "local.conf").exists()
        left = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in [base, *base.rglob("*")]}
        assert left == {(user.pw_uid, user.pw_gid)}
    finally:
        shutil.rmtree(base)


def test_a_wide_tree_is_removed_by_threads_and_each_leftover_reported_once(
    tmp_path: Path, mounted: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Enough directories that the work is handed to threads (clean.WORKERS)."""
    _need_root()
    build = make_build(tmp_path)
    work = build / "tmp" / "work"
    for i in range(4 * clean.WORKERS + 10):
        rootfs = work / f"recipe-{i:03}" / "rootfs"
        (rootfs / "usr" / "bin").mkdir(parents=True)
        for j in range(5):
            (rootfs / "usr" / "bin" / f"tool{j}").write_text("x")
        os.symlink("/etc", rootfs / "etc-link")
    source = tmp_path / "src"
    source.mkdir()
    (source / "sentinel").write_text("keep")
    point = work / "recipe-007" / "rootfs" / "usr" / "mnt"
    point.mkdir()
    _mount(mounted, ["mount", "--bind", str(source)], point)

    code, out, err = run_main(args(build, "clean"), capsys)

    assert code == 1
    assert out == f"{build}/tmp-glibc\n{build}/tmpfile\n"
    assert err.count(f"left: {point}: a mount point") == 1
    assert (source / "sentinel").read_text() == "keep"
    assert os.path.isdir("/etc")
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == [
        "recipe-007",
        "recipe-007/rootfs",
        "recipe-007/rootfs/usr",
        "recipe-007/rootfs/usr/mnt",
        "recipe-007/rootfs/usr/mnt/sentinel",
    ]
