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


def default_priority() -> int:
    """A random priority: equal priorities make kopf pause every replica, distinct ones elect one."""
    return random.SystemRandom().randint(1, 1_000_000)
