"""A RunPlan as Kubernetes documents: one batch/v1 Job per build, and the caches' claims.

Like kasctl.engine.engines for an engine's command line, this only renders:
every setting comes from the plan (kasctl.decide.plan, kasctl.decide.privileges),
the grants each to the field it names. What the Job holds:

- an init container (the same image) that clones the config's repository
  from its remote and checks out the plan's commit into the `source` volume;
- the build container: kasctl's entrypoint and kas's command, the plan's
  environment, the plan's grants as its securityContext (and the pod's);
- volumes: scratch (emptyDir) for the work dir, the source, the caches as
  persistent volume claims shared between builds, credentials as secrets
  (by name: never their content);
- the pod's life as the plan decides it (kasctl.decide.plan.PodLife): who
  clones, no restarts of a failed build (restartPolicy Never, backoffLimit
  from its retries), and a time to live for the finished Job.
"""

from __future__ import annotations

import re
from typing import Any

from kasctl.decide.plan import RunPlan

#: Where the init container clones the source (the `source` volume's mount).
SOURCE_MOUNT = "/source"


def _name(text: str) -> str:
    """A DNS-1123 label from a config's name: lower case, digits and '-', at most 63."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63].rstrip("-") or "build"


def _volume(kind: str, name: str) -> dict[str, Any]:
    match kind:
        case "claim":
            return {"name": name, "persistentVolumeClaim": {"claimName": name}}
        case "secret":
            return {"name": name, "secret": {"secretName": name}}
        case "scratch" | "source":  # the source: the init container clones into it
            return {"name": name, "emptyDir": {}}
    raise ValueError(f"no volume of kind {kind!r}")


def job(plan: RunPlan, job_name: str) -> dict[str, Any]:
    """The Job for one plan (its mode is kubernetes)."""
    if plan.pod is None or plan.pod_life is None:
        raise ValueError("not a pod plan")  # pragma: no cover
    life = plan.pod_life
    pod_spec: dict[str, Any] = {}
    security: dict[str, Any] = {}
    for grant in plan.grants:
        if grant.setting is None:
            raise ValueError(f"{grant.flag} is no pod setting")  # pragma: no cover
        where, key, value = grant.setting
        (pod_spec if where == "pod" else security)[key] = value
    volumes: dict[str, dict[str, Any]] = {}
    mounts = []
    for m in plan.mounts:
        if m.volume is None:
            raise ValueError(f"{m.target} has no volume")  # pragma: no cover
        volumes.setdefault(m.volume.name, _volume(m.volume.kind, m.volume.name))
        mount: dict[str, Any] = {"name": m.volume.name, "mountPath": m.target}
        if m.volume.key is not None:
            mount["subPath"] = m.volume.key
        if m.readonly:
            mount["readOnly"] = True
        mounts.append(mount)
    resources: dict[str, dict[str, str]] = {}
    for kind, resource, amount in plan.resources:
        resources.setdefault(kind, {})[resource] = amount
    container: dict[str, Any] = {
        "name": "build",
        "image": plan.image,
        "workingDir": plan.workdir,
        "env": [{"name": k, "value": v} for k, v in plan.env],
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": security,
    }
    if plan.entrypoint:
        container["command"] = list(plan.entrypoint)
        container["args"] = list(plan.command)
    else:
        container["args"] = list(plan.command)
    clone = (
        f'git clone --quiet --no-checkout "$KASCTL_REMOTE" {SOURCE_MOUNT} && '
        f'git -C {SOURCE_MOUNT} checkout --quiet --detach "$KASCTL_COMMIT"'
    )
    init = {
        "name": "source",
        "image": plan.image,
        "command": ["/bin/sh", "-ec", clone],
        "env": [
            {"name": "KASCTL_REMOTE", "value": plan.pod.remote},
            {"name": "KASCTL_COMMIT", "value": plan.pod.commit},
            {"name": "HOME", "value": "/tmp"},
        ],
        "volumeMounts": [{"name": "source", "mountPath": SOURCE_MOUNT}],
        "securityContext": {"runAsUser": life.source_user[0], "runAsGroup": life.source_user[1]},
    }
    pod_spec.update(
        {
            "restartPolicy": "Never",
            "initContainers": [init],
            "containers": [container],
            "volumes": list(volumes.values()),
        }
    )
    labels = {k.replace("io.kasctl.", "kasctl.io/"): v for k, v in plan.labels}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": labels},
        "spec": {
            "backoffLimit": life.retries,
            "ttlSecondsAfterFinished": life.ttl_seconds,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def claims(plan: RunPlan) -> list[dict[str, Any]]:
    """The caches' claims (ReadWriteMany: builds on several nodes share them)."""
    if plan.pod is None or plan.pod_life is None:
        raise ValueError("not a pod plan")  # pragma: no cover
    out = []
    for name in (plan.pod.downloads_claim, plan.pod.sstate_claim):
        spec: dict[str, Any] = {
            "accessModes": [plan.pod_life.cache_access],
            "resources": {"requests": {"storage": plan.pod.cache_size}},
        }
        if plan.pod.storage_class:
            spec["storageClassName"] = plan.pod.storage_class
        out.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    return out


def documents(plans: list[tuple[str, RunPlan]]) -> list[dict[str, Any]]:
    """The claims (once) and one Job per (config name, plan)."""
    if not plans:
        return []
    docs = claims(plans[0][1])
    seen: set[str] = set()
    for config_name, plan in plans:
        name = _name(f"kasctl-{config_name}")
        while name in seen:
            name = _name(f"{name[:58]}-{len(seen)}")
        seen.add(name)
        docs.append(job(plan, name))
    return docs


def to_yaml(docs: list[dict[str, Any]]) -> str:
    import yaml  # only --emit needs it

    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in docs)
