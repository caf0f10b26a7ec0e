"""TrainingJob -> spec ConfigMap, progress channel, headless Service, Indexed Job."""

from __future__ import annotations

from typing import Any

from hanlin.api import TrainingJob
from hanlin.plan import MASTER_PORT, Resolved, plan_training
from hanlin_operator.builders.common import (
    BuildSettings,
    finish,
    indexed_job,
    metadata,
    progress_objects,
    selector,
    spec_configmap,
)


def build(
    job: TrainingJob, settings: BuildSettings, resolved: Resolved | None = None
) -> list[dict[str, Any]]:
    """The children of a TrainingJob, in the order they should be applied."""
    plan = plan_training(job, resolved)
    name = job.metadata.name
    # Pod 0 of an Indexed Job with `subdomain` gets the stable name <job>-0.<service>.
    leader = f"{name}-0.{name}.{job.metadata.namespace}.svc"
    service = finish(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(job, name, "rendezvous"),
            "spec": {
                "clusterIP": "None",
                # torchrun's rendezvous happens before any pod is Ready.
                "publishNotReadyAddresses": True,
                "selector": selector(job, plan.role),
                "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
            },
        }
    )
    spec = job.spec
    return [
        spec_configmap(job),
        *progress_objects(job),
        service,
        indexed_job(
            job,
            plan,
            settings,
            spec.resources,
            backoff_limit=spec.backoff_limit,
            active_deadline_seconds=spec.active_deadline_seconds,
            ttl_seconds_after_finished=spec.ttl_seconds_after_finished,
            suspend=spec.suspend,
            leader=leader,
            subdomain=name,
        ),
    ]
