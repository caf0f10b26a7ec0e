"""Local status of each resource and reference resolution through the operator's own logic.

The operator resolves `trainingJobRef`, `deploymentRef` and the promotion gate
from the statuses it reads from the API server (`Reconciler.resolve`). The
runner keeps the same status documents in memory and asks the same code, so
the gate rules and the artifact choice (merged model or base + adapter) cannot
drift apart. The one local difference: a deployment's in-cluster URL becomes
the URL of the local process.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hanlin.api import GROUP_VERSION, AgentService, AnyResource, EvalRun
from hanlin.plan import Resolved
from hanlin_operator.builders.common import BuildSettings
from hanlin_operator.kube import Kube
from hanlin_operator.reconcile import GateFailed, Reconciler, Waiting

__all__ = ["GateFailed", "LocalState", "Waiting"]

NAMESPACE = "default"


class _NoCluster(Kube):
    """The reconciler's fallback lookup: locally there is nothing beyond what the runner knows."""

    def __init__(self) -> None:
        pass

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return None


@dataclass
class LocalState:
    """Statuses of the resources run so far, and the local URLs of the deployments."""

    reconciler: Reconciler = field(
        default_factory=lambda: Reconciler(kube=_NoCluster(), settings=BuildSettings())
    )
    urls: dict[str, str] = field(default_factory=dict)
    """ModelDeployment name -> local OpenAI base URL (http://127.0.0.1:PORT/v1)."""

    def set_status(self, resource: AnyResource, status: dict[str, Any]) -> None:
        """Record a resource's status (what the operator would read from the API server)."""
        self.reconciler.cache.put(
            {
                "apiVersion": GROUP_VERSION,
                "kind": resource.kind,
                "metadata": {
                    "name": resource.metadata.name,
                    "namespace": resource.metadata.namespace or NAMESPACE,
                },
                "spec": resource.spec.to_dict(),
                "status": status,
            }
        )

    def resolve(self, resource: AnyResource) -> Resolved:
        """What the resource's references point at; raises GateFailed (or Waiting)."""
        local = resource.model_copy(deep=True)
        local.metadata.namespace = resource.metadata.namespace or NAMESPACE
        resolved = self.reconciler.resolve(local)
        ref = None
        if isinstance(resource, EvalRun) and resource.spec.model.deployment_ref:
            ref = resource.spec.model.deployment_ref.name
        if isinstance(resource, AgentService) and resource.spec.llm.deployment_ref:
            ref = resource.spec.llm.deployment_ref.name
        if ref is not None:
            resolved = replace(resolved, endpoint_url=self.urls[ref])
        return resolved
