"""What every child object shares: labels, owner references, the pod rendered from a plan.

Builders are pure: resource (+ what its references resolved to) in, manifests
(plain dicts, ready for server-side apply) out. Each manifest carries a
`hanlin.dev/spec-hash` annotation, so the reconciler can skip objects that
already match without asking the API server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from hanlin.api import AnyResource, Resources
from hanlin.plan import (
    SPEC_DIR,
    SPEC_FILE,
    HttpProbe,
    IndexValue,
    LeaderAddress,
    SecretValue,
    WorkloadPlan,
)

MANAGED_BY = "hanlin-operator"
HASH_ANNOTATION = "hanlin.dev/spec-hash"
KIND_LABEL = "hanlin.dev/kind"
OWNER_LABEL = "hanlin.dev/owner"
PROGRESS_LABEL = "hanlin.dev/progress"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
RUN_AS_USER = 1000


@dataclass(frozen=True)
class BuildSettings:
    """Operator settings the builders need."""

    image: str = "hanlin/runtime:0.1.0"
    """The workload image when the resource does not name one."""
    storage_secret: str | None = None
    """A Secret whose keys (AWS_*) every workload gets as environment (by reference)."""
    image_pull_policy: str = "IfNotPresent"


def spec_hash(obj: Any) -> str:
    """A short, stable digest of a manifest (or any JSON value)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def labels(resource: AnyResource, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels plus the owner's kind and name."""
    return {
        "app.kubernetes.io/name": "hanlin",
        "app.kubernetes.io/instance": resource.metadata.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "hanlin",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        KIND_LABEL: resource.kind,
        OWNER_LABEL: resource.metadata.name,
    }


def selector(resource: AnyResource, component: str) -> dict[str, str]:
    """The (immutable) pod selector of a Deployment/Service."""
    return {
        "app.kubernetes.io/instance": resource.metadata.name,
        "app.kubernetes.io/component": component,
        KIND_LABEL: resource.kind,
    }


def owner_reference(resource: AnyResource) -> dict[str, Any]:
    """Makes the child garbage-collected with its resource."""
    return {
        "apiVersion": resource.apiVersion,
        "kind": resource.kind,
        "name": resource.metadata.name,
        "uid": resource.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(resource: AnyResource, name: str, component: str) -> dict[str, Any]:
    """Child metadata: name, namespace, labels, owner reference."""
    return {
        "name": name,
        "namespace": resource.metadata.namespace,
        "labels": labels(resource, component),
        "ownerReferences": [owner_reference(resource)],
    }


def finish(manifest: dict[str, Any]) -> dict[str, Any]:
    """Stamp the manifest with the hash of its content."""
    digest = spec_hash(manifest)
    manifest["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return manifest


def spec_document(resource: AnyResource) -> str:
    """The resource as the workload reads it from `--spec` (no status, no server fields)."""
    doc = {
        "apiVersion": resource.apiVersion,
        "kind": resource.kind,
        "metadata": {"name": resource.metadata.name, "namespace": resource.metadata.namespace},
        "spec": resource.spec.to_dict(),
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _child_name(resource: AnyResource, suffix: str) -> str:
    # The kind's short name keeps a TrainingJob and a ModelDeployment of the same name apart.
    return f"{resource.metadata.name}-{resource.short_names[0]}-{suffix}"


def spec_configmap_name(resource: AnyResource) -> str:
    """The ConfigMap holding the resource as the workload reads it."""
    return _child_name(resource, "spec")


def progress_configmap_name(resource: AnyResource) -> str:
    """The ConfigMap the workers write progress into."""
    return _child_name(resource, "progress")


def worker_account_name(resource: AnyResource) -> str:
    """The ServiceAccount (and Role) of a job's pods: may patch only the progress ConfigMap."""
    return _child_name(resource, "worker")


def spec_configmap(resource: AnyResource, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved resource, mounted read-only at /etc/hanlin in every pod."""
    data = {SPEC_FILE: spec_document(resource), **(extra or {})}
    return finish(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(resource, spec_configmap_name(resource), "spec"),
            "data": data,
        }
    )


def progress_objects(resource: AnyResource) -> list[dict[str, Any]]:
    """The progress ConfigMap and a ServiceAccount whose Role may patch only that ConfigMap.

    The ConfigMap is applied without `data`: the workers own its keys.
    """
    cm_name = progress_configmap_name(resource)
    sa_name = worker_account_name(resource)
    cm_meta = metadata(resource, cm_name, "progress")
    cm_meta["labels"][PROGRESS_LABEL] = "true"
    return [
        finish({"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm_meta}),
        finish(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": metadata(resource, sa_name, "worker"),
                "automountServiceAccountToken": False,
            }
        ),
        finish(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata(resource, sa_name, "worker"),
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": [cm_name],
                        "verbs": ["get", "patch"],
                    }
                ],
            }
        ),
        finish(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata(resource, sa_name, "worker"),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": sa_name,
                },
                "subjects": [
                    {
                        "kind": "ServiceAccount",
                        "name": sa_name,
                        "namespace": resource.metadata.namespace,
                    }
                ],
            }
        ),
    ]


def _env(plan: WorkloadPlan, leader: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for var in plan.env:
        value = var.value
        if isinstance(value, IndexValue):
            out.append(
                {
                    "name": var.name,
                    "valueFrom": {
                        "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}
                    },
                }
            )
        elif isinstance(value, LeaderAddress):
            out.append({"name": var.name, "value": leader})
        elif isinstance(value, SecretValue):
            out.append(
                {
                    "name": var.name,
                    "valueFrom": {"secretKeyRef": {"name": value.secret, "key": value.key}},
                }
            )
        else:
            out.append({"name": var.name, "value": value})
    return out


def _probe(probe: HttpProbe | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    return {
        "httpGet": {"path": probe.path, "port": probe.port},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def _compute(plan: WorkloadPlan) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if plan.compute.cpu:
        amounts["cpu"] = plan.compute.cpu
    if plan.compute.memory:
        amounts["memory"] = plan.compute.memory
    if plan.compute.gpu:
        amounts["nvidia.com/gpu"] = str(plan.compute.gpu)
    # Requests equal limits: a training or serving pod should be Guaranteed, not evicted first.
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def pod_spec(
    resource: AnyResource,
    plan: WorkloadPlan,
    settings: BuildSettings,
    placement: Resources,
    *,
    leader: str = "",
    service_account: str | None = None,
    restart_policy: str = "Always",
) -> dict[str, Any]:
    """The pod that runs `plan`: hardened, writable only where the plan says."""
    env = _env(plan, leader)
    if plan.progress_key is not None:
        env += [
            {"name": "HANLIN_PROGRESS_CONFIGMAP", "value": progress_configmap_name(resource)},
            {
                "name": "HANLIN_PROGRESS_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ]
    container: dict[str, Any] = {
        "name": plan.role,
        "image": plan.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(plan.command),
        "env": env,
        "resources": _compute(plan),
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "spec", "mountPath": SPEC_DIR, "readOnly": True}]
        + [{"name": s.name, "mountPath": s.path} for s in plan.scratch],
    }
    if settings.storage_secret:
        container["envFrom"] = [{"secretRef": {"name": settings.storage_secret}}]
    if plan.ports:
        container["ports"] = [
            {"name": p.name, "containerPort": p.port, "protocol": "TCP"} for p in plan.ports
        ]
    for field, probe in (("readinessProbe", plan.readiness), ("livenessProbe", plan.liveness)):
        rendered = _probe(probe)
        if rendered is not None:
            container[field] = rendered
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": spec_configmap_name(resource)}}
    ]
    for s in plan.scratch:
        empty: dict[str, Any] = {"medium": "Memory"} if s.memory else {}
        if s.size_limit:
            empty["sizeLimit"] = s.size_limit
        volumes.append({"name": s.name, "emptyDir": empty})
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "containers": [container],
        "volumes": volumes,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": service_account is not None,
        "enableServiceLinks": False,
    }
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        spec["tolerations"] = [t.to_dict() for t in placement.tolerations]
    return spec


def indexed_job(
    resource: AnyResource,
    plan: WorkloadPlan,
    settings: BuildSettings,
    placement: Resources,
    *,
    backoff_limit: int,
    active_deadline_seconds: int | None = None,
    ttl_seconds_after_finished: int | None = None,
    suspend: bool = False,
    leader: str = "",
    subdomain: str | None = None,
) -> dict[str, Any]:
    """An Indexed Job running `plan` once per index; pods may patch the progress ConfigMap."""
    meta = metadata(resource, plan.name, plan.role)
    template_spec = pod_spec(
        resource,
        plan,
        settings,
        placement,
        leader=leader,
        service_account=worker_account_name(resource),
        restart_policy="Never",
    )
    if subdomain is not None:
        template_spec["subdomain"] = subdomain
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": plan.replicas,
        "parallelism": plan.replicas,
        "backoffLimit": backoff_limit,
        "suspend": suspend,
        "template": {"metadata": {"labels": meta["labels"]}, "spec": template_spec},
    }
    if active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = active_deadline_seconds
    if ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    return finish({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec})
