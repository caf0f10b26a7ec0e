"""kopf peering: several replicas, one active (the highest priority; the rest pause).

kopf keeps its peers in `KopfPeering` / `ClusterKopfPeering` objects (group
kopf.dev); their CRDs must exist for peering to work. `peering_crds()` gives
them (the Helm chart installs the same); `hanlin operator peering-crds`
prints them for `kubectl apply -f -`.
"""

from __future__ import annotations

import datetime
import logging
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
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


@dataclass
class PeeringGate:
    """Whether this replica is the active one, read from the peering object kopf keeps.

    kopf pauses a replica's watches while a live peer with a higher priority
    exists, but the operator's own work queue also runs timers (retries, the
    resync of waiting resources) that kopf does not know about. Before such
    work the queue asks this gate, which applies kopf's rule to the same object
    (cached for `ttl` seconds, so a busy queue costs one GET every few seconds).
    """

    api: Any
    name: str
    namespace: str | None
    priority: int
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}/{uuid.uuid4().hex}")
    ttl: float = 5.0
    _checked: float = field(default=-1e9, repr=False)
    _active: bool = field(default=True, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def active(self) -> bool:
        """True unless a live peer has a higher priority (errors keep the last answer)."""
        with self._lock:
            if time.monotonic() - self._checked < self.ttl:
                return self._active
            self._checked = time.monotonic()
            try:
                self._active = not higher_priority_peers(
                    self._status(), self.identity, self.priority
                )
            except Exception as err:  # the API server may be away; kopf itself will notice
                log.info("peering check failed, keeping the last answer: %s", err)
            return self._active

    def _status(self) -> dict[str, Any]:
        from kubernetes import client

        objects = client.CustomObjectsApi(self.api)
        body: Any
        if self.namespace:
            body = objects.get_namespaced_custom_object(
                "kopf.dev", "v1", self.namespace, "kopfpeerings", self.name
            )
        else:
            body = objects.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", self.name
            )
        return dict(body.get("status") or {})


def higher_priority_peers(status: dict[str, Any], identity: str, priority: int) -> list[str]:
    """Live peers (other than `identity`) in a peering status with a priority above `priority`."""
    now = datetime.datetime.now(datetime.UTC)
    out = []
    for peer, info in status.items():
        if peer == identity or not isinstance(info, dict):
            continue
        try:
            seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
            if seen.tzinfo is None:
                seen = seen.replace(tzinfo=datetime.UTC)
            alive = seen + datetime.timedelta(seconds=int(info.get("lifetime", 60))) > now
        except (KeyError, ValueError):
            continue
        if alive and int(info.get("priority", 0)) > priority:
            out.append(peer)
    return out
