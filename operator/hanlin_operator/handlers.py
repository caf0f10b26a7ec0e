"""kopf handlers: every event ends in the one level-triggered `Reconciler.reconcile`.

- the resource's own create/update/resume: reconcile, with kopf's retries
  (`TemporaryError` backs off and retries, `PermanentError` stops);
- any watch event of a resource: refresh the cache and wake the resources that
  reference it (so an EvalRun starts the moment its TrainingJob succeeds);
- events of the children (Jobs, Deployments, progress ConfigMaps): reconcile
  the owner named by their labels (status follows within a second);
- an idle timer per resource: a slow resync that also retries a missing
  reference without a hot loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from hanlin.api import API_GROUP, API_VERSION
from hanlin_operator.builders.common import KIND_LABEL, MANAGED_BY, OWNER_LABEL, PROGRESS_LABEL
from hanlin_operator.conditions import set_condition
from hanlin_operator.reconcile import InvalidSpec, Reconciler

log = logging.getLogger(__name__)
PLURALS = {
    "TrainingJob": "trainingjobs",
    "EvalRun": "evalruns",
    "ModelDeployment": "modeldeployments",
    "AgentService": "agentservices",
}
RESYNC_SECONDS = 60.0
RETRY_SECONDS = 10.0


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


def run_reconcile(reconciler: Reconciler, kind: str, body: Any) -> None:
    """Reconcile, mapping failures to kopf's retry policy and recording them."""
    body = dict(body)
    body.setdefault("kind", kind)
    meta = body["metadata"]
    try:
        reconciler.reconcile(kind, meta["namespace"], meta["name"], body)
    except InvalidSpec as err:
        failure: Exception = kopf.PermanentError(f"invalid spec: {err}")
    except ApiException as err:
        text = f"API server answered {err.status} {err.reason}: {(err.body or '')[:300]!s}"
        # 4xx other than conflicts/throttling: the manifest itself is refused; retrying won't help.
        if err.status is not None and 400 <= err.status < 500 and err.status not in (404, 409, 429):
            failure = kopf.PermanentError(text)
        else:
            failure = kopf.TemporaryError(text, delay=RETRY_SECONDS)
    except OSError as err:  # connection refused/reset: the API server may come back
        failure = kopf.TemporaryError(f"cannot reach the API server: {err}", delay=RETRY_SECONDS)
    else:
        return
    _record_error(reconciler, body, kind, failure)
    raise failure


def needs_resync(status: Any, **_: Any) -> bool:
    """Waiting on a reference, or the last reconcile failed: retry slowly until it heals."""
    if (status or {}).get("phase") == "Waiting":
        return True
    return any(
        c.get("type") == "Reconciled" and c.get("status") == "False"
        for c in (status or {}).get("conditions") or []
    )


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """Register every handler of the operator on `registry`."""
    for kind, plural in PLURALS.items():
        _register_kind(registry, reconciler, kind, plural)
    managed = {"app.kubernetes.io/managed-by": MANAGED_BY}

    def child_event(**kwargs: Any) -> None:
        obj = dict(kwargs["body"])
        event_type = kwargs["type"]
        meta = obj.get("metadata") or {}
        if event_type == "DELETED":
            reconciler.cache.drop(
                obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")
            )
        else:
            reconciler.cache.put(obj)
        labels = meta.get("labels") or {}
        owner_kind, owner = labels.get(KIND_LABEL), labels.get(OWNER_LABEL)
        if owner_kind in PLURALS and owner:
            try:
                reconciler.reconcile(owner_kind, meta["namespace"], owner)
            except (InvalidSpec, ApiException, OSError) as err:
                # The owner's own handlers retry and record; here a later event or the resync will.
                log.info(
                    "reconcile of %s %s after a child event failed: %s", owner_kind, owner, err
                )

    kopf.on.event("batch", "v1", "jobs", labels=managed, registry=registry)(child_event)
    kopf.on.event("apps", "v1", "deployments", labels=managed, registry=registry)(child_event)
    kopf.on.event(
        "", "v1", "configmaps", labels={**managed, PROGRESS_LABEL: "true"}, registry=registry
    )(child_event)


def _reconcile_dependents(
    reconciler: Reconciler, namespace: str, dependents: list[tuple[str, str]]
) -> None:
    for dep_kind, dep_name in dependents:
        try:
            reconciler.reconcile(dep_kind, namespace, dep_name)
        except (InvalidSpec, ApiException, OSError) as err:
            log.info("reconcile of %s %s failed: %s", dep_kind, dep_name, err)


def _register_kind(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, kind: str, plural: str
) -> None:
    def reconcile_handler(body: Any, **_: Any) -> None:
        run_reconcile(reconciler, kind, body)

    async def watch_event(**kwargs: Any) -> None:
        # In the event loop, not a thread: a resource has several events on its way to
        # ready, and queued behind the reconciles in kopf's thread pool each held its body
        # (thousands at once with 1000 resources). Only a dependent's reconcile needs a thread.
        obj = dict(kwargs["body"])
        event_type = kwargs["type"]
        obj.setdefault("kind", kind)
        meta = obj.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        if event_type == "DELETED":
            reconciler.forget(kind, namespace, name)
        else:
            reconciler.cache.put(obj)
        # Our own status patch may already be cached, so every event wakes the dependents;
        # for those with nothing to do the reconcile changes nothing and costs no request.
        dependents = reconciler.dependents(kind, namespace, name)
        if dependents:
            await asyncio.to_thread(_reconcile_dependents, reconciler, namespace, dependents)

    def resync(body: Any, **_: Any) -> None:
        run_reconcile(reconciler, kind, body)

    group, version = API_GROUP, API_VERSION
    kopf.on.resume(group, version, plural, registry=registry, id="reconcile")(reconcile_handler)
    kopf.on.create(group, version, plural, registry=registry, id="reconcile")(reconcile_handler)
    kopf.on.update(group, version, plural, field="spec", registry=registry, id="reconcile")(
        reconcile_handler
    )
    kopf.on.event(group, version, plural, registry=registry, id="watch")(watch_event)
    kopf.timer(
        group,
        version,
        plural,
        interval=RESYNC_SECONDS,
        initial_delay=RESYNC_SECONDS,
        idle=RESYNC_SECONDS / 2,
        registry=registry,
        id="resync",
        # Only what events alone may not heal gets a timer: one per resource would be
        # thousands of idle tasks in a big cluster.
        when=needs_resync,
    )(resync)
