"""--emit kubernetes: the same RunPlan as a Job; the renderer decides nothing."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kasctl.build_system import BuildSystem
from kasctl.config import repo
from kasctl.decide.credentials import Share
from kasctl.decide.plan import PodLife, PodRequest, RunPlan, Volume, plan
from kasctl.decide.privileges import POD_SECCOMP_PROFILE
from kasctl.engine import kubernetes
from kasctl.errors import UsageError
from kasctl.host.facts import EngineMode
from kasctl.layout import AGENT_SOCKET, CACHE_SOCKET

from .test_plan import HOST, engine, request

POD = PodRequest(remote="https://git.example.invalid/bsp.git", commit="a" * 40)
IR, OE, IP = BuildSystem.ISAR_ROOTLESS, BuildSystem.OPENEMBEDDED, BuildSystem.ISAR_PRIVILEGED


def pod_plan(build_system: BuildSystem = IR, **kw: object) -> RunPlan:
    return plan(request(build_system, pod=POD, **kw), HOST, engine(EngineMode.KUBERNETES))


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("build_system", [IR, OE], ids=lambda b: b.value)
def test_every_security_setting_of_the_job_is_a_grant_of_the_plan(
    build_system: BuildSystem,
) -> None:
    p = pod_plan(build_system)
    job = kubernetes.job(p, "kasctl-x")
    spec = job["spec"]["template"]["spec"]
    security = _container(job)["securityContext"]
    granted = {(g.setting[0], g.setting[1]): g.setting[2] for g in p.grants if g.setting}
    assert all(g.setting for g in p.grants), "each pod grant says where it goes"
    assert security == {k: v for (w, k), v in granted.items() if w == "container"}
    pod_keys = set(spec) - {"restartPolicy", "initContainers", "containers", "volumes"}
    assert {k: spec[k] for k in pod_keys} == {k: v for (w, k), v in granted.items() if w == "pod"}
    assert spec["hostUsers"] is False, "every pod build runs in a user namespace of its own"
    assert all(g.reason for g in p.grants)


def test_isar_rootless_gets_what_it_needs_and_never_privilege() -> None:
    security = _container(kubernetes.job(pod_plan(IR), "kasctl-x"))["securityContext"]
    assert security["capabilities"] == {"add": ["SYS_ADMIN"]}
    assert security["procMount"] == "Unmasked"
    assert security["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": POD_SECCOMP_PROFILE,
    }
    assert "privileged" not in security and "Unconfined" not in str(security)
    oe = _container(kubernetes.job(pod_plan(OE), "kasctl-x"))["securityContext"]
    assert "capabilities" not in oe and "procMount" not in oe


def test_the_build_runs_kas_through_kasctls_entrypoint_with_the_plans_environment() -> None:
    p = pod_plan(IR, kas_args=("/repo/kas.yml",))
    container = _container(kubernetes.job(p, "kasctl-x"))
    assert container["command"] == list(p.entrypoint)
    assert container["args"] == ["build", "/repo/kas.yml"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["USER_ID"] == "1000" and env["KASCTL_BUILD_SYSTEM"] == "isar-rootless"
    assert (env["DL_DIR"], env["SSTATE_DIR"]) == ("/downloads", "/sstate")


def test_the_source_is_cloned_at_the_plans_commit_and_the_caches_are_claims() -> None:
    p = pod_plan(IR)
    job = kubernetes.job(p, "kasctl-x")
    spec = job["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    init_env = {e["name"]: e["value"] for e in init["env"]}
    assert (init_env["KASCTL_REMOTE"], init_env["KASCTL_COMMIT"]) == (POD.remote, POD.commit)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["kasctl-downloads"]["persistentVolumeClaim"] == {"claimName": "kasctl-downloads"}
    assert volumes["kasctl-sstate"]["persistentVolumeClaim"] == {"claimName": "kasctl-sstate"}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    mounts = {m["mountPath"]: m for m in _container(job)["volumeMounts"]}
    assert mounts["/repo"]["readOnly"] is True and mounts["/repo"]["name"] == "source"


def test_a_failed_build_is_not_retried_and_the_finished_job_expires() -> None:
    job = kubernetes.job(pod_plan(IR), "kasctl-x")
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_the_pods_life_is_the_plans_not_the_renderers() -> None:
    life = PodLife(source_user=(2000, 2001), retries=2, ttl_seconds=60, cache_access="X")
    p = replace(pod_plan(IR), pod_life=life)
    job = kubernetes.job(p, "kasctl-x")
    (init,) = job["spec"]["template"]["spec"]["initContainers"]
    assert init["securityContext"] == {"runAsUser": 2000, "runAsGroup": 2001}
    assert (job["spec"]["backoffLimit"], job["spec"]["ttlSecondsAfterFinished"]) == (2, 60)
    assert {c["spec"]["accessModes"][0] for c in kubernetes.claims(p)} == {"X"}


@pytest.mark.parametrize("build_system", [IR, OE], ids=lambda b: b.value)
def test_every_pod_refuses_to_build_in_the_nodes_user_namespace(build_system: BuildSystem) -> None:
    """A cluster that drops hostUsers: false must not get a build holding the node's root."""
    p = pod_plan(build_system)
    assert dict(p.env)["KASCTL_OWN_USERNS"] == "1"
    assert ("pod", "hostUsers", False) in [g.setting for g in p.grants]


def test_the_source_is_cloned_by_builder_not_root() -> None:
    (init,) = kubernetes.job(pod_plan(IR), "kasctl-x")["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e["value"] for e in _container(kubernetes.job(pod_plan(IR), "x"))["env"]}
    assert init["securityContext"]["runAsUser"] == int(env["USER_ID"]) != 0


def test_credentials_are_secrets_by_name_never_their_content(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine x login me password SECRET\n")
    share = Share(str(netrc), "/var/kas/userdata/.netrc", "NETRC_FILE")
    job = kubernetes.job(pod_plan(IR, shares=(share,)), "kasctl-x")
    text = kubernetes.to_yaml([job])
    assert "SECRET" not in text
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kasctl-netrc"] == {
        "name": "kasctl-netrc",
        "secret": {"secretName": "kasctl-netrc"},
    }
    mount = next(m for m in _container(job)["volumeMounts"] if m["name"] == "kasctl-netrc")
    assert mount == {
        "name": "kasctl-netrc",
        "mountPath": "/var/kas/userdata/.netrc",
        "subPath": "value",
        "readOnly": True,
    }


@pytest.mark.parametrize(
    ("kw", "build_system", "opening", "fix"),
    [
        ({}, IP, "isar-privileged needs a privileged pod", "build with isar-rootless"),
        ({"kvm": True}, IR, "--kvm passes this host's /dev/kvm", "leave out --kvm"),
        (
            {"runtime_args": ("--net=host",)},
            IR,
            "--runtime-args are engine options",
            "leave them out, or edit the emitted Job",
        ),
        (
            {"shares": (Share("/run/user/1/ssh", AGENT_SOCKET, "SSH_AUTH_SOCK"),)},
            IR,
            "/run/user/1/ssh is a socket on this host",
            "leave out --ssh-agent",
        ),
    ],
)
def test_what_a_pod_cannot_have_is_refused_with_the_fix(
    kw: dict[str, object], build_system: BuildSystem, opening: str, fix: str
) -> None:
    """Each refusal says what is wrong and how to fix it."""
    with pytest.raises(UsageError) as info:
        pod_plan(build_system, **kw)
    assert info.value.message.startswith(opening)
    assert (info.value.fix or "").startswith(fix)
    if build_system is IP:
        assert info.value.message.endswith("it would be root on the node")


def test_a_socket_refusal_names_the_secrets_a_pod_can_have_instead() -> None:
    share = Share("/run/user/1/gitcred", CACHE_SOCKET, "GIT_CREDENTIAL_SOCKET")
    with pytest.raises(UsageError) as info:
        pod_plan(IR, shares=(share,))
    assert (info.value.fix or "").endswith(
        "as a secret (--ssh-dir, --git-credential-store, NETRC_FILE)"
    )


@pytest.mark.parametrize(
    ("target", "secret"),
    [
        ("/var/kas/userdata/.netrc", "kasctl-netrc"),
        ("/var/kas/userdata/.ssh/", "kasctl-ssh"),
        ("/var/kas/userdata/.git-credentials", "kasctl-git-credentials"),
        ("/var/kas/userdata/.docker/config.json", "kasctl-config-json"),
        ("/var/kas/userdata/AWS_Config.", "kasctl-aws-config"),
        ("/var/kas/userdata/..hidden", "kasctl-hidden"),
    ],
)
def test_a_secret_is_named_after_its_file_as_kubernetes_accepts_names(
    tmp_path: Path, target: str, secret: str
) -> None:
    source = tmp_path / "credential"
    source.write_text("x")
    p = pod_plan(IR, shares=(Share(str(source), target, "NETRC_FILE"),))
    (mount,) = [m for m in p.mounts if m.target == target]
    assert mount.volume is not None and mount.volume.name == secret


def test_a_credential_dir_is_a_whole_secret_and_a_file_one_key(tmp_path: Path) -> None:
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    netrc = tmp_path / "netrc"
    netrc.write_text("x")
    shares = (
        Share(str(ssh), "/var/kas/userdata/.ssh", "--ssh-dir"),
        Share(str(netrc), "/var/kas/userdata/.netrc", "NETRC_FILE"),
    )
    mounts = {
        m["mountPath"]: m
        for m in _container(kubernetes.job(pod_plan(IR, shares=shares), "x"))["volumeMounts"]
    }
    assert "subPath" not in mounts["/var/kas/userdata/.ssh"]
    assert mounts["/var/kas/userdata/.netrc"]["subPath"] == "value"
    assert mounts["/var/kas/userdata/.ssh"]["readOnly"] is True


@pytest.mark.parametrize(
    ("kw", "readonly"),
    [
        ({}, True),  # build reads the repository
        ({"writes_repo": True}, False),  # shell, lock, dump --inplace write it
        ({"writes_repo": True, "repo_rw": False}, True),  # --repo-ro wins
        ({"repo_rw": True}, False),  # --repo-rw wins
    ],
)
def test_the_source_is_read_only_unless_the_command_writes_it(
    kw: dict[str, object], readonly: bool
) -> None:
    mounts = {
        m["mountPath"]: m
        for m in _container(kubernetes.job(pod_plan(IR, **kw), "x"))["volumeMounts"]
    }
    assert mounts["/repo"].get("readOnly", False) is readonly


def test_no_mount_of_a_pod_names_a_path_of_the_emitting_host(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("x")
    p = pod_plan(IR, shares=(Share(str(netrc), "/var/kas/userdata/.netrc", "NETRC_FILE"),))
    assert [m.source for m in p.mounts] == [""] * len(p.mounts)
    assert str(tmp_path) not in kubernetes.to_yaml([kubernetes.job(p, "x")])


def test_an_openembedded_pod_runs_the_images_own_entrypoint() -> None:
    """Only isar-rootless names kasctl's entrypoint (its lock check must not be skipped)."""
    assert "command" not in _container(kubernetes.job(pod_plan(OE), "x"))
    assert _container(kubernetes.job(pod_plan(IR), "x"))["command"][-1].endswith("entrypoint.py")


def test_a_pod_plan_is_no_engine_run() -> None:
    """Nothing of an engine's command line: no binary, executor, terminal or engine init."""
    p = pod_plan(IR)
    assert p.mode is EngineMode.KUBERNETES
    assert (p.binary, p.executor, p.tty, p.interactive, p.init) == ("", (), False, False, False)


def test_a_pods_warnings_are_the_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pod_plan(IR, env={"SSTATE_MIRRORS": "file:///mirror/PATH"})
    assert len(p.warnings) == 1 and p.warnings[0].startswith("SSTATE_MIRRORS has file://")
    assert pod_plan(IR).warnings == ()


def test_a_volume_of_no_known_kind_is_a_bug_not_an_empty_dir() -> None:
    p = pod_plan(IR)
    broken = replace(
        p, mounts=(replace(p.mounts[0], volume=Volume("scratchy", "work")), *p.mounts[1:])
    )
    with pytest.raises(ValueError, match="scratchy"):
        kubernetes.job(broken, "x")


def test_several_configs_are_several_jobs_after_the_claims_once() -> None:
    p = pod_plan(IR)
    docs = kubernetes.documents([("board-a", p), ("Board_A", p), ("board-b", p)])
    kinds = [d["kind"] for d in docs]
    assert kinds == ["PersistentVolumeClaim"] * 2 + ["Job"] * 3
    names = [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    assert len(set(names)) == 3 and names[0] == "kasctl-board-a"
    assert all(len(n) <= 63 and n == n.lower() for n in names)


def test_the_storage_class_is_the_claims_own() -> None:
    p = plan(
        request(IR, pod=replace(POD, storage_class="nfs-rwx")),
        HOST,
        engine(EngineMode.KUBERNETES),
    )
    claims = kubernetes.claims(p)
    assert [c["spec"]["storageClassName"] for c in claims] == ["nfs-rwx", "nfs-rwx"]
    assert "storageClassName" not in kubernetes.claims(pod_plan(IR))[0]["spec"]


# ----------------------------------------------------------------- the source


def _git(path: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    return subprocess.run(
        ["git", "-C", str(path), *ident, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def pushed(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "kas.yml").write_text("header:\n  version: 14\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "one")
    _git(work, "remote", "add", "origin", str(remote))
    _git(work, "push", "-q", "origin", "main")
    return work


def test_a_pushed_commit_is_where_the_pod_finds_the_source(pushed: Path) -> None:
    found = repo.published(pushed)
    assert found.remote == str(pushed.parent / "remote.git")
    assert found.commit == _git(pushed, "rev-parse", "HEAD")


def test_a_tree_with_uncommitted_changes_is_refused(pushed: Path) -> None:
    (pushed / "kas.yml").write_text("header:\n  version: 15\n")
    with pytest.raises(UsageError, match="not committed"):
        repo.published(pushed)
    _git(pushed, "checkout", "kas.yml")
    (pushed / "new.yml").write_text("x")
    with pytest.raises(UsageError, match="not committed"):
        repo.published(pushed)


# ------------------------------------------------- checked against Kubernetes

#: The oldest Kubernetes kasctl renders for: user namespaces for pods beta and on by default.
OLDEST = "1.33"


def _emitted(pushed: Path, *configs: str, capsys: pytest.CaptureFixture[str]) -> list[Any]:
    import yaml

    from kasctl import cli

    with pytest.raises(SystemExit) as done:
        cli.main(["build", "--emit", "kubernetes", *configs])
    out = capsys.readouterr().out
    assert done.value.code == 0, out
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("version", [OLDEST, "1.37"])
def test_every_emitted_document_is_valid_for_kubernetes_itself(
    pushed: Path,
    version: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kubernetes_validate

    (pushed / "b.yml").write_text(
        "header:\n  version: 14\nbuild_system: isar-rootless\nmachine: qemuarm64\n"
    )
    (pushed / "kas.yml").write_text("header:\n  version: 14\nbuild_system: isar-rootless\n")
    _git(pushed, "add", "-A")
    _git(pushed, "commit", "-qm", "configs")
    _git(pushed, "push", "-q", "origin", "main")
    monkeypatch.chdir(pushed)
    monkeypatch.setenv("KAS_WORK_DIR", str(pushed))

    docs = _emitted(pushed, "kas.yml", "b.yml", capsys=capsys)

    assert [d["kind"] for d in docs] == ["PersistentVolumeClaim"] * 2 + ["Job"] * 2
    for doc in docs:  # raises on a field unknown to that release (strict) or a bad value
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_would_catch_a_misspelt_setting(pushed: Path) -> None:
    """The check above can fail: a pod setting the API does not know is refused."""
    import kubernetes_validate

    job = kubernetes.job(pod_plan(IR), "kasctl-x")
    job["spec"]["template"]["spec"]["hostUser"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, OLDEST, strict=True)
    job = kubernetes.job(pod_plan(IR), "kasctl-x")
    job["spec"]["template"]["spec"]["hostUsers"] = "no"  # a string, not a boolean
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, OLDEST, strict=True)


def _readme_job() -> dict[str, Any]:
    import yaml

    text = (Path(__file__).parents[2] / "README.md").read_text()
    section = text.split("## On Kubernetes", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (job,) = [d for d in yaml.safe_load_all(block) if d]
    return job


#: The build container's variables that come from the emitting host's environment.
HOST_VARIABLES = {"TERM", "SHELL", "TZ"}


def test_the_readmes_worked_example_is_what_kasctl_emits(
    pushed: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Job for examples/isar-rootless-qemuamd64.yml, emitted here and now."""
    example = Path(__file__).parents[2] / "examples" / "isar-rootless-qemuamd64.yml"
    (pushed / "examples").mkdir()
    (pushed / "examples" / example.name).write_text(example.read_text())
    _git(pushed, "add", "-A")
    _git(pushed, "commit", "-qm", "example")
    _git(pushed, "push", "-q", "origin", "main")
    monkeypatch.chdir(pushed)
    monkeypatch.setenv("KAS_WORK_DIR", str(pushed))
    readme = _readme_job()
    (job,) = [
        d for d in _emitted(pushed, f"examples/{example.name}", capsys=capsys) if d["kind"] == "Job"
    ]
    spec, readme_spec = job["spec"]["template"]["spec"], readme["spec"]["template"]["spec"]
    (init,), (readme_init,) = spec["initContainers"], readme_spec["initContainers"]
    readme_init["env"] = init["env"]  # the remote and commit are this test's
    for pod in (spec, readme_spec):
        for container in pod["containers"]:
            container["env"] = [e for e in container["env"] if e["name"] not in HOST_VARIABLES]
    assert job == readme


def test_emit_warns_as_a_run_does_and_explains_each_config(
    pushed: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two configs of different build systems: each Job's own reasons, each warning once."""
    from kasctl import cli

    (pushed / "oe.yml").write_text("header:\n  version: 14\n")
    (pushed / "ir.yml").write_text("header:\n  version: 14\nbuild_system: isar-rootless\n")
    _git(pushed, "add", "-A")
    _git(pushed, "commit", "-qm", "configs")
    _git(pushed, "push", "-q", "origin", "main")
    monkeypatch.chdir(pushed)
    monkeypatch.setenv("KAS_WORK_DIR", str(pushed))
    monkeypatch.setenv("SSTATE_MIRRORS", "file:///mirror/PATH")
    with pytest.raises(SystemExit) as done:
        cli.main(["build", "--emit", "kubernetes", "--explain", "oe.yml", "ir.yml"])
    out, err = capsys.readouterr()
    assert done.value.code == 0, err
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warned if w.startswith("SSTATE_MIRRORS has file://")] == [warned[0]]
    assert len(warned) == 1
    explained = out.split("# oe.yml:\n", 1)[1]
    oe, ir = explained.split("# ir.yml:\n")
    assert "# hostUsers: false:" in oe and "SYS_ADMIN" not in oe
    assert "# capabilities.add: [SYS_ADMIN]:" in ir


# ------------------------------------------- the source: what each refusal says


def _refusal(repo_dir: Path) -> UsageError:
    with pytest.raises(UsageError) as info:
        repo.published(repo_dir)
    return info.value


def test_no_repository_says_how_a_pod_gets_its_source(tmp_path: Path) -> None:
    refused = _refusal(tmp_path)
    assert refused.message == (
        f"{tmp_path} is not a git repository with a commit: a pod gets the config's "
        "repository by cloning it"
    )
    assert refused.fix == "commit it to a git repository with a remote, and push"


def test_uncommitted_changes_are_named_by_their_first_file(pushed: Path) -> None:
    (pushed / "kas.yml").write_text("header:\n  version: 15\n")
    refused = _refusal(pushed)
    assert refused.message == (
        f"{pushed} has changes that are not committed (e.g. kas.yml): the pod would "
        "build the commit, not this tree"
    )
    assert refused.fix == "commit (or stash) them and push, then emit again"


def test_untracked_files_count_even_where_git_status_hides_them(pushed: Path) -> None:
    """A user's status.showUntrackedFiles=no must not let an untracked include slip by."""
    _git(pushed, "config", "status.showUntrackedFiles", "no")
    (pushed / "include.yml").write_text("x")
    with pytest.raises(UsageError, match=r"e\.g\. include\.yml"):
        repo.published(pushed)


def test_an_unpushed_commit_is_named_by_its_short_id(pushed: Path) -> None:
    (pushed / "kas.yml").write_text("header:\n  version: 16\n")
    _git(pushed, "commit", "-qam", "two")
    commit = _git(pushed, "rev-parse", "HEAD")
    refused = _refusal(pushed)
    assert refused.message == (
        f"commit {commit[:12]} of {pushed} is on no remote-tracking branch: the remote "
        "may not have it"
    )
    assert refused.fix == "push it (git push), then emit again"


def test_a_commit_on_a_branch_with_slashes_is_found_on_its_remote(pushed: Path) -> None:
    _git(pushed, "checkout", "-qb", "feature/board-x")
    (pushed / "kas.yml").write_text("header:\n  version: 17\n")
    _git(pushed, "commit", "-qam", "board x")
    _git(pushed, "push", "-q", "origin", "feature/board-x")
    found = repo.published(pushed)
    assert found.remote == str(pushed.parent / "remote.git")


def test_a_remote_without_a_url_is_refused_with_the_fix(pushed: Path) -> None:
    _git(pushed, "config", "--unset", "remote.origin.url")
    refused = _refusal(pushed)
    assert refused.message == f"remote 'origin' of {pushed} has no URL"
    assert refused.fix == "git remote set-url ..."


def test_an_untracked_file_with_spaces_is_named_whole(pushed: Path) -> None:
    """As git status names it: quoted."""
    (pushed / "my board.yml").write_text("x")
    with pytest.raises(UsageError, match=r'\(e\.g\. "my board\.yml"\)'):
        repo.published(pushed)
