"""ModelDeployment -> spec ConfigMap, Deployment, Service (+ HPA with autoscaling)."""

from __future__ import annotations

from typing import Any

from hanlin.api import ModelDeployment
from hanlin.plan import Resolved, WorkloadPlan, plan_serving
from hanlin_operator.builders.common import (
    BuildSettings,
    finish,
    metadata,
    pod_spec,
    selector,
    spec_configmap,
    spec_hash,
)

#: spec.autoscaling.target.metric -> the serving pods' Prometheus metric (Pods metric).
POD_METRICS = {
    "inflightRequests": "hanlin_num_requests_running",
    "queueDepth": "hanlin_num_requests_waiting",
    "kvCacheUtilization": "hanlin_kv_cache_usage_ratio",
}


def deployment(
    owner: Any,
    plan: WorkloadPlan,
    settings: BuildSettings,
    config: dict[str, Any],
    replicas: int | None,
) -> dict[str, Any]:
    """A Deployment running `plan`; the pod template carries the config's hash so a change rolls out."""
    meta = metadata(owner, plan.name, plan.role)
    template_meta = {
        "labels": meta["labels"],
        "annotations": {"hanlin.dev/config-hash": spec_hash(config)},
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(owner, plan.role)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": template_meta,
            "spec": pod_spec(owner, plan, settings, owner.spec.resources),
        },
    }
    # With an HPA the replica count belongs to it: leaving the field out keeps apply from fighting it.
    if replicas is not None:
        spec["replicas"] = replicas
    return finish({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec})


def service(owner: Any, plan: WorkloadPlan) -> dict[str, Any]:
    """A ClusterIP Service with one port per plan port."""
    ports = []
    for p in plan.ports:
        port: dict[str, Any] = {"name": p.name, "port": p.port, "targetPort": p.port}
        if p.name == "grpc":
            port["appProtocol"] = "grpc"
        ports.append(port)
    return finish(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(owner, plan.name, plan.role),
            "spec": {"type": "ClusterIP", "selector": selector(owner, plan.role), "ports": ports},
        }
    )


def hpa(md: ModelDeployment) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA on the serving metric, or None without spec.autoscaling."""
    scaling = md.spec.autoscaling
    if scaling is None:
        return None
    target = scaling.target
    if target.metric == "cpu":
        metric: dict[str, Any] = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": int(target.value)},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": POD_METRICS[target.metric]},
                "target": {"type": "AverageValue", "averageValue": str(target.value)},
            },
        }
    return finish(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(md, md.metadata.name, "serve"),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": md.metadata.name,
                },
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": [metric],
            },
        }
    )


def build(
    md: ModelDeployment, settings: BuildSettings, resolved: Resolved | None = None
) -> list[dict[str, Any]]:
    """The children of a ModelDeployment (the HPA only with spec.autoscaling)."""
    plan = plan_serving(md, resolved)
    config = spec_configmap(md)
    replicas = None if md.spec.autoscaling is not None else plan.replicas
    env_digest = {"env": [(e.name, repr(e.value)) for e in plan.env], "cm": config["data"]}
    children = [config, deployment(md, plan, settings, env_digest, replicas), service(md, plan)]
    scaler = hpa(md)
    if scaler is not None:
        children.append(scaler)
    return children
