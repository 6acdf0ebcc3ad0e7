"""Rendering a RunPlan to an engine command line, and running it.

The engines' CLIs are the interface, not their SDKs: the command kasctl runs
is exactly the one `--dry-run` prints, podman needs no API service, and the
terminal, signals and exit status pass straight through. Nothing here decides
policy; the grants come from `privileges` via the plan.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from kasctl.decide.plan import LABEL_PREFIX, Mount, RunPlan
from kasctl.engine.orphans import Guard, Labelled

#: Seconds a stopped container gets before the engine kills it.
STOP_GRACE = 10


def _mount(m: Mount, kind: str) -> str:
    spec = f"type=bind,source={m.seen_by_engine},target={m.target}"
    if m.readonly:
        spec += ",readonly" if kind == "docker" else ",ro=true"
    return f"--mount={spec}"


def render(plan: RunPlan) -> list[str]:
    """The complete engine command line for a plan (executor prefix included)."""
    kind = plan.mode.kind
    argv = [*plan.executor, plan.binary, "run", "--rm"]
    if plan.init:
        argv.append("--init")
    argv.append(f"--name={plan.name}")
    argv.append(f"--log-driver={plan.log_driver}")
    argv += [f"--label={k}={v}" for k, v in plan.labels]
    argv += [g.flag for g in plan.grants]
    argv += [_mount(m, kind) for m in plan.mounts]
    if kind == "podman":
        # podman copies the proxy variables of its own environment into every
        # container unless told not to; the container's environment is the plan's
        argv.append("--http-proxy=false")
    for key, value in plan.env:
        argv += ["-e", f"{key}={value}"]
    argv.append(f"--workdir={plan.workdir}")
    if plan.tty:
        argv.append("-t")
    if plan.interactive:
        argv.append("-i")
    argv += list(plan.runtime_args)
    if plan.entrypoint:  # after the runtime args: the engines take the last one given
        argv.append(f"--entrypoint={plan.entrypoint[0]}")
    argv.append(plan.image)
    argv += [*plan.entrypoint[1:], *plan.command]
    return argv


def show(argv: list[str]) -> str:
    return shlex.join(argv)


def run(plan: RunPlan) -> int:
    """Run the plan in the foreground; never leave its container behind.

    Returns the container's exit status, or 128+signal when kasctl itself
    was interrupted (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP). The
    first signal stops the container with a grace period; a second one kills
    it at once. If kasctl dies without a chance to do either, the guard
    (kasctl.engine.orphans) stops it.
    """
    argv = render(plan)
    received: list[int] = []
    helpers: list[subprocess.Popen[bytes]] = []
    timers: list[threading.Timer] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            print(f"kasctl: stopping container {plan.name}", file=sys.stderr)
            helpers.append(_quietly(stop_argv(plan)))
            # The stop may have raced the container's creation: kill if it is still there.
            late = threading.Timer(STOP_GRACE + 10, kill)
            late.daemon = True
            late.start()
            timers.append(late)
        elif len(received) == 2:
            kill()

    def kill() -> None:
        if len(helpers) < 2:
            print(f"kasctl: killing container {plan.name}", file=sys.stderr)
            helpers.append(_quietly(remove_argv(plan.executor, plan.binary, plan.name)))

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, on_signal) for s in signals}
    guard: Guard | None = None
    try:
        proc = subprocess.Popen(argv)
        guard = Guard.start([stop_argv(plan)], proc.pid)
        status = proc.wait()
        for timer in timers:
            timer.cancel()
        for helper in list(helpers):
            helper.wait()
        if received:  # --rm may still be under way: make sure it is gone before we return
            remove(plan.executor, plan.binary, plan.name)
    finally:
        if guard is not None:
            guard.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 128 + received[0]
    return status if status >= 0 else 128 - status


def _quietly(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_argv(plan: RunPlan) -> list[str]:
    """Stop the container: SIGTERM, then SIGKILL after the grace period."""
    return [*plan.executor, plan.binary, "stop", f"--time={STOP_GRACE}", plan.name]


def remove_argv(executor: Sequence[str], binary: str, name: str) -> list[str]:
    """Kill and remove a container now."""
    return [*executor, binary, "rm", "--force", name]


def remove(executor: Sequence[str], binary: str, name: str) -> None:
    subprocess.run(
        remove_argv(executor, binary, name),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )


#: `ps --format` templates: one line per container, the work dir last (it may hold tabs).
_PS_FORMAT = {
    "docker": '{{.Names}}\t{{.Label "%(p)s.pid"}}\t{{.Label "%(p)s.host"}}'
    '\t{{.Label "%(p)s.workdir"}}',
    "podman": '{{.Names}}\t{{index .Labels "%(p)s.pid"}}\t{{index .Labels "%(p)s.host"}}'
    '\t{{index .Labels "%(p)s.workdir"}}',
}


def labelled(executor: Sequence[str], binary: str, kind: str) -> list[Labelled]:
    """Every container in the store that carries kasctl's work-dir label.

    Filtering by the label's value is left to the caller: podman splits
    filter values at commas.
    """
    fmt = _PS_FORMAT[kind] % {"p": LABEL_PREFIX}
    argv = [*executor, binary, "ps", "--all", "--filter", f"label={LABEL_PREFIX}.workdir"]
    result = subprocess.run(
        [*argv, "--format", fmt],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return []
    found = []
    for line in result.stdout.splitlines():
        fields = line.split("\t", 3)
        if len(fields) == 4:
            name, pid, host, workdir = fields
            found.append(Labelled(name, workdir, host, int(pid) if pid.isdigit() else None))
    return found
