"""Watch events in, reconciles out: kopf watches, a work queue decides what to reconcile.

kopf delivers every watch event (the initial listing included, so a restarted
operator resumes everything) to small handlers in its event loop. They only
update the cache and queue keys:

- a resource whose generation differs from the one last reconciled (new, or
  its spec changed) is queued; its own status patches are not news;
- every event of a resource queues the resources that reference it (so an
  EvalRun starts the moment its TrainingJob succeeds);
- events of the children (Jobs, Deployments, progress ConfigMaps) queue the
  owner named by their labels (status follows within a second).

Worker threads drain the queue (`hanlin_operator.workqueue`). A failure maps
to kopf's error kinds: `TemporaryError` is retried with backoff,
`PermanentError` is recorded and waits for the spec to change; both show in a
`Reconciled` condition and a Warning event. A resource waiting on a reference
is retried slowly as a safety net; the reference's own events wake it sooner.

Nothing is handled through kopf's create/update handlers, so kopf writes no
bookkeeping annotations: the only writes are the children and the status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from hanlin.api import API_GROUP, API_VERSION
from hanlin_operator.builders.common import KIND_LABEL, MANAGED_BY, OWNER_LABEL, PROGRESS_LABEL
from hanlin_operator.conditions import set_condition
from hanlin_operator.reconcile import InvalidSpec, Key, Reconciler
from hanlin_operator.workqueue import WorkQueue, start_workers

log = logging.getLogger(__name__)
PLURALS = {
    "TrainingJob": "trainingjobs",
    "EvalRun": "evalruns",
    "ModelDeployment": "modeldeployments",
    "AgentService": "agentservices",
}
RESYNC_SECONDS = 60.0
RETRY_SECONDS = 10.0
MAX_RETRY_SECONDS = 300.0


def _record_error(reconciler: Reconciler, body: dict[str, Any], kind: str, err: Exception) -> None:
    """Make an error visible: a `Reconciled` condition and a Warning event."""
    permanent = isinstance(err, kopf.PermanentError)
    reason = "PermanentError" if permanent else "TemporaryError"
    message = str(err) or type(err).__name__
    status = dict(body.get("status") or {})
    gen = (body.get("metadata") or {}).get("generation")
    conds = set_condition(status.get("conditions") or [], "Reconciled", False, reason, message, gen)
    new: dict[str, Any] = {"conditions": conds}
    if permanent:
        new.update({"phase": "Failed", "message": message})
    meta = body["metadata"]
    try:
        result = reconciler.kube.patch_status(kind, meta["namespace"], meta["name"], new)
        if result:
            result.setdefault("kind", kind)
            reconciler.cache.put(result)
    except ApiException as patch_err:
        log.warning("could not record %s on %s: %s", reason, meta["name"], patch_err.reason)
    reconciler.kube.event(body, reason, message, warning=True)


def run_reconcile(reconciler: Reconciler, kind: str, namespace: str, name: str) -> str:
    """Reconcile one resource; failures become kopf's error kinds, recorded on the resource."""
    try:
        return reconciler.reconcile(kind, namespace, name)
    except InvalidSpec as err:
        failure: kopf.PermanentError | kopf.TemporaryError = kopf.PermanentError(
            f"invalid spec: {err}"
        )
    except ApiException as err:
        text = f"API server answered {err.status} {err.reason}: {(err.body or '')[:300]!s}"
        # 4xx other than conflicts/throttling: the manifest itself is refused; retrying won't help.
        if err.status is not None and 400 <= err.status < 500 and err.status not in (404, 409, 429):
            failure = kopf.PermanentError(text)
        else:
            failure = kopf.TemporaryError(text, delay=RETRY_SECONDS)
    except OSError as err:  # connection refused/reset: the API server may come back
        failure = kopf.TemporaryError(f"cannot reach the API server: {err}", delay=RETRY_SECONDS)
    body = reconciler.cache.get(kind, namespace, name)
    if body is not None:
        _record_error(reconciler, body, kind, failure)
    raise failure


@dataclass
class Controller:
    """The queue between watch events and reconciles, with retry and resync policy."""

    reconciler: Reconciler
    active: Callable[[], bool] = lambda: True
    """Whether this replica acts (kopf peering); a paused one drops its work."""
    queue: WorkQueue = field(default_factory=WorkQueue)
    _paused: bool = False
    _failures: dict[Hashable, int] = field(default_factory=dict)

    def start(self, workers: int) -> None:
        """Start the reconcile threads (daemons: they end with the queue or the process)."""
        start_workers(self.queue, self.process, workers)

    def stop(self) -> None:
        """Let the threads finish their current reconcile and exit."""
        self.queue.close()

    def process(self, key: Hashable) -> None:
        """One reconcile of `key`, then its retry or resync, if any."""
        assert isinstance(key, tuple)
        if not self.active():
            # Paused by a peer: kopf stops this replica's watches, and lists everything
            # afresh when it resumes, which refills the cache and queues every resource.
            # Until then the cache only grows stale, so it is emptied, and nothing is done.
            if not self._paused:
                log.info("a peer with a higher priority is active: pausing reconciles")
                self._paused = True
                self.reconciler.cache.clear()
            return
        self._paused = False
        kind, namespace, name = (str(part) for part in key)
        try:
            result = run_reconcile(self.reconciler, kind, namespace, name)
        except kopf.TemporaryError as err:
            tries = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(float(err.delay or RETRY_SECONDS) * 2 ** (tries - 1), MAX_RETRY_SECONDS)
            log.info("%s %s/%s: %s (retry in %.0fs)", kind, namespace, name, err, delay)
            self.queue.add_after(key, delay)
            return
        except kopf.PermanentError as err:
            self._failures.pop(key, None)
            log.warning("%s %s/%s: %s", kind, namespace, name, err)
            return
        self._failures.pop(key, None)
        if result == "waiting":
            self.queue.add_after(key, RESYNC_SECONDS)

    def resource_event(self, kind: str, event_type: str | None, obj: dict[str, Any]) -> None:
        """A watch event of one of the four kinds."""
        obj.setdefault("kind", kind)
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        key: Key = (kind, namespace, name)
        if event_type == "DELETED":
            self.reconciler.forget(kind, namespace, name)
            self._failures.pop(key, None)
        else:
            self.reconciler.cache.put(obj)
            if meta.get("generation") != self.reconciler.reconciled_generation(key):
                self.queue.add(key)
        # Our own status patch may already be cached, so every event wakes the dependents;
        # for those with nothing to do the reconcile changes nothing and costs no request.
        for dep_kind, dep_name in self.reconciler.dependents(kind, namespace, name):
            self.queue.add((dep_kind, namespace, dep_name))

    def child_event(self, event_type: str | None, obj: dict[str, Any]) -> None:
        """A watch event of a Job, Deployment or progress ConfigMap the operator made."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace", "")
        if event_type == "DELETED":
            self.reconciler.cache.drop(obj.get("kind", ""), namespace, meta.get("name", ""))
        else:
            self.reconciler.cache.put(obj)
        labels = meta.get("labels") or {}
        owner_kind, owner = labels.get(KIND_LABEL), labels.get(OWNER_LABEL)
        if owner_kind in PLURALS and owner:
            self.queue.add((owner_kind, namespace, owner))


def register(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    """Register the watch handlers of the operator on `registry`."""
    for kind, plural in PLURALS.items():
        _register_kind(registry, controller, kind, plural)
    managed = {"app.kubernetes.io/managed-by": MANAGED_BY}

    async def child_event(**kwargs: Any) -> None:
        controller.child_event(kwargs["type"], dict(kwargs["body"]))

    kopf.on.event("batch", "v1", "jobs", labels=managed, registry=registry)(child_event)
    kopf.on.event("apps", "v1", "deployments", labels=managed, registry=registry)(child_event)
    kopf.on.event(
        "", "v1", "configmaps", labels={**managed, PROGRESS_LABEL: "true"}, registry=registry
    )(child_event)


def _register_kind(
    registry: kopf.OperatorRegistry, controller: Controller, kind: str, plural: str
) -> None:
    # In the event loop, not kopf's thread pool: handling an event only touches the cache
    # and the queue, and queued bodies (thousands with 1000 resources) would cost memory.
    async def watch_event(**kwargs: Any) -> None:
        controller.resource_event(kind, kwargs["type"], dict(kwargs["body"]))

    kopf.on.event(API_GROUP, API_VERSION, plural, registry=registry, id="watch")(watch_event)
