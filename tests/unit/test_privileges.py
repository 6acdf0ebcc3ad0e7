"""What the host asks of a run besides its cell: --kvm's device and group, SELinux.

Judged from given facts: a rootful engine may hand builder /dev/kvm's group,
a rootless one cannot (the group is not mapped), and a device only root may
open is refused with its fix rather than passed to a builder that cannot use it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kasctl.build_system import BuildSystem
from kasctl.decide import privileges
from kasctl.decide.privileges import decide
from kasctl.errors import HostError, UsageError
from kasctl.host.facts import EngineFacts, EngineMode, HostFacts, KvmDevice

HOST = HostFacts(
    uid=1001,
    gid=1001,
    user="kasci",
    home="/home/kasci",
    podman_seccomp_profile="/usr/share/containers/seccomp.json",
    uts_seccomp_profile="/home/kasci/.cache/kasctl/seccomp/podman-uts-0.json",
)
ROOTFUL = [EngineMode.ROOTFUL_PODMAN, EngineMode.SYSTEM_DOCKER]
ROOTLESS = [EngineMode.ROOTLESS_PODMAN, EngineMode.ROOTLESS_DOCKER]
IR = BuildSystem.ISAR_ROOTLESS


def engine(mode: EngineMode, selinux: bool = False) -> EngineFacts:
    return EngineFacts(mode=mode, binary=mode.kind, version="", selinux=selinux)


def flags(mode: EngineMode, host: HostFacts, kvm: bool = True, selinux: bool = False) -> set[str]:
    return {g.flag for g in decide(IR, engine(mode, selinux), host, kvm=kvm).grants}


ENGINE_MODES = [m for m in EngineMode if m.engine]


@pytest.mark.parametrize("mode", ENGINE_MODES, ids=lambda m: m.value)
def test_kvm_open_to_all_needs_only_the_device(mode: EngineMode) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o666))
    result = decide(IR, engine(mode), host, kvm=True)
    assert "--device=/dev/kvm" in {g.flag for g in result.grants}
    assert result.kvm_gid is None


@pytest.mark.parametrize("mode", ROOTFUL, ids=lambda m: m.value)
def test_kvm_of_a_group_on_a_rootful_engine_gives_builder_that_group(mode: EngineMode) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o660))
    result = decide(IR, engine(mode), host, kvm=True)
    assert "--device=/dev/kvm" in {g.flag for g in result.grants}
    assert result.kvm_gid == 108


@pytest.mark.parametrize("mode", ROOTLESS, ids=lambda m: m.value)
def test_kvm_of_a_group_on_a_rootless_engine_is_refused_with_the_fix(mode: EngineMode) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o660))
    with pytest.raises(HostError) as info:
        decide(IR, engine(mode), host, kvm=True)
    assert "rootless" in info.value.message and "0660" in info.value.message
    assert info.value.fix and "0666" in info.value.fix


@pytest.mark.parametrize("mode", ENGINE_MODES, ids=lambda m: m.value)
def test_kvm_for_root_only_is_refused_with_the_fix(mode: EngineMode) -> None:
    host = replace(HOST, kvm=KvmDevice(gid=0, mode=0o600))
    with pytest.raises(HostError) as info:
        decide(IR, engine(mode), host, kvm=True)
    assert info.value.fix and "0666" in info.value.fix


def test_kvm_missing_on_the_host_is_refused() -> None:
    with pytest.raises(HostError) as info:
        decide(IR, engine(EngineMode.SYSTEM_DOCKER), replace(HOST, kvm=None), kvm=True)
    assert "/dev/kvm is not on this host" in info.value.message
    assert info.value.exit_code == 3


def test_no_kvm_asked_no_device_whatever_the_host_has() -> None:
    host = replace(HOST, kvm=KvmDevice(gid=108, mode=0o666))
    for mode in EngineMode:
        assert not any("kvm" in f for f in flags(mode, host, kvm=False))


def test_label_disable_only_where_selinux_enforces_and_the_engine_labels() -> None:
    enforcing = replace(HOST, selinux_enforcing=True)
    label = "--security-opt=label=disable"
    assert label in flags(EngineMode.ROOTLESS_PODMAN, enforcing, kvm=False, selinux=True)
    assert label in flags(EngineMode.SYSTEM_DOCKER, enforcing, kvm=False, selinux=True)
    # a docker daemon without --selinux-enabled does not label its containers
    assert label not in flags(EngineMode.SYSTEM_DOCKER, enforcing, kvm=False, selinux=False)
    assert label not in flags(EngineMode.ROOTLESS_PODMAN, HOST, kvm=False, selinux=True)


def test_root_is_refused_unless_through_sudo_or_allowed() -> None:
    root = HostFacts(uid=0, gid=0, user="root", home="/root")
    with pytest.raises(UsageError, match="refusing to run as root") as raised:
        privileges.refuse_root(root, {})
    assert raised.value.fix is not None and "KAS_ALLOW_ROOT=yes" in raised.value.fix
    with pytest.raises(UsageError):
        privileges.refuse_root(root, {"KAS_ALLOW_ROOT": "1"})  # only the exact word counts
    privileges.refuse_root(root, {"KAS_ALLOW_ROOT": "yes"})
    privileges.refuse_root(replace(root, sudo_uid=1000, sudo_gid=1000), {})  # sudo keeps the ids
    privileges.refuse_root(HostFacts(uid=1000, gid=1000, user="me", home="/home/me"), {})


def test_the_refusal_of_root_says_what_and_both_ways_out() -> None:
    with pytest.raises(UsageError) as raised:
        privileges.refuse_root(HostFacts(uid=0, gid=0, user="root", home="/root"), {})
    assert raised.value.message == "refusing to run as root: builds should run as a normal user"
    assert raised.value.fix == (
        "run as your own user (or through sudo, which keeps your ids), "
        "or set KAS_ALLOW_ROOT=yes if you really mean it"
    )
