"""Grants the rest of the suite let change unnoticed (found by mutmut, tests/MUTATION.md).

Each test says what the engine or the user would see: which AppArmor profile
a docker isar-rootless container runs under, what `--explain` prints for a
grant, which /dev/kvm modes a builder can open, and what a refusal says.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from kasctl.build_system import BuildSystem
from kasctl.decide.privileges import Privileges, decide
from kasctl.errors import HostError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts, KvmDevice
from tests.unit.test_privileges import HOST  # the same host facts

IR, IP, OE = BuildSystem.ISAR_ROOTLESS, BuildSystem.ISAR_PRIVILEGED, BuildSystem.OPENEMBEDDED
DOCKERS = [EngineMode.SYSTEM_DOCKER, EngineMode.ROOTLESS_DOCKER]
UBUNTU = replace(HOST, apparmor_restricts_userns=True, apparmor_rootlesskit_profile=True)


def engine(mode: EngineMode, apparmor: bool = False, selinux: bool = False) -> EngineFacts:
    return EngineFacts(mode=mode, binary=mode.kind, version="", apparmor=apparmor, selinux=selinux)


def apparmor(p: Privileges) -> list[str]:
    return [g.flag for g in p.grants if "apparmor=" in g.flag]


# --------------------------------------------------------------------------
# AppArmor: rootlesskit where the host restricts user namespaces, else unconfined
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", DOCKERS, ids=lambda m: m.value)
@pytest.mark.parametrize("active", [True, False], ids=["apparmor-active", "apparmor-off"])
def test_a_host_restricting_userns_with_the_profile_gets_rootlesskit(
    mode: EngineMode, active: bool
) -> None:
    p = decide(IR, engine(mode, apparmor=active), UBUNTU)
    assert apparmor(p) == ["--security-opt=apparmor=rootlesskit"]


@pytest.mark.parametrize("mode", DOCKERS, ids=lambda m: m.value)
@pytest.mark.parametrize(
    "host",
    [
        replace(HOST, apparmor_restricts_userns=True),
        replace(HOST, apparmor_rootlesskit_profile=True),
        HOST,
    ],
    ids=["restricted-no-profile", "profile-not-restricted", "neither"],
)
def test_without_both_restriction_and_profile_apparmor_active_is_unconfined(
    mode: EngineMode, host: HostFacts
) -> None:
    assert apparmor(decide(IR, engine(mode, apparmor=True), host)) == [
        "--security-opt=apparmor=unconfined"
    ]
    assert apparmor(decide(IR, engine(mode, apparmor=False), host)) == []


# --------------------------------------------------------------------------
# What --explain prints: each reason opens with what needs the flag
# --------------------------------------------------------------------------

#: How a reason must begin: the cell, the run's option or the host condition that needs it.
NEEDED_BY = re.compile(
    r"(rootless podman|rootless docker|isar-rootless|isar-privileged|--kvm|SELinux|the host"
    r"|a pod)\b"
)


def _all_grants() -> list[tuple[str, str]]:
    host = replace(UBUNTU, selinux_enforcing=True, kvm=KvmDevice(gid=108, mode=0o660))
    seen = {}
    for mode in EngineMode:
        for build_system in BuildSystem:
            if not mode.engine and build_system is IP:
                continue  # refused: a pod is never privileged (test_kubernetes)
            for h in (host, replace(host, apparmor_restricts_userns=False)):
                kvm = mode.engine and (not mode.rootless or build_system is IP)
                e = engine(mode, apparmor=True, selinux=True)
                for g in decide(build_system, e, h, kvm=kvm).grants:
                    seen[g.flag] = g.reason
    return sorted(seen.items())


def test_every_grant_flag_is_met_in_some_cell() -> None:
    flags = {f for f, _ in _all_grants()}
    for flag in (
        "--userns=keep-id",
        "--user=root",
        "--cap-add=SYS_ADMIN",
        "--privileged",
        "--device=/dev/kvm",
        "--security-opt=label=disable",
        "--security-opt=apparmor=rootlesskit",
        "--security-opt=apparmor=unconfined",
        "--security-opt=unmask=ALL",
        "--security-opt=systempaths=unconfined",
    ):
        assert flag in flags


def test_explain_opens_each_reason_with_what_needs_the_flag() -> None:
    # decided here, not at collection: the grants are what the code under test gives now
    for flag, reason in _all_grants():
        assert NEEDED_BY.match(reason), f"{flag}: {reason}"
        assert reason.rstrip()[-1].isalnum() or reason.rstrip()[-1] == ")", reason
        assert "XX" not in reason, reason  # a placeholder, not an explanation


def test_the_rootlesskit_reason_names_the_sysctl_a_user_can_check() -> None:
    (g,) = [
        g
        for g in decide(IR, engine(EngineMode.SYSTEM_DOCKER), UBUNTU).grants
        if "apparmor" in g.flag
    ]
    assert "kernel.apparmor_restrict_unprivileged_userns=1" in g.reason


def test_rootless_docker_openembedded_says_why_it_needs_the_seccomp_profile() -> None:
    (g,) = decide(OE, engine(EngineMode.ROOTLESS_DOCKER), HOST).grants
    assert g.flag == "--security-opt=seccomp=/usr/share/containers/seccomp.json"
    assert g.reason.startswith("rootless docker: the entrypoint nests a user namespace")
    assert "unshare(CLONE_NEWUSER)" in g.reason
    assert "pivot_root" not in g.reason  # that is isar-rootless's need, not this cell's


# --------------------------------------------------------------------------
# --kvm: who can open the device decides the group; other grants stay
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "gid", "ok"),
    [
        (0o606, 108, None),  # rw for others: no group needed
        (0o664, 108, 108),  # others may read only: the group
        (0o662, 108, 108),  # others may write only: the group
        (0o646, 108, None),  # the group cannot, others can: no group
        (0o667, 108, None),  # others may also execute: still no group needed
        (0o670, 108, 108),  # the group may also execute: still the group
        (0o661, 108, 108),  # others may execute only: the group, whatever the x bit
    ],
)
def test_kvm_needs_read_and_write_for_others_to_go_without_its_group(
    mode: int, gid: int, ok: int | None
) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=gid, mode=mode))
    p = decide(IR, engine(EngineMode.SYSTEM_DOCKER), host, kvm=True)
    assert p.kvm_gid == ok


@pytest.mark.parametrize("mode", [0o640, 0o620, 0o600], ids=oct)
def test_kvm_whose_group_cannot_read_and_write_is_refused(mode: int) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=mode))
    with pytest.raises(HostError, match="can be opened by root only") as info:
        decide(IR, engine(EngineMode.SYSTEM_DOCKER), host, kvm=True)
    assert f"{mode:04o}, group 108" in info.value.message


def test_kvm_of_group_one_is_handed_over_like_any_other_group() -> None:
    host = replace(HOST, kvm=KvmDevice(gid=1, mode=0o660))
    assert decide(IR, engine(EngineMode.ROOTFUL_PODMAN), host, kvm=True).kvm_gid == 1


def test_kvm_adds_the_device_to_the_cells_grants_not_instead_of_them() -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o666), selinux_enforcing=True)
    e = engine(EngineMode.ROOTFUL_PODMAN, selinux=True)
    without = {g.flag for g in decide(IR, e, host).grants}
    with_kvm = {g.flag for g in decide(IR, e, host, kvm=True).grants}
    assert with_kvm == without | {"--device=/dev/kvm"}
    assert "--security-opt=label=disable" in without


def test_by_default_no_kvm_and_sudo_reaches_the_rootful_engine() -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o666))
    p = decide(IP, engine(EngineMode.ROOTLESS_PODMAN), host)
    assert p.executor == ("sudo", "--preserve-env")
    assert "--device=/dev/kvm" not in {g.flag for g in p.grants}
    assert p.kvm_gid is None


def test_kvm_refusals_carry_their_fix() -> None:
    with pytest.raises(HostError) as info:
        decide(IR, engine(EngineMode.SYSTEM_DOCKER), HOST, kvm=True)
    assert info.value.fix and info.value.fix.startswith("enable KVM (load kvm_intel or kvm_amd")
    assert "or drop --kvm" in info.value.fix
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o660))
    with pytest.raises(HostError) as info:
        decide(IR, engine(EngineMode.ROOTLESS_PODMAN), host, kvm=True)
    assert info.value.message.endswith("the user namespace does not map it")
    assert info.value.fix and info.value.fix.endswith("or use a rootful engine")
    assert 'KERNEL=="kvm", MODE="0666"' in info.value.fix


# --------------------------------------------------------------------------
# refusals a user reads: missing seccomp profiles, capabilities
# --------------------------------------------------------------------------


def test_a_missing_podman_profile_is_refused_with_the_package_to_install() -> None:
    host = replace(HOST, podman_seccomp_profile=None)
    with pytest.raises(HostError) as info:
        decide(IR, engine(EngineMode.SYSTEM_DOCKER), host)
    assert info.value.message.startswith("this cell needs a seccomp profile that allows")
    assert info.value.message.endswith(
        "(Docker's default profile refuses both without CAP_SYS_ADMIN)"
    )
    assert info.value.fix and info.value.fix.startswith("install containers-common (Debian 12:")
    assert info.value.fix.endswith("or pass --engine podman")


def test_a_uts_profile_that_could_not_be_made_says_why() -> None:
    host = replace(HOST, uts_seccomp_profile=None, uts_seccomp_problem="disk full")
    with pytest.raises(HostError) as info:
        decide(IR, engine(EngineMode.ROOTLESS_DOCKER), host)
    assert info.value.message == "cannot make the seccomp profile this cell needs: disk full"


def test_missing_capabilities_are_listed_by_name_for_privileged_docker() -> None:
    host = replace(HOST, uid=0, missing_caps=("SYS_MODULE", "BPF"))
    with pytest.raises(HostError) as info:
        decide(IP, engine(EngineMode.SYSTEM_DOCKER), host)
    assert "lacks CAP_SYS_MODULE, CAP_BPF (a VM" in info.value.message
    assert info.value.fix == (
        "use podman for isar-privileged (--engine podman), or build isar-rootless"
    )
