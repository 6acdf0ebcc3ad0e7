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
from types import FrameType

from kasctl.plan import Mount, RunPlan

#: Seconds a stopped container gets before the engine kills it.
STOP_GRACE = 10


def _mount(m: Mount, kind: str) -> str:
    spec = f"type=bind,source={m.source},target={m.target}"
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
    argv += [f"--label={k}={v}" for k, v in plan.labels]
    argv += [g.flag for g in plan.grants]
    argv += [_mount(m, kind) for m in plan.mounts]
    for key, value in plan.env:
        argv += ["-e", f"{key}={value}"]
    argv.append(f"--workdir={plan.workdir}")
    if plan.tty:
        argv.append("-t")
    if plan.interactive:
        argv.append("-i")
    argv += list(plan.runtime_args)
    argv.append(plan.image)
    argv += list(plan.command)
    return argv


def show(argv: list[str]) -> str:
    return shlex.join(argv)


def run(plan: RunPlan) -> int:
    """Run the plan in the foreground; stop the container on SIGINT/SIGTERM.

    Returns the container's exit status, or 128+signal when kasctl itself
    was interrupted (130 for SIGINT, 143 for SIGTERM).
    """
    argv = render(plan)
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            stop(plan)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(argv)
        while True:
            try:
                status = proc.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 128 + received[0]
    return status if status >= 0 else 128 - status


def stop(plan: RunPlan) -> None:
    """Ask the engine to stop the container: SIGTERM, then SIGKILL after the grace period."""
    subprocess.Popen(
        [*plan.executor, plan.binary, "stop", f"--time={STOP_GRACE}", plan.name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    print(f"kasctl: stopping container {plan.name}", file=sys.stderr)
