"""Which labelled containers count as left over (pure rule) and the pid probe."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from kasctl import __version__
from kasctl.build_system import BuildSystem
from kasctl.engine.orphans import Labelled, pid_alive, stale
from kasctl.host.facts import EngineMode
from tests.unit.test_plan import HOST, WORK_DIR, make_plan

HERE = "builder-host"
WORK = "/w"


def test_a_dead_kasctl_on_this_host_leaves_a_leftover() -> None:
    c = Labelled("kasctl-1", WORK, HERE, 4242)
    assert stale([c], WORK, HERE, lambda pid: False) == ([c], [])


def test_a_live_kasctl_keeps_its_container() -> None:
    c = Labelled("kasctl-1", WORK, HERE, 4242)
    assert stale([c], WORK, HERE, lambda pid: True) == ([], [])


def test_other_work_dirs_are_not_looked_at() -> None:
    c = Labelled("kasctl-1", "/other", HERE, 4242)
    assert stale([c], WORK, HERE, lambda pid: False) == ([], [])


def test_another_hosts_container_is_only_reported() -> None:
    c = Labelled("kasctl-1", WORK, "ci-job-7", 4242)
    assert stale([c], WORK, HERE, lambda pid: False) == ([], [c])


def test_no_pid_label_on_this_host_is_a_leftover() -> None:
    c = Labelled("kasctl-1", WORK, HERE, None)
    assert stale([c], WORK, HERE, lambda pid: True) == ([c], [])


@given(
    st.lists(
        st.builds(
            Labelled,
            st.text(min_size=1),
            st.sampled_from([WORK, "/other"]),
            st.sampled_from([HERE, "elsewhere"]),
            st.one_of(st.none(), st.integers(1, 100)),
        )
    ),
    st.frozensets(st.integers(1, 100)),
)
def test_never_removes_a_live_or_foreign_container(
    found: list[Labelled], live: frozenset[int]
) -> None:
    leftover, foreign = stale(found, WORK, HERE, lambda pid: pid in live)
    for c in leftover:
        assert c.workdir == WORK and c.host == HERE and (c.pid is None or c.pid not in live)
    assert all(c.host != HERE and c.workdir == WORK for c in foreign)


def test_pid_alive_sees_itself_and_not_the_dead() -> None:
    assert pid_alive(os.getpid())
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not pid_alive(gone.pid)


def test_a_zombie_is_not_alive() -> None:
    zombie = subprocess.Popen(["true"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert not pid_alive(zombie.pid)
    zombie.wait()


def test_every_container_carries_what_the_rule_needs() -> None:
    host = replace(HOST, hostname=HERE)
    p = make_plan(EngineMode.ROOTLESS_PODMAN, BuildSystem.ISAR_ROOTLESS, host, pid=4242)
    assert dict(p.labels) == {
        "io.kasctl.version": __version__,
        "io.kasctl.workdir": str(WORK_DIR),
        "io.kasctl.pid": "4242",
        "io.kasctl.host": HERE,
    }
