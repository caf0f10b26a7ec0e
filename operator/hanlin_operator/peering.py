"""kopf peering: several replicas, one active (the highest priority; the rest pause).

kopf keeps its peers in `KopfPeering` / `ClusterKopfPeering` objects (group
kopf.dev); their CRDs must exist for peering to work. `peering_crds()` gives
them (the Helm chart installs the same); `hanlin operator peering-crds`
prints them for `kubectl apply -f -`.
"""

from __future__ import annotations

import random
from typing import Any

DEFAULT_PEERING = "hanlin"


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def peering_crds() -> list[dict[str, Any]]:
    """The two CRDs kopf's peering needs."""
    return [
        _crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


def ensure_peering_object(api: Any, name: str, namespace: str | None) -> bool:
    """Create the peering object the replicas meet in (kopf waits for it otherwise).

    Returns False when kopf's peering CRDs are not installed (run standalone then).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects = client.CustomObjectsApi(api)
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    body = {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": {"name": name}}
    try:
        if namespace:
            objects.create_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", body
            )
        else:
            objects.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
    except ApiException as err:
        if err.status == 409:
            return True
        if err.status == 404:
            return False
        raise
    return True


def default_priority() -> int:
    """A random priority: equal priorities make kopf pause every replica, distinct ones elect one."""
    return random.SystemRandom().randint(1, 1_000_000)
