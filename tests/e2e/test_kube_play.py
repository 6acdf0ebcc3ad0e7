"""The emitted Job's pod template, run for real by `podman kube play` (rootless), with drop-ones.

kasctl emits the Job for the Isar stand-in (tests/fixtures/isar-standin,
NOT Isar); this test plays its pod template the way a node would run it,
as far as podman 4.3 can, and says where it stands in for the cluster:

- podman plays Pods, not Jobs: the template becomes a Pod;
- the resources are left out (rootless podman on cgroup v1 cannot limit
  memory);
- the claims become local named volumes of this test, the remote a bare
  repository on a hostPath (the one change to the init container: git's
  safe.directory, as the hostPath shows up owned by nobody);
- `hostUsers: false` is podman's automatic user namespace, 65536 ids as a
  kubelet gives a pod (`--userns=auto:size=65536`, passed only when the pod
  says false: the flag would override hostUsers);
- podman 4.3 ignores the `seccompProfile` field: the Localhost profile is
  given as podman's seccomp annotation, from a profile root holding the file
  the README tells administrators to install; `RuntimeDefault` (the least a
  cluster enforcing profiles gives) is played as a containerd node's default,
  whose one difference that matters here is standing in for it:
  `containerd-default-standin.json` is podman's profile with pivot_root
  refused, as containerd's default profile leaves pivot_root out under any
  capability (CRI-O's default is podman's own, which allows it);
- podman 4.3 ignores `procMount: Unmasked` (it came in podman 4.7): the
  test unmounts /proc's masks before the entrypoint starts, and only when
  the pod asks for Unmasked (it needs CAP_SYS_ADMIN, as the real thing does
  not; the drop-one of SYS_ADMIN fails before that anyway, in newuidmap).

Each drop-one removes one granted setting and the stand-in build fails,
for the reason the grant names. `hostUsers: false` is dropped on rootful
podman, the one engine here whose containers can run in the host's own user
namespace as a node's do: the entrypoint then refuses to start, as the pod's
root and CAP_SYS_ADMIN would be the node's (rootless podman's containers are
always inside the user's own namespace, so there the drop proves nothing).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .harness import Project, Runner, kasctl_bin, make_project, make_runner

pytestmark = pytest.mark.e2e

PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")
#: The RuntimeDefault of a containerd node, standing in (see the module's text).
RUNTIME_DEFAULT_STANDIN = "containerd-default-standin.json"
UNMASK = (
    "for m in $(awk '$5 ~ \"^/proc/\" {print $5}' /proc/self/mountinfo | sort -r); "
    'do umount "$m" || { echo "test: cannot unmask $m" >&2; break; }; done; exec "$@"'
)


def _emit(runner: Runner, project: Project) -> dict[str, Any]:
    remote = project.work / "remote.git"
    for argv in (
        ["git", "clone", "-q", "--bare", str(project.repo), str(remote)],
        ["git", "-C", str(project.repo), "remote", "add", "origin", str(remote)],
        ["git", "-C", str(project.repo), "fetch", "-q", "origin"],
    ):  # as the user, who owns the repository
        assert runner.run(argv, project.work).returncode == 0
    result = runner.run(
        [kasctl_bin(), "build", "--emit", "kubernetes", project.config.removeprefix("repo/")],
        project.repo,
    )
    assert result.returncode == 0, result.stderr
    (job,) = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Job"]
    return job


def _pod(job: dict[str, Any], run: str, remote: Path) -> tuple[dict[str, Any], list[str]]:
    """The Job's pod template as podman 4.3 plays it; the extra kube play flags."""
    template = copy.deepcopy(job["spec"]["template"])
    spec = template["spec"]
    annotations: dict[str, str] = {}
    flags = []
    if spec.get("hostUsers") is False:
        flags.append("--userns=auto:size=65536")
    for volume in spec["volumes"]:
        if "persistentVolumeClaim" in volume:  # a local volume in place of the claim
            volume["persistentVolumeClaim"]["claimName"] += f"-{run}"
    renamed = {v["name"]: f"{v['name']}-{run}" for v in spec["volumes"] if "emptyDir" in v}
    for volume in spec["volumes"]:
        volume["name"] = renamed.get(volume["name"], volume["name"])
    spec["volumes"].append(
        {"name": "remote", "hostPath": {"path": str(remote), "type": "Directory"}}
    )
    for container in spec["initContainers"] + spec["containers"]:
        for mount in container["volumeMounts"]:
            mount["name"] = renamed.get(mount["name"], mount["name"])
    (init,) = spec["initContainers"]
    init["volumeMounts"].append({"name": "remote", "mountPath": str(remote), "readOnly": True})
    init["command"][-1] = "git config --global --add safe.directory '*'; " + init["command"][-1]
    (build,) = spec["containers"]
    build.pop("resources")  # a node enforces them; rootless podman on cgroup v1 cannot
    security = build["securityContext"]
    profile = security.pop("seccompProfile", None)
    if profile:
        name = (
            profile["localhostProfile"]
            if profile["type"] == "Localhost"
            else RUNTIME_DEFAULT_STANDIN  # RuntimeDefault, as a containerd node has it
        )
        annotations[f"container.seccomp.security.alpha.kubernetes.io/{build['name']}"] = (
            "localhost/" + name
        )
    if security.get("procMount") == "Unmasked":
        build["command"] = ["/bin/sh", "-c", UNMASK, "unmask", *build["command"]]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"kasctl-play-{run}", "annotations": annotations},
        "spec": spec,
    }, flags


def _play(runner: Runner, pod: dict[str, Any], flags: list[str], scratch: Path) -> tuple[int, str]:
    """kube play, wait for the build container, its log; everything removed afterwards."""
    path = scratch / f"{pod['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(pod, sort_keys=False))
    path.chmod(0o644)
    profiles = scratch / "seccomp"
    name = pod["metadata"]["name"]
    build = f"{name}-{pod['spec']['containers'][0]['name']}"
    try:
        play = runner.run(
            ["podman", "kube", "play", *flags, "--seccomp-profile-root", str(profiles), str(path)],
            scratch,
            timeout=600,
        )
        state = runner.run(["podman", "inspect", build, "--format", "{{.State.Status}}"], scratch)
        if play.returncode != 0 or state.stdout.strip() in ("", "created"):
            logs = runner.run(["podman", "logs", build], scratch)
            return 125, play.stderr + logs.stdout + logs.stderr
        waited = runner.run(["podman", "wait", build], scratch, timeout=600)
        logs = runner.run(["podman", "logs", build], scratch)
        return int(waited.stdout.strip() or 125), logs.stdout + logs.stderr
    finally:
        runner.run(["podman", "kube", "down", str(path)], scratch)
        runner.run(["podman", "pod", "rm", "-f", name], scratch)
        volumes = runner.run(["podman", "volume", "ls", "-q"], scratch).stdout.split()
        for volume in volumes:
            if volume.endswith(run_suffix(name)):
                runner.run(["podman", "volume", "rm", "-f", volume], scratch)


def run_suffix(pod_name: str) -> str:
    return "-" + pod_name.rsplit("-", 1)[-1]


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[Runner, dict[str, Any], Path, Path]:
    runner = make_runner("rootless-podman")
    project = make_project(runner)
    scratch = Path(tempfile.mkdtemp(prefix="kasctl-kube-play-", dir="/tmp"))
    scratch.chmod(0o755)
    (scratch / "seccomp").mkdir()
    # what the README asks of each node: podman's profile, under the name the Job uses
    shutil.copy(PODMAN_PROFILE, scratch / "seccomp" / "kasctl-isar-rootless.json")
    (scratch / "seccomp" / RUNTIME_DEFAULT_STANDIN).write_text(json.dumps(_without_pivot_root()))
    subprocess.run(["chown", "-R", f"{runner.uid}:{runner.gid}", str(scratch)], check=True)
    return runner, _emit(runner, project), project.work / "remote.git", scratch


def _without_pivot_root() -> dict[str, Any]:
    """Podman's profile with pivot_root refused (EPERM), as containerd's default has it."""
    profile: dict[str, Any] = json.loads(PODMAN_PROFILE.read_text())
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if n != "pivot_root"]
    profile["syscalls"] = [r for r in profile["syscalls"] if r["names"]]
    profile["syscalls"].append({"names": ["pivot_root"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1})
    return profile


@pytest.fixture(scope="module")
def rootful() -> Runner:
    return make_runner("rootful-podman")


def _build(
    played: tuple[Runner, dict[str, Any], Path, Path],
    run: str,
    job: dict[str, Any],
    runner: Runner | None = None,
) -> tuple[int, str]:
    """Play the job's pod with the played runner (rootless podman), or the one given."""
    played_by, _job, remote, scratch = played
    pod, flags = _pod(job, run, remote)
    return _play(runner or played_by, pod, flags, scratch)


def _security(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]["securityContext"]


@pytest.mark.parametrize("engine", ["rootless-podman", "rootful-podman"])
def test_the_emitted_pod_builds_the_stand_in_in_its_own_user_namespace(
    played: tuple[Runner, dict[str, Any], Path, Path], engine: str, request: pytest.FixtureRequest
) -> None:
    runner = request.getfixturevalue("rootful") if engine == "rootful-podman" else None
    status, log = _build(played, f"ok{engine[5]}{os.getpid()}", played[1], runner)
    assert status == 0, log[-5000:]
    assert "isar-standin: done (rootless)" in log
    # the nested namespace: root is builder (1000 of the pod), the rest from the
    # pod's own 65536 ids, nobody (65534) included
    assert "isar-standin: inside: uid_map  0 1000 1/ 1 1002 64533/ 65534 65535 1/" in log, log


@pytest.mark.parametrize(
    ("drop", "failure"),
    [
        # newuidmap cannot write the nested map without CAP_SYS_ADMIN
        ("capabilities", "FAILED: mmdebstrap --mode=unshare"),
        # a fresh proc mount while /proc has masked paths
        ("procMount", "FAILED: unshare into the builder's range"),
        # RuntimeDefault in place of the Localhost profile: bubblewrap's pivot_root
        ("seccompProfile", "pivot_root: Operation not permitted"),
    ],
)
def test_each_granted_pod_setting_is_needed(
    played: tuple[Runner, dict[str, Any], Path, Path], drop: str, failure: str
) -> None:
    job = copy.deepcopy(played[1])
    assert drop in _security(job), "the setting is one kasctl grants"
    if drop == "seccompProfile":  # never Unconfined: the least a cluster gives instead
        _security(job)[drop] = {"type": "RuntimeDefault"}
    else:
        del _security(job)[drop]
    status, log = _build(played, f"{drop.lower()[:4]}{os.getpid()}", job)
    assert status != 0, log[-5000:]
    assert "isar-standin: FAILED" in log and failure in log, log[-3000:]
    print("\n".join(line for line in log.splitlines() if "newuidmap" in line or "/proc" in line))


def test_without_host_users_false_the_pod_refuses_the_nodes_user_namespace(
    played: tuple[Runner, dict[str, Any], Path, Path], rootful: Runner
) -> None:
    """A cluster that drops hostUsers: false: the build must not run as the node's root."""
    job = copy.deepcopy(played[1])
    assert job["spec"]["template"]["spec"].pop("hostUsers") is False
    status, log = _build(played, f"host{os.getpid()}", job, rootful)
    assert status == 125, log[-3000:]
    assert "the node's own user namespace" in log, log[-3000:]
    assert "isar-standin" not in log, "refused before the build started"
