"""The operator's cache: the last-seen copy of every object it watches or wrote.

Fed by watch events and by the responses of its own writes, read by every
reconcile, so a reconcile costs requests only for what must change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cache:
    """Last-seen objects by kind, then (namespace, name), fed by watch events and apply responses.

    Indexed by kind first: every watch event of a resource asks for the objects of the
    referencing kinds, and a scan of the whole cache there made each event cost
    O(all objects), the whole run O(N^2).
    """

    objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if not obj.get("kind") or not meta.get("name"):
            return
        key = (meta.get("namespace", ""), meta["name"])
        obj = _trim(obj)
        with self.lock:
            of_kind = self.objects.setdefault(obj["kind"], {})
            old = of_kind.get(key)
            # An older copy (from a slow apply response) must not replace a newer event.
            if old is not None and _rv(old) > _rv(obj):
                return
            of_kind[key] = obj

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            self.objects.get(kind, {}).pop((namespace, name), None)

    def clear(self) -> None:
        """Forget everything (a paused replica's copies go stale)."""
        with self.lock:
            self.objects.clear()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get(kind, {}).get((namespace, name))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.objects.get(kind, {}).values())


#: kinds whose cached copy keeps its spec (the references and status need it)
_KEEP_SPEC = frozenset({"TrainingJob", "EvalRun", "ModelDeployment", "AgentService"})


def _trim(obj: dict[str, Any]) -> dict[str, Any]:
    """Only what reconciling reads: the cache holds thousands of objects in a small pod."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj["kind"],
        "metadata": meta,
    }
    if obj["kind"] in _KEEP_SPEC:
        out["spec"] = obj.get("spec")
    elif isinstance(obj.get("spec"), dict) and "replicas" in obj["spec"]:
        out["spec"] = {"replicas": obj["spec"]["replicas"]}
    if "status" in obj:
        out["status"] = obj["status"]
    if obj["kind"] == "ConfigMap" and meta.get("name", "").endswith("-progress"):
        out["data"] = obj.get("data")
    return out


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
