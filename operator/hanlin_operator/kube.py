"""The few API calls the operator makes: apply, create-or-patch, status patch, events.

Server-side apply (one request, idempotent, no read first) for every child
except Jobs: a Job's pod template is immutable and the API server adds
fields to it, so a Job is created once and afterwards only its mutable
fields are patched.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from hanlin.api import API_GROUP, API_VERSION

FIELD_MANAGER = "hanlin-operator"
log = logging.getLogger(__name__)

_PLURALS = {
    "ConfigMap": "configmaps",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Event": "events",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Job": "jobs",
    "Deployment": "deployments",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "TrainingJob": "trainingjobs",
    "EvalRun": "evalruns",
    "ModelDeployment": "modeldeployments",
    "AgentService": "agentservices",
}
#: mutable fields of a Job that follow the resource after creation
_JOB_MUTABLE = ("suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "backoffLimit")


def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The REST path of an object (or of its collection when `name` is None)."""
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = f"{prefix}/namespaces/{namespace}/{_PLURALS[kind]}"
    return f"{out}/{name}" if name else out


class Kube:
    """Thin synchronous access to the API server through one `ApiClient`."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def _call(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        method, url, headers, payload, _ = self.api.param_serialize(
            method,
            url,
            query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=payload)
        raw = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason, body=raw)
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._call("GET", path(api_version, kind, namespace, name))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace matching a label selector."""
        data = self._call(
            "GET", path(api_version, kind, namespace), query=[("labelSelector", label_selector)]
        )
        return list(data.get("items", []))

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply (force: the operator owns its children's fields)."""
        meta = manifest["metadata"]
        url = path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        return self._call(
            "PATCH",
            url,
            manifest,
            "application/apply-patch+yaml",
            [("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    def ensure_job(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the Job, or patch only its mutable fields when it exists."""
        meta = manifest["metadata"]
        collection = path("batch/v1", "Job", meta["namespace"])
        try:
            return self._call("POST", collection, manifest, query=[("fieldManager", FIELD_MANAGER)])
        except ApiException as err:
            if err.status != 409:
                raise
        spec = {k: manifest["spec"].get(k) for k in _JOB_MUTABLE}
        patch = {"metadata": {"annotations": meta.get("annotations", {})}, "spec": spec}
        return self._call(
            "PATCH",
            path("batch/v1", "Job", meta["namespace"], meta["name"]),
            patch,
            "application/merge-patch+json",
            [("fieldManager", FIELD_MANAGER)],
        )

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete (background propagation); False when it was already gone."""
        try:
            self._call(
                "DELETE",
                path(api_version, kind, namespace, name),
                {"propagationPolicy": "Background"},
            )
            return True
        except ApiException as err:
            if err.status == 404:
                return False
            raise

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one of our resources."""
        url = path(f"{API_GROUP}/{API_VERSION}", kind, namespace, name) + "/status"
        return self._call("PATCH", url, {"status": status}, "application/merge-patch+json")

    def event(
        self, owner: dict[str, Any], reason: str, message: str, warning: bool = False
    ) -> None:
        """Post a core/v1 Event about `owner`; failures are logged, never raised."""
        meta = owner["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": owner.get("apiVersion"),
                "kind": owner.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
        }
        try:
            self._call("POST", path("v1", "Event", meta["namespace"]), body)
        except ApiException as err:
            log.warning("could not post event %s for %s: %s", reason, meta["name"], err.reason)
