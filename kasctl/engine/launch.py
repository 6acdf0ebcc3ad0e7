"""A planned run, for real: the image, what killed runs left behind, the container.

The two engine queries a run needs before its container starts (the image's
labels, and the containers an earlier kasctl left in this work dir) run at
the same time: each is an engine CLI start, and they do not depend on each
other.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from kasctl.build_system import BuildSystem
from kasctl.decide.plan import Request, RunPlan
from kasctl.engine import engines, image, orphans
from kasctl.errors import UsageError
from kasctl.host import lock
from kasctl.host.facts import HostFacts
from kasctl.layout import MANAGED_DIRS
from kasctl.report import cilog

log = logging.getLogger("kasctl")

Leftovers = tuple[list[orphans.Labelled], list[orphans.Labelled]]


def launch(
    run_plan: RunPlan, req: Request, host: HostFacts, build_dir: Path, *, wait: bool = True
) -> int:
    """Make sure of the image, take the build dir, remove leftovers, create dirs, run.

    The build dir's lock (kasctl.host.lock) is held from before the leftovers
    are removed until the container has ended; a refused run takes none.
    """
    engine_cmd = [*run_plan.executor, run_plan.binary]
    found: list[Leftovers] = []
    failed: list[BaseException] = []

    def ask_for_leftovers() -> None:
        try:
            found.append(leftovers(run_plan, host, req.work_dir))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    cilog.LOG.start("kasctl_image", f"kasctl: image {run_plan.image}")
    ps = threading.Thread(target=ask_for_leftovers, daemon=True)
    ps.start()
    try:
        labels = image.image_labels(engine_cmd, run_plan.image)
    finally:
        ps.join()
    if failed:
        raise failed[0]
    ensure_image(run_plan, req, labels)
    cilog.LOG.start("kasctl_start", "kasctl: container start")
    held = lock.acquire(build_dir, req.command, wait=wait)
    try:
        prepare_dirs(req.env)  # only now: a refused run leaves nothing behind
        give_work_dir(run_plan, req.work_dir)
        remove_leftovers(run_plan, *found[0])
        cilog.LOG.start("kasctl_kas", "kas " + " ".join(run_plan.command), collapsed=False)
        return engines.run(run_plan)
    finally:
        held.release()


def ensure_image(run_plan: RunPlan, req: Request, labels: Mapping[str, str] | None) -> None:
    """Build kasctl's image when it is missing; refuse a foreign one for isar-rootless."""
    env = req.env
    if labels is None:
        if env.get("KAS_CONTAINER_IMAGE"):
            raise UsageError(
                f"image {run_plan.image} (KAS_CONTAINER_IMAGE) is not in "
                f"{run_plan.mode.kind}'s store",
                fix="load or build it first",
            )
        print(f"kasctl: image {run_plan.image} is missing; building it now", file=sys.stderr)
        image.build([*run_plan.executor, run_plan.binary], run_plan.image)
    elif req.build_system is BuildSystem.ISAR_ROOTLESS and not image.is_kasctls(labels):
        raise image.foreign_image_error(run_plan.image, env)


def give_work_dir(run_plan: RunPlan, work_dir: Path) -> None:
    """In a CI job container: hand the root-owned checkout's top level to the build user."""
    if run_plan.give_work_dir is None:
        return
    uid, gid = run_plan.give_work_dir
    print(
        f"kasctl: giving the work dir {work_dir} (root's, in this CI job container) to the "
        f"build user {uid}:{gid}, so that the build can create its files there",
        file=sys.stderr,
    )
    os.chown(work_dir, uid, gid)


def prepare_dirs(env: Mapping[str, str]) -> None:
    """Create the managed dirs kas-container creates."""
    for var, _target, created in MANAGED_DIRS:
        if created and env.get(var):
            try:
                Path(env[var]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create {var} {env[var]!r}: {exc.strerror}",
                    fix=f"create it yourself, or point {var} at a directory you may write",
                ) from None


def leftovers(run_plan: RunPlan, host: HostFacts, work_dir: Path) -> Leftovers:
    """Containers of this work dir: left by a kasctl that is gone, and of other hosts."""
    found = engines.labelled(run_plan.executor, run_plan.binary, run_plan.mode.kind)
    return orphans.stale(found, str(work_dir), host.hostname, orphans.pid_alive)


def remove_leftovers(
    run_plan: RunPlan, leftover: list[orphans.Labelled], foreign: list[orphans.Labelled]
) -> None:
    """Containers an earlier, killed kasctl left in this work dir: say so and remove them."""
    for c in leftover:
        print(
            f"kasctl: removing container {c.name}, left in this work dir by kasctl "
            f"(pid {c.pid}) which is no longer running",
            file=sys.stderr,
        )
        engines.remove(run_plan.executor, run_plan.binary, c.name)
    for c in foreign:
        log.warning(
            "container %s of a kasctl on host %s uses this work dir too; left alone",
            c.name,
            c.host,
        )
