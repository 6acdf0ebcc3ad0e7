"""Doctor's judgements from given facts, and its readers on fake /proc, /sys and /etc trees.

The real host and engines are judged in tests/e2e/test_doctor.py; here each
broken condition is made on purpose, which a shared CI machine cannot offer.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.errors import HostError
from kasctl.host.detect import host_facts, system_facts
from kasctl.host.facts import EngineMode, EngineProbe, Helper, HostFacts, SystemFacts
from kasctl.inside.subids import parse_subid_file
from kasctl.report.doctor import Check, judge, preflight, render, to_json

HOST = HostFacts(uid=1001, gid=1001, user="kasci", home="/home/kasci")
GOOD_HELPER = Helper("/usr/bin/newuidmap", setuid_root=True)
GOOD = SystemFacts(
    max_user_namespaces=10000,
    newuidmap=GOOD_HELPER,
    newgidmap=Helper("/usr/bin/newgidmap", setuid_root=True),
    subuid=parse_subid_file("kasci:100000:165536\n"),
    subgid=parse_subid_file("kasci:100000:165536\n"),
    cgroup="v2",
    nofile_hard=1048576,
    nproc_hard=100000,
    binfmt={"qemu-aarch64": (True, True)},
)
IR, OE = BuildSystem.ISAR_ROOTLESS, BuildSystem.OPENEMBEDDED
IMAGE = "localhost/kasctl/kas-isar:test"


def probe(mode: EngineMode, **kw: object) -> EngineProbe:
    values: dict[str, object] = {
        "kind": mode.kind,
        "binary": f"/usr/bin/{mode.kind}",
        "reachable": True,
        "version": "1",
        "mode": mode,
        "runtime": "runc",
        "image_present": True,
        "image_version": __version__,
    }
    values.update(kw)
    return EngineProbe(**values)  # type: ignore[arg-type]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def statuses(checks: list[Check]) -> set[str]:
    return {c.status for c in checks}


@pytest.mark.parametrize("mode", [m for m in EngineMode if m.engine], ids=lambda m: m.value)
def test_a_good_host_is_ready_in_every_mode(mode: EngineMode) -> None:
    checks = judge(replace(HOST, system=GOOD), probe(mode), IR, IMAGE)
    assert statuses(checks) == {"ok"}, render(checks)
    preflight(replace(HOST, system=GOOD), mode, IR)


def test_engine_missing_and_unreachable() -> None:
    missing = judge(replace(HOST, system=GOOD), EngineProbe("podman", None), IR, IMAGE)
    assert [(c.status, c.detail) for c in missing] == [("fail", "not installed")]
    down = judge(
        replace(HOST, system=GOOD),
        EngineProbe("docker", "/usr/bin/docker", error="Cannot connect to the Docker daemon"),
        IR,
        IMAGE,
    )
    assert down[0].status == "fail" and "Cannot connect" in down[0].detail
    assert "DOCKER_HOST" in down[0].fix


def test_no_subuid_range_fails_rootless_only_and_suggests_a_free_range() -> None:
    facts = replace(GOOD, subuid=parse_subid_file("other:100000:65536\n"))
    checks = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )
    bad = checks["/etc/subuid"]
    assert bad.status == "fail" and "no range for kasci (uid 1001)" in bad.detail
    # after every range in both files (subgid still holds kasci:100000:165536)
    assert "usermod --add-subuids 265536-" in bad.fix
    with pytest.raises(HostError, match="no range for kasci") as err:
        preflight(replace(HOST, system=facts), EngineMode.ROOTLESS_PODMAN, IR)
    assert "kasctl doctor" in (err.value.fix or "")
    # system docker gives the container its own ids: the host's sub-ids do not matter
    preflight(replace(HOST, system=facts), EngineMode.SYSTEM_DOCKER, IR)


def test_a_numeric_uid_line_counts_as_the_users() -> None:
    facts = replace(GOOD, subuid=parse_subid_file("1001:100000:165536\n"))
    checks = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )
    assert checks["/etc/subuid"].status == "ok"


def test_own_overlapping_lines_fail_and_shared_ids_warn() -> None:
    own = replace(GOOD, subuid=parse_subid_file("kasci:100000:165536\nkasci:200000:65536\n"))
    check = by_name(judge(replace(HOST, system=own), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE))[
        "/etc/subuid"
    ]
    assert check.status == "fail" and "lines 1 and 2 overlap" in check.detail
    shared = replace(GOOD, subuid=parse_subid_file("kasci:100000:165536\nbob:150000:65536\n"))
    checks = [
        c
        for c in judge(replace(HOST, system=shared), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
        if c.name == "/etc/subuid"
    ]
    assert [c.status for c in checks] == ["warn", "ok"]
    assert "bob's (line 2)" in checks[0].detail


def test_the_default_range_is_ok_and_says_how_isar_maps_nobody() -> None:
    short = replace(GOOD, subgid=parse_subid_file("kasci:100000:65536\n"))
    check = by_name(
        judge(replace(HOST, system=short), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )["/etc/subgid"]
    assert check.status == "ok"
    assert "65534" in check.detail and "on its own" in check.detail
    assert "kasci:100000:66537" in check.detail


def test_a_range_too_small_to_work_warns_with_the_size_that_suffices() -> None:
    tiny = replace(GOOD, subgid=parse_subid_file("kasci:100000:900\n"))
    check = by_name(
        judge(replace(HOST, system=tiny), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )["/etc/subgid"]
    assert check.status == "warn" and "too few" in check.detail
    assert "kasci:100000:66537" in check.fix


def test_a_malformed_subid_file_fails() -> None:
    facts = replace(GOOD, subid_errors=("/etc/subuid: line 1 is not NAME:START:COUNT",))
    checks = judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_DOCKER), IR, IMAGE)
    assert any(c.status == "fail" and "line 1" in c.detail for c in checks)


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        (replace(GOOD, max_user_namespaces=0), "max_user_namespaces = 0"),
        (replace(GOOD, unprivileged_userns_clone=0), "unprivileged_userns_clone = 0"),
    ],
    ids=["max_user_namespaces", "unprivileged_userns_clone"],
)
def test_user_namespaces_disabled(facts: SystemFacts, words: str) -> None:
    check = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )["user namespaces"]
    assert check.status == "fail" and words in check.detail and "sysctl" in check.fix
    with pytest.raises(HostError, match=words):
        preflight(
            replace(HOST, system=facts), EngineMode.SYSTEM_DOCKER, IR
        )  # isar-rootless nests one
    preflight(
        replace(HOST, system=facts), EngineMode.SYSTEM_DOCKER, OE
    )  # OE on a rootful engine needs none


@pytest.mark.parametrize(
    ("helper", "words"),
    [(Helper(None), "not installed"), (Helper("/usr/bin/newuidmap"), "neither setuid")],
    ids=["missing", "not-setuid"],
)
def test_newuidmap_broken(helper: Helper, words: str) -> None:
    facts = replace(GOOD, newuidmap=helper)
    check = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_DOCKER), OE, IMAGE)
    )["newuidmap"]
    assert check.status == "fail" and words in check.detail
    with pytest.raises(HostError, match="newuidmap"):
        preflight(replace(HOST, system=facts), EngineMode.ROOTLESS_PODMAN, OE)
    preflight(replace(HOST, system=facts), EngineMode.ROOTFUL_PODMAN, OE)


def test_file_capabilities_do_instead_of_setuid() -> None:
    facts = replace(GOOD, newuidmap=Helper("/usr/bin/newuidmap", file_caps=True))
    preflight(replace(HOST, system=facts), EngineMode.ROOTLESS_PODMAN, IR)


def test_apparmor_restriction() -> None:
    host = replace(HOST, system=GOOD, apparmor_restricts_userns=True)
    rootless = by_name(judge(host, probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE))
    assert rootless["AppArmor"].status == "fail"
    with_profile = replace(host, apparmor_rootlesskit_profile=True)
    docker = by_name(judge(with_profile, probe(EngineMode.ROOTLESS_DOCKER), IR, IMAGE))
    assert docker["AppArmor"].status == "ok"
    oe = by_name(judge(host, probe(EngineMode.SYSTEM_DOCKER), OE, IMAGE))
    assert oe["AppArmor"].status == "ok"


def test_crun_on_a_hybrid_cgroup_fails() -> None:
    facts = replace(GOOD, cgroup="hybrid")
    crun = by_name(
        judge(
            replace(HOST, system=facts), probe(EngineMode.ROOTFUL_PODMAN, runtime="crun"), IR, IMAGE
        )
    )
    assert crun["OCI runtime"].status == "fail" and "runc" in crun["OCI runtime"].fix
    runc = by_name(judge(replace(HOST, system=facts), probe(EngineMode.ROOTFUL_PODMAN), IR, IMAGE))
    assert runc["OCI runtime"].status == "ok"


def test_rootful_podman_ulimits_without_cap_sys_resource() -> None:
    host = replace(HOST, missing_caps=("SYS_RESOURCE",))
    default = replace(GOOD, podman_default_ulimits=None)
    check = by_name(
        judge(replace(host, system=default), probe(EngineMode.ROOTFUL_PODMAN), OE, IMAGE)
    )["rlimits"]
    assert check.status == "fail" and "default_ulimits = []" in check.fix
    emptied = replace(GOOD, podman_default_ulimits=())
    check = by_name(
        judge(replace(host, system=emptied), probe(EngineMode.ROOTFUL_PODMAN), OE, IMAGE)
    )["rlimits"]
    assert check.status == "ok"


def test_low_nofile_warns_rootless() -> None:
    facts = replace(GOOD, nofile_hard=1024)
    check = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_PODMAN), OE, IMAGE)
    )["rlimits"]
    assert check.status == "warn"


@pytest.mark.parametrize("tun", ["missing", "denied"])
def test_tun_unusable_fails_rootless(tun: str) -> None:
    facts = replace(GOOD, tun=tun)  # type: ignore[arg-type]
    check = by_name(
        judge(replace(HOST, system=facts), probe(EngineMode.ROOTLESS_PODMAN), OE, IMAGE)
    )["/dev/net/tun"]
    assert check.status == "fail" and "mknod" in check.fix
    check = by_name(judge(replace(HOST, system=facts), probe(EngineMode.SYSTEM_DOCKER), OE, IMAGE))[
        "/dev/net/tun"
    ]
    assert check.status == "ok"


def test_engine_map_too_small_for_isar() -> None:
    small = probe(EngineMode.ROOTLESS_PODMAN, mapped_uids=65537)
    check = by_name(judge(replace(HOST, system=GOOD), small, IR, IMAGE))["engine id map"]
    assert check.status == "warn" and "podman system migrate" in check.fix


def test_image_missing_or_from_another_version_warns() -> None:
    gone = by_name(
        judge(
            replace(HOST, system=GOOD),
            probe(EngineMode.SYSTEM_DOCKER, image_present=False),
            IR,
            IMAGE,
        )
    )
    assert gone["image"].status == "warn" and "first use" in gone["image"].fix
    old = by_name(
        judge(
            replace(HOST, system=GOOD),
            probe(EngineMode.SYSTEM_DOCKER, image_version="0.0.1"),
            IR,
            IMAGE,
        )
    )
    assert old["image"].status == "warn" and "0.0.1" in old["image"].detail


@pytest.mark.parametrize(
    ("binfmt", "status", "words"),
    [
        (None, "warn", "not mounted"),
        ({}, "warn", "no qemu handlers"),
        ({"qemu-arm": (True, False)}, "warn", "F (fix-binary)"),
        ({"qemu-arm": (True, True), "python3.11": (True, False)}, "ok", "arm"),
    ],
)
def test_binfmt(binfmt: dict[str, tuple[bool, bool]] | None, status: str, words: str) -> None:
    facts = replace(GOOD, binfmt=binfmt)
    check = by_name(judge(replace(HOST, system=facts), probe(EngineMode.SYSTEM_DOCKER), IR, IMAGE))[
        "binfmt"
    ]
    assert check.status == status and words in check.detail


def test_render_and_json() -> None:
    checks = [Check("a", "ok", "fine"), Check("b", "fail", "broken", "mend it")]
    assert render(checks).splitlines() == ["ok    a: fine", "fail  b: broken", "      fix: mend it"]
    data = json.loads(to_json(checks, ok=False))
    assert data["ok"] is False and data["checks"][1]["fix"] == "mend it"


# ------------------------------------------------------------ reading a fake host


def fake_root(tmp_path: Path) -> Path:
    for path, text in {
        "proc/sys/user/max_user_namespaces": "0\n",
        "proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n",
        "etc/subuid": "1001:100000:165536\n",
        "etc/subgid": "kasci:100000:165536\n",
        "sys/fs/cgroup/unified/cgroup.procs": "",
        "proc/sys/fs/binfmt_misc/status": "enabled\n",
        "proc/sys/fs/binfmt_misc/qemu-aarch64": "enabled\ninterpreter /usr/bin/qemu\nflags: OCF\n",
        "etc/containers/containers.conf": "[containers]\ndefault_ulimits = []\n",
    }.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    return tmp_path


def test_system_facts_reads_the_tree(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    host = host_facts(root, full=True)
    facts = host.system
    assert facts.max_user_namespaces == 0
    assert facts.unprivileged_userns_clone is None
    assert host.apparmor_restricts_userns
    assert [e.owner for e in facts.subuid] == ["1001"]
    assert facts.cgroup == "hybrid"
    assert facts.tun == "missing"
    assert facts.binfmt == {"qemu-aarch64": (True, True)}
    assert facts.podman_default_ulimits == ()
    checks = by_name(
        judge(replace(host, uid=1001, user="kasci"), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )
    assert checks["user namespaces"].status == "fail"
    assert checks["/etc/subuid"].status == "ok"


def test_system_facts_survives_a_broken_subid_file(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    (root / "etc/subuid").write_text("kasci:many:ids\n")
    facts = system_facts(str(tmp_path), root, full=False)
    assert facts.subuid == () and "line 1" in facts.subid_errors[0]


def test_the_real_host_is_readable() -> None:
    facts = system_facts(os.path.expanduser("~"))
    assert facts.max_user_namespaces is None or facts.max_user_namespaces >= 0
    assert facts.cgroup in ("v1", "v2", "hybrid")


def test_selinux_enforcing_is_reported_with_what_kasctl_does() -> None:
    enforcing = replace(HOST, selinux_enforcing=True)
    check = by_name(
        judge(replace(enforcing, system=GOOD), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )["SELinux"]
    assert check.status == "ok"
    assert "enforcing" in check.detail and "label=disable" in check.detail
    plain = by_name(
        judge(replace(HOST, system=GOOD), probe(EngineMode.ROOTLESS_PODMAN), IR, IMAGE)
    )["SELinux"]
    assert plain.detail == "not enforcing"
