"""What `kasctl doctor` gathers: each engine's probe, the uid-map helpers and the
host's kernel settings (kasctl/host/detect.py; tests/MUTATION.md).

The engines are stand-in scripts on a PATH of their own that answer `info` and
`image inspect` as the real CLIs do; the host is a fake root in tmp_path. The
helpers' setuid bit, owner and file capabilities cannot be made real without
root, so the tests hand `_helper` a stat result and an xattr of their own.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from kasctl.host import detect
from kasctl.host.facts import EngineMode, EngineProbe, Helper
from kasctl.inside.subids import Range

IMAGE = "ghcr.io/example/kasctl:1"
LABEL_FORMAT = '{{index .Config.Labels "io.kasctl.version"}}'

ROOTLESS_PODMAN = {
    "host": {
        "security": {"rootless": True},
        "idMappings": {"uidmap": [{"size": 1}, {"size": 65536}]},
        "ociRuntime": {"name": "crun"},
        "cgroupVersion": "v2",
    },
    "version": {"Version": "4.9.3"},
}


def _engine(
    bin_dir: Path, name: str, info: dict[str, Any] | None, label: str | None, stderr: str = ""
) -> Path:
    """A stand-in engine: `info` prints INFO (or fails with STDERR); `image inspect`
    prints LABEL, or fails as for a missing image when LABEL is None."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    log = bin_dir / f"{name}.args"
    if info is None:
        info_body = f"printf '%s\\n' {shlex.quote(stderr)} >&2; exit 125"
    else:
        info_body = f"printf '%s\\n' {shlex.quote(json.dumps(info))}"
    if label is None:
        image_body = "printf 'Error: no such image\\n' >&2; exit 125"
    else:
        image_body = f"printf '%s\\n' {shlex.quote(label)}"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >>{log}\n'
        f'case "$1" in info) {info_body};; image) {image_body};; *) exit 2;; esac\n'
    )
    script.chmod(0o755)
    return log


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


def test_rootless_podman_probe_reports_runtime_cgroup_mapped_uids_and_image(
    bin_dir: Path,
) -> None:
    log = _engine(bin_dir, "podman", ROOTLESS_PODMAN, "  0.4.1  ")
    probe = detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE)
    assert probe == EngineProbe(
        "podman",
        str(bin_dir / "podman"),
        reachable=True,
        error="",
        version="4.9.3",
        mode=EngineMode.ROOTLESS_PODMAN,
        runtime="crun",
        cgroup="v2",
        mapped_uids=65537,
        image_version="0.4.1",
        image_present=True,
    )
    assert log.read_text().splitlines()[-1] == f"image inspect --format {LABEL_FORMAT} {IMAGE}"


def test_rootless_podman_without_id_mappings_maps_nothing(bin_dir: Path) -> None:
    info = {"host": {"security": {"rootless": True}, "idMappings": None}}
    _engine(bin_dir, "podman", info, "")
    probe = detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE)
    assert (probe.mapped_uids, probe.runtime, probe.cgroup, probe.version) == (0, "", "", "")
    assert (probe.image_present, probe.image_version) == (True, "")
    info = {"host": {"security": {"rootless": True}, "idMappings": {"uidmap": [{}, {"size": 7}]}}}
    _engine(bin_dir, "podman", info, "")
    assert detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE).mapped_uids == 7


def test_rootful_podman_reports_no_mapped_uids_and_a_missing_image(bin_dir: Path) -> None:
    info = json.loads(json.dumps(ROOTLESS_PODMAN))
    info["host"]["security"]["rootless"] = False
    _engine(bin_dir, "podman", info, None)
    probe = detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE)
    assert probe.mode is EngineMode.ROOTFUL_PODMAN
    assert probe.reachable is True
    assert probe.mapped_uids is None
    assert (probe.image_present, probe.image_version) == (False, None)


def test_docker_probe_reports_default_runtime_and_cgroup_version(bin_dir: Path) -> None:
    info = {
        "ServerVersion": "26.1.5",
        "SecurityOptions": ["name=rootless"],
        "DefaultRuntime": "runc",
        "CgroupVersion": "2",
        "host": {"ociRuntime": {"name": "crun"}, "cgroupVersion": "v1"},
    }
    _engine(bin_dir, "docker", info, "0.3")
    probe = detect.probe_engine("docker", {"PATH": str(bin_dir)}, IMAGE)
    assert probe == EngineProbe(
        "docker",
        str(bin_dir / "docker"),
        reachable=True,
        version="26.1.5",
        mode=EngineMode.ROOTLESS_DOCKER,
        runtime="runc",
        cgroup="v2",
        mapped_uids=None,
        image_version="0.3",
        image_present=True,
    )
    _engine(bin_dir, "docker", {}, None)
    probe = detect.probe_engine("docker", {"PATH": str(bin_dir)}, IMAGE)
    assert (probe.runtime, probe.cgroup, probe.image_present) == ("", "v", False)


def test_engine_not_on_the_given_path_is_absent(bin_dir: Path, tmp_path: Path) -> None:
    _engine(bin_dir, "docker", {}, "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert detect.probe_engine("docker", {"PATH": str(empty)}, IMAGE) == EngineProbe("docker", None)
    assert detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE) == EngineProbe(
        "podman", None
    )


def test_unreachable_engine_reports_why_and_is_not_probed_further(bin_dir: Path) -> None:
    log = _engine(bin_dir, "docker", None, "x", stderr="Cannot connect to the Docker daemon")
    probe = detect.probe_engine("docker", {"PATH": str(bin_dir)}, IMAGE)
    assert probe == EngineProbe(
        "docker", str(bin_dir / "docker"), error="Cannot connect to the Docker daemon"
    )
    assert [ln.split()[0] for ln in log.read_text().splitlines()] == ["info"]


# --------------------------------------------------------------------------
# _helper: newuidmap/newgidmap, found on the system's path, setuid root or capable
# --------------------------------------------------------------------------

SYSTEM_PATH = "/usr/bin:/bin:/usr/sbin:/sbin"


def _fake_helper(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    mode: int,
    uid: int,
    caps: bytes | None,
    names: tuple[str, ...] = ("newuidmap",),
) -> str:
    """NAMES (the first's path returned) at tmp paths, found only on the system path,
    of MODE owned by UID, with security.capability CAPS (None: no such xattr)."""
    helpers = {n: str(tmp_path / n) for n in names}
    for h in helpers.values():
        Path(h).write_text("")
    real_which, real_stat = shutil.which, os.stat

    def which(name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        if name in helpers and path == SYSTEM_PATH:
            return helpers[name]
        return real_which(name, path=str(tmp_path / "nowhere"))

    def fake_stat(p: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        st = real_stat(p, *args, **kwargs)
        if str(p) not in helpers.values():
            return st
        fields = list(st)
        fields[stat.ST_MODE] = stat.S_IFREG | mode
        fields[stat.ST_UID] = uid
        return os.stat_result(fields)

    def getxattr(p: Any, attr: str, *args: Any, **kwargs: Any) -> bytes:
        if str(p) in helpers.values() and attr == "security.capability" and caps is not None:
            return caps
        raise OSError(61, "No data available")

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(os, "getxattr", getxattr)
    return helpers[names[0]]


def test_setuid_root_helper_may_write_maps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = _fake_helper(monkeypatch, tmp_path, mode=0o4755, uid=0, caps=None)
    assert detect._helper("newuidmap") == Helper(path, setuid_root=True, file_caps=False)


def test_helper_setuid_to_another_user_or_not_setuid_is_not_setuid_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _fake_helper(monkeypatch, tmp_path, mode=0o4755, uid=1000, caps=None)
    assert detect._helper("newuidmap") == Helper(path, False, False)
    monkeypatch.undo()
    path = _fake_helper(monkeypatch, tmp_path, mode=0o2755, uid=0, caps=None)
    assert detect._helper("newuidmap") == Helper(path, False, False)


def test_helper_with_file_capabilities_is_capable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _fake_helper(monkeypatch, tmp_path, mode=0o755, uid=0, caps=b"\x01\x00\x00\x02")
    assert detect._helper("newuidmap") == Helper(path, setuid_root=False, file_caps=True)
    monkeypatch.undo()
    path = _fake_helper(monkeypatch, tmp_path, mode=0o755, uid=0, caps=b"")
    assert detect._helper("newuidmap") == Helper(path, setuid_root=False, file_caps=False)


def test_helper_missing_from_the_system_path_is_not_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_helper(monkeypatch, tmp_path, mode=0o4755, uid=0, caps=None)
    assert detect._helper("newgidmap") == Helper(None, False, False)


def test_system_facts_names_each_helper_for_its_own_map(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_helper(monkeypatch, tmp_path, mode=0o4755, uid=0, caps=None)
    facts = detect.system_facts(str(tmp_path), tmp_path / "root", full=False)
    assert facts.newuidmap == Helper(str(tmp_path / "newuidmap"), True, False)
    assert facts.newgidmap == Helper(None)
    monkeypatch.undo()
    _fake_helper(monkeypatch, tmp_path, mode=0o4755, uid=0, caps=None, names=("newgidmap",))
    facts = detect.system_facts(str(tmp_path), tmp_path / "root", full=False)
    assert facts.newuidmap == Helper(None)
    assert facts.newgidmap == Helper(str(tmp_path / "newgidmap"), True, False)


# --------------------------------------------------------------------------
# system_facts on a fake root: kernel switches, cgroups, tun, ulimits, binfmt
# --------------------------------------------------------------------------


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_system_facts_reads_the_kernel_switches_and_subids(tmp_path: Path) -> None:
    root = _files(
        tmp_path / "root",
        {
            "proc/sys/user/max_user_namespaces": " 63459\n",
            "proc/sys/kernel/unprivileged_userns_clone": "0\n",
            "etc/subuid": "alice:100000:65536\n",
            "etc/subgid": "alice:200000:65536\n",
        },
    )
    facts = detect.system_facts(str(tmp_path), root, full=False)
    assert facts.max_user_namespaces == 63459
    assert facts.unprivileged_userns_clone == 0
    assert [(e.owner, e.range) for e in facts.subuid] == [("alice", Range(100000, 65536))]
    assert [(e.owner, e.range) for e in facts.subgid] == [("alice", Range(200000, 65536))]
    assert facts.subid_errors == ()
    # full=False leaves what only doctor judges at its defaults
    assert (facts.cgroup, facts.tun, facts.nofile_hard, facts.binfmt) == ("v2", "ok", -1, None)


def test_system_facts_reports_each_broken_subid_file_by_path(tmp_path: Path) -> None:
    root = _files(tmp_path / "root", {"etc/subuid": "alice:x:1\n", "etc/subgid": "bob:1:y\n"})
    facts = detect.system_facts(str(tmp_path), root, full=False)
    assert facts.subuid == () and facts.subgid == ()
    assert len(facts.subid_errors) == 2
    assert facts.subid_errors[0].startswith(f"{root}/etc/subuid: ")
    assert facts.subid_errors[1].startswith(f"{root}/etc/subgid: ")


def test_system_facts_full_reads_cgroup_tun_rlimits_ulimits_and_binfmt(tmp_path: Path) -> None:
    import resource

    root = _files(
        tmp_path / "root",
        {
            "sys/fs/cgroup/unified/x": "",
            "proc/sys/fs/binfmt_misc/status": "enabled\n",
            "proc/sys/fs/binfmt_misc/register": "",
            "proc/sys/fs/binfmt_misc/qemu-aarch64": "enabled\ninterpreter /q\nflags: POCF\n",
            "proc/sys/fs/binfmt_misc/qemu-arm": "disabled\nflags: P\n",
            "usr/share/containers/containers.conf": "[containers]\ndefault_ulimits = ['n=1:2']\n",
        },
    )
    facts = detect.system_facts(str(tmp_path), root)
    assert facts.cgroup == "hybrid"
    assert facts.tun == "missing"
    assert facts.nofile_hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert facts.nproc_hard == resource.getrlimit(resource.RLIMIT_NPROC)[1]
    assert facts.podman_default_ulimits == ("n=1:2",)
    assert facts.binfmt == {"qemu-aarch64": (True, True), "qemu-arm": (False, False)}


def test_cgroup_v2_v1_and_hybrid(tmp_path: Path) -> None:
    assert detect._cgroup(_files(tmp_path / "a", {"sys/fs/cgroup/cgroup.controllers": ""})) == "v2"
    assert detect._cgroup(_files(tmp_path / "b", {"sys/fs/cgroup/unified/x": ""})) == "hybrid"
    assert detect._cgroup(_files(tmp_path / "c", {"sys/fs/cgroup/unified": ""})) == "v1"
    assert detect._cgroup(tmp_path / "d") == "v1"


def test_tun_is_ok_only_for_an_accessible_character_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    assert detect._tun(root) == "missing"
    _files(root, {"dev/net/tun": ""})
    assert detect._tun(root) == "missing"  # a plain file is no tun device
    # a character device cannot be made without root: /dev/null stands for it
    (root / "dev/net/tun").unlink()
    (root / "dev/net/tun").symlink_to("/dev/null")
    assert detect._tun(root) == "ok"
    asked: list[tuple[str, int]] = []

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        asked.append((str(path), mode))
        return mode == os.R_OK

    monkeypatch.setattr(os, "access", access)
    assert detect._tun(root) == "denied"  # readable but not writable
    assert asked == [(str(root / "dev/net/tun"), os.R_OK | os.W_OK)]


def test_default_ulimits_later_file_wins_and_broken_files_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    home = tmp_path / "home"
    assert detect._default_ulimits(root, str(home)) is None
    _files(
        root, {"usr/share/containers/containers.conf": '[containers]\ndefault_ulimits = ["a=1"]\n'}
    )
    _files(root, {"etc/containers/containers.conf": '[containers]\ndefault_ulimits = ["b=2", 3]\n'})
    assert detect._default_ulimits(root, str(home)) == ("b=2", "3")
    _files(
        home, {".config/containers/containers.conf": '[containers]\ndefault_ulimits = ["c=3"]\n'}
    )
    assert detect._default_ulimits(root, str(home)) == ("c=3",)
    # not a list, not TOML, not UTF-8, not containers: the earlier value stands
    _files(home, {".config/containers/containers.conf": '[containers]\ndefault_ulimits = "x"\n'})
    assert detect._default_ulimits(root, str(home)) == ("b=2", "3")
    _files(home, {".config/containers/containers.conf": "[containers\n"})
    assert detect._default_ulimits(root, str(home)) == ("b=2", "3")
    (home / ".config/containers/containers.conf").write_bytes(b"\xff\xfe")
    assert detect._default_ulimits(root, str(home)) == ("b=2", "3")
    _files(home, {".config/containers/containers.conf": 'default_ulimits = ["z"]\n'})
    assert detect._default_ulimits(root, str(home)) == ("b=2", "3")


def test_binfmt_lists_handlers_enabled_and_fix_binary(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert detect._binfmt(root) is None
    base = root / "proc/sys/fs/binfmt_misc"
    _files(
        root,
        {
            "proc/sys/fs/binfmt_misc/status": "enabled\n",
            "proc/sys/fs/binfmt_misc/register": "",
            "proc/sys/fs/binfmt_misc/b": "enabled\nflags:F\n",
            "proc/sys/fs/binfmt_misc/a": "enabled\nflags: OC\noffset 0\n",
            "proc/sys/fs/binfmt_misc/c": "disabled\nmagic F\nflags: P:F\n",
            "proc/sys/fs/binfmt_misc/d": "enabled\n",
            "proc/sys/fs/binfmt_misc/f": "enabled\nflags: F:P\n",
            "proc/sys/fs/binfmt_misc/sh4": "enabled\nflags: F\n",
            "proc/sys/fs/binfmt_misc/x86": "enabled\nflags: \n",
        },
    )
    (base / "e").mkdir()  # unreadable as text: skipped, the rest still read
    handlers = detect._binfmt(root)
    # (sh4 sorts after register, x86 after status: both still listed)
    assert handlers == {
        "a": (True, False),
        "b": (True, True),
        "c": (False, True),
        "d": (True, False),
        "f": (True, True),
        "sh4": (True, True),
        "x86": (True, False),
    }
    assert handlers is not None and list(handlers) == ["a", "b", "c", "d", "f", "sh4", "x86"]


def test_podman_info_without_host_section_is_rootful_and_reachable(bin_dir: Path) -> None:
    _engine(bin_dir, "podman", {}, "1")
    probe = detect.probe_engine("podman", {"PATH": str(bin_dir)}, IMAGE)
    assert (probe.reachable, probe.mode, probe.runtime, probe.cgroup, probe.mapped_uids) == (
        True,
        EngineMode.ROOTFUL_PODMAN,
        "",
        "",
        None,
    )


def test_image_inspect_does_not_read_kasctls_stdin(bin_dir: Path) -> None:
    """The engine gets /dev/null, not kasctl's own stdin (a terminal or a pipe)."""
    script = bin_dir / "docker"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in info) printf \'{"ServerVersion": "1"}\\n\';;\n'
        "image) IFS= read -r line; printf 'label%s\\n' \"$line\";; esac\n"
    )
    script.chmod(0o755)
    r, w = os.pipe()
    os.write(w, b"-from-stdin\n")
    os.close(w)
    saved = os.dup(0)
    try:
        os.dup2(r, 0)
        probe = detect.probe_engine("docker", {"PATH": str(bin_dir)}, IMAGE)
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(r)
    assert probe.image_version == "label"


def test_host_facts_reads_only_what_a_run_needs_by_default(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    system = detect.host_facts(root).system
    # what only doctor judges is left unread: no binfmt scan, no rlimits
    assert (system.binfmt, system.nofile_hard, system.cgroup) == (None, -1, "v2")
    assert detect.host_facts(root, full=True).system.cgroup == "v1"
