"""The level-triggered reconcile: resource + cluster state -> children and status.

One entry point, `Reconciler.reconcile(kind, namespace, name)`, called for the
resource's own events, its children's events, its references' changes and a
periodic resync. It is safe to run at any point and any number of times:
children have fixed names and are applied (never blindly created); a child
whose last-seen copy already carries the desired hash is not sent again; the
status is patched only when it changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hanlin.api import (
    GROUP_VERSION,
    AgentService,
    AnyResource,
    EvalRun,
    ModelDeployment,
    ResourceError,
    TrainingJob,
    validate_resource,
)
from hanlin.plan import REST_PORT, Resolved
from hanlin_operator.builders import agent_service, eval_run, model_deployment, training_job
from hanlin_operator.builders.common import (
    HASH_ANNOTATION,
    BuildSettings,
    progress_configmap_name,
)
from hanlin_operator.cache import Cache
from hanlin_operator.conditions import set_condition
from hanlin_operator.kube import Kube
from hanlin_operator.reports import read_eval_report
from hanlin_operator.status import (
    agent_status,
    deployment_status,
    eval_status,
    progress_documents,
    training_status,
)

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # (kind, namespace, name)


class Waiting(Exception):
    """A reference is not ready yet; the resource waits (no retry loop: events wake it)."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.name, self.message = kind, name, message


class GateFailed(Exception):
    """The referenced EvalRun finished without passing: the model is not promoted."""


def references(resource: AnyResource) -> list[tuple[str, str]]:
    """The (kind, name) pairs this resource waits for."""
    out: list[tuple[str, str]] = []
    if isinstance(resource, EvalRun):
        if resource.spec.model.training_job_ref:
            out.append(("TrainingJob", resource.spec.model.training_job_ref.name))
        if resource.spec.model.deployment_ref:
            out.append(("ModelDeployment", resource.spec.model.deployment_ref.name))
    elif isinstance(resource, ModelDeployment):
        if resource.spec.model.training_job_ref:
            out.append(("TrainingJob", resource.spec.model.training_job_ref.name))
        for adapter in resource.spec.model.adapters or []:
            if adapter.training_job_ref:
                out.append(("TrainingJob", adapter.training_job_ref.name))
        if resource.spec.promotion:
            out.append(("EvalRun", resource.spec.promotion.eval_run_ref.name))
    elif isinstance(resource, AgentService) and resource.spec.llm.deployment_ref:
        out.append(("ModelDeployment", resource.spec.llm.deployment_ref.name))
    return out


@dataclass
class Reconciler:
    """Owns the cache, per-resource locks and the reconcile of the four kinds."""

    kube: Kube
    settings: BuildSettings
    cache: Cache = field(default_factory=Cache)
    on_result: Callable[[str, str, float], None] = lambda kind, result, seconds: None
    _locks: dict[Key, threading.Lock] = field(default_factory=dict)
    _applied: dict[Key, tuple[int | None, Resolved, dict[Key, str]]] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)
    _generations: dict[Key, int | None] = field(default_factory=dict)

    def _lock(self, key: Key) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop everything remembered about a deleted resource."""
        key = (kind, namespace, name)
        self.cache.drop(*key)
        self._applied.pop(key, None)
        self._generations.pop(key, None)
        with self._locks_guard:
            self._locks.pop(key, None)

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """From the cache, or from the API server on a miss (so a restart sees the truth)."""
        obj = self.cache.get(kind, namespace, name)
        if obj is None:
            obj = self.kube.get(GROUP_VERSION, kind, namespace, name)
            if obj is not None:
                self.cache.put(obj)
        return obj

    # -- references --------------------------------------------------------------

    def _ref(self, kind: str, namespace: str, name: str, ready: str) -> dict[str, Any]:
        obj = self.lookup(kind, namespace, name)
        if obj is None:
            raise Waiting(kind, name, f"{kind} {name!r} does not exist yet")
        phase = (obj.get("status") or {}).get("phase")
        if kind == "EvalRun" and phase in ("Succeeded", "Failed"):
            return obj
        if phase == "Failed":
            raise GateFailed(f"{kind} {name!r} failed")
        if phase != ready:
            raise Waiting(kind, name, f"{kind} {name!r} is {phase or 'new'}, waiting until {ready}")
        return obj

    def _trained_model(self, namespace: str, name: str) -> tuple[str, str | None]:
        """(model URI to load, adapter URI) of a finished TrainingJob."""
        tj = self._ref("TrainingJob", namespace, name, "Succeeded")
        artifact = (tj.get("status") or {}).get("artifact") or {}
        spec = tj.get("spec") or {}
        if artifact.get("kind") == "adapter" and not artifact.get("mergedUri"):
            return str((spec.get("model") or {}).get("uri") or ""), artifact.get("uri")
        return str(artifact.get("mergedUri") or artifact.get("uri") or ""), None

    def _deployment_url(self, namespace: str, name: str) -> tuple[str, str]:
        md = self._ref("ModelDeployment", namespace, name, "Ready")
        served = (md.get("status") or {}).get("servedModel") or name
        return f"http://{name}.{namespace}.svc:{REST_PORT}/v1", str(served)

    def resolve(self, resource: AnyResource) -> Resolved:
        """What the references point at; raises Waiting or GateFailed."""
        ns = resource.metadata.namespace or ""
        if isinstance(resource, EvalRun):
            model = resource.spec.model
            if model.training_job_ref:
                uri, adapter = self._trained_model(ns, model.training_job_ref.name)
                return Resolved(model_uri=uri, adapters={"trained": adapter} if adapter else {})
            if model.deployment_ref:
                url, served = self._deployment_url(ns, model.deployment_ref.name)
                return Resolved(endpoint_url=url, endpoint_model=served)
        elif isinstance(resource, ModelDeployment):
            spec = resource.spec
            if spec.promotion:
                ref = spec.promotion.eval_run_ref.name
                er = self._ref("EvalRun", ns, ref, "Succeeded")
                er_status = er.get("status") or {}
                if er_status.get("phase") != "Succeeded" or er_status.get("passed") is not True:
                    raise GateFailed(
                        f"EvalRun {ref!r} did not pass: {er_status.get('summary') or er_status.get('message') or er_status.get('phase')}"
                    )
            resolved_model: str | None = None
            adapters: dict[str, str] = {}
            if spec.model.training_job_ref:
                resolved_model, adapter = self._trained_model(ns, spec.model.training_job_ref.name)
                if adapter:
                    adapters[spec.model.training_job_ref.name] = adapter
            for a in spec.model.adapters or []:
                if a.training_job_ref:
                    uri, adapter = self._trained_model(ns, a.training_job_ref.name)
                    adapters[a.name] = adapter or uri
            return Resolved(model_uri=resolved_model, adapters=adapters)
        elif isinstance(resource, AgentService) and resource.spec.llm.deployment_ref:
            url, served = self._deployment_url(ns, resource.spec.llm.deployment_ref.name)
            return Resolved(endpoint_url=url, endpoint_model=served)
        return Resolved()

    # -- the reconcile -------------------------------------------------------------

    def reconcile(self, kind: str, namespace: str, name: str) -> str:
        """Bring one resource's children and status in line with its spec (idempotent).

        Returns the result: ok, waiting, gated or gone (errors raise).
        """
        key = (kind, namespace, name)
        with self._lock(key):
            start = time.perf_counter()
            result = "error"
            try:
                current = self.lookup(kind, namespace, name)
                if current is None or (current.get("metadata") or {}).get("deletionTimestamp"):
                    result = "gone"
                    return result
                # Recorded before the work: an event of a newer generation arriving meanwhile
                # sees the difference and queues another reconcile.
                self._generations[key] = (current.get("metadata") or {}).get("generation")
                result = self._reconcile(current)
                return result
            finally:
                self.on_result(kind, result, time.perf_counter() - start)

    def reconciled_generation(self, key: Key) -> int | None:
        """The generation the last reconcile of `key` started from (None: never)."""
        return self._generations.get(key)

    def _reconcile(self, body: dict[str, Any]) -> str:
        resource = typed_resource(body)
        meta = body["metadata"]
        previous = dict(body.get("status") or {})
        terminal = previous.get("phase") in ("Succeeded", "Failed")
        try:
            resolved = self.resolve(resource) if not terminal else Resolved()
        except Waiting as waiting:
            self._write_waiting(body, resource, previous, waiting)
            return "waiting"
        except GateFailed as failed:
            self._write_failed(
                body,
                resource,
                previous,
                "EvalGateFailed" if isinstance(resource, ModelDeployment) else "ReferenceFailed",
                str(failed),
            )
            return "gated"
        if not terminal and not self._unchanged(body, resolved):
            applied = {}
            for child in self.desired(resource, resolved):
                self.ensure(child)
                cmeta = child["metadata"]
                applied[(child["kind"], cmeta["namespace"], cmeta["name"])] = cmeta["annotations"][
                    HASH_ANNOTATION
                ]
            self._applied[(body["kind"], meta["namespace"], meta["name"])] = (
                meta.get("generation"),
                resolved,
                applied,
            )
        new_status = self.observe(resource, previous)
        gen = resource.metadata.generation
        conds = set_condition(
            new_status.get("conditions") or [], "ReferencesReady", True, "Resolved", "", gen
        )
        # A finished resource keeps the verdict of its last real reconcile (e.g. PermanentError).
        new_status["conditions"] = (
            conds if terminal else set_condition(conds, "Reconciled", True, "Applied", "", gen)
        )
        self.write_status(body, previous, new_status)
        return "ok"

    def _unchanged(self, body: dict[str, Any], resolved: Resolved) -> bool:
        """True when the last apply was for this generation and every child is still as applied.

        Saves rebuilding the manifests on each child event; a deleted or edited child
        (its event updates the cache) makes this False and the reconcile re-applies.
        """
        meta = body["metadata"]
        last = self._applied.get((body["kind"], meta["namespace"], meta["name"]))
        if last is None or last[0] != meta.get("generation") or last[1] != resolved:
            return False
        if body["kind"] == "EvalRun":
            return False  # the merge Job appears part-way through
        for (kind, ns, name), digest in last[2].items():
            seen = self.cache.get(kind, ns, name)
            annotations = ((seen or {}).get("metadata") or {}).get("annotations") or {}
            if annotations.get(HASH_ANNOTATION) != digest:
                return False
        return True

    def desired(self, resource: AnyResource, resolved: Resolved) -> list[dict[str, Any]]:
        """The children the resource should have now."""
        if isinstance(resource, TrainingJob):
            return training_job.build(resource, self.settings, resolved)
        if isinstance(resource, EvalRun):
            children = eval_run.build(resource, self.settings, resolved)
            shards = self.cache.get(
                "Job", resource.metadata.namespace or "", resource.metadata.name
            )
            if shards is not None and _job_done(shards):
                children.append(eval_run.build_merge(resource, self.settings))
            return children
        if isinstance(resource, ModelDeployment):
            children = model_deployment.build(resource, self.settings, resolved)
            if resource.spec.autoscaling is None:
                ns = resource.metadata.namespace or ""
                if (
                    self.cache.get("HorizontalPodAutoscaler", ns, resource.metadata.name)
                    is not None
                ):
                    self.kube.delete(
                        "autoscaling/v2", "HorizontalPodAutoscaler", ns, resource.metadata.name
                    )
                    self.cache.drop("HorizontalPodAutoscaler", ns, resource.metadata.name)
            return children
        return agent_service.build(resource, self.settings, resolved)

    def ensure(self, child: dict[str, Any]) -> None:
        """Apply one child unless its last-seen copy already has the desired hash."""
        meta = child["metadata"]
        seen = self.cache.get(child["kind"], meta["namespace"], meta["name"])
        want = meta["annotations"][HASH_ANNOTATION]
        if (
            seen is not None
            and ((seen.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION) == want
        ):
            return
        result = self.kube.ensure_job(child) if child["kind"] == "Job" else self.kube.apply(child)
        result.setdefault("kind", child["kind"])
        result.setdefault("apiVersion", child["apiVersion"])
        self.cache.put(result)

    def observe(self, resource: AnyResource, previous: dict[str, Any]) -> dict[str, Any]:
        """The status the children say the resource has."""
        ns, name = resource.metadata.namespace or "", resource.metadata.name
        if isinstance(resource, TrainingJob | EvalRun):
            cm = self.cache.get("ConfigMap", ns, progress_configmap_name(resource))
            docs = progress_documents(cm)
            job = self.cache.get("Job", ns, name)
            if isinstance(resource, TrainingJob):
                return training_status(resource, job, docs, previous)
            merge = self.cache.get("Job", ns, f"{name}-merge")
            published = (docs.get("merge") or {}).get("results")
            if merge is not None and _job_done(merge) and not published and resource.spec.output:
                docs["merge"] = read_eval_report(resource.spec.output.uri)
            return eval_status(resource, job, merge, docs, previous)
        deployment = self.cache.get("Deployment", ns, name)
        if isinstance(resource, ModelDeployment):
            return deployment_status(resource, deployment, previous)
        return agent_status(resource, deployment, previous)

    def write_status(
        self,
        body: dict[str, Any],
        previous: dict[str, Any],
        new: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        """Patch status when it changed; post an Event when the phase changed."""
        if all(previous.get(k) == v for k, v in new.items()):
            return
        meta = body["metadata"]
        result = self.kube.patch_status(body["kind"], meta["namespace"], meta["name"], new)
        if result:
            result.setdefault("kind", body["kind"])
            self.cache.put(result)
        old_phase, phase = previous.get("phase"), new.get("phase")
        # A new resource entering Pending is not news; every later transition is.
        if phase != old_phase and not (old_phase is None and phase == "Pending"):
            warning = phase in ("Failed", "Degraded")
            self.kube.event(
                body, reason or str(phase), str(new.get("message") or ""), warning=warning
            )

    def _write_waiting(
        self,
        body: dict[str, Any],
        resource: AnyResource,
        previous: dict[str, Any],
        waiting: Waiting,
    ) -> None:
        gen = resource.metadata.generation
        reason = f"WaitingFor{waiting.kind}"
        conds = set_condition(
            previous.get("conditions") or [], "ReferencesReady", False, reason, waiting.message, gen
        )
        conds = set_condition(conds, "Reconciled", True, "Applied", "", gen)
        phase = "Pending" if isinstance(resource, TrainingJob) else "Waiting"
        if isinstance(resource, ModelDeployment | AgentService):
            conds = set_condition(conds, "Ready", False, reason, waiting.message, gen)
        status = {
            "phase": phase,
            "message": waiting.message,
            "observedGeneration": gen,
            "conditions": conds,
        }
        if (
            previous.get("conditions")
            and any(
                c.get("type") == "ReferencesReady"
                and c.get("reason") == reason
                and c.get("message") == waiting.message
                for c in previous["conditions"]
            )
            and previous.get("phase") == phase
        ):
            return
        self.write_status(body, previous, status, reason=reason)

    def _write_failed(
        self,
        body: dict[str, Any],
        resource: AnyResource,
        previous: dict[str, Any],
        reason: str,
        message: str,
    ) -> None:
        gen = resource.metadata.generation
        conds = set_condition(
            previous.get("conditions") or [], "ReferencesReady", False, reason, message, gen
        )
        if isinstance(resource, ModelDeployment | AgentService):
            conds = set_condition(conds, "Ready", False, reason, message, gen)
        else:
            conds = set_condition(conds, "Failed", True, reason, message, gen)
        self.write_status(
            body,
            previous,
            {"phase": "Failed", "message": message, "observedGeneration": gen, "conditions": conds},
        )

    def dependents(self, kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
        """(kind, name) of resources in the namespace that reference this one."""
        out = []
        for dep_kind in ("EvalRun", "ModelDeployment", "AgentService"):
            for obj in self.cache.of_kind(dep_kind):
                meta = obj.get("metadata") or {}
                if meta.get("namespace") != namespace:
                    continue
                try:
                    res = validate_resource({k: v for k, v in obj.items() if k != "status"})
                except ResourceError:
                    continue
                if (kind, name) in references(res):
                    out.append((dep_kind, meta["name"]))
        return out


class InvalidSpec(Exception):
    """The resource does not validate: nothing the operator does will fix it."""


def typed_resource(body: dict[str, Any]) -> AnyResource:
    """The typed resource of a watched object, with the server fields builders need."""
    try:
        resource = validate_resource({k: v for k, v in body.items() if k != "status"})
    except ResourceError as err:
        raise InvalidSpec(str(err)) from None
    meta = body["metadata"]
    resource.metadata.uid = meta.get("uid")
    resource.metadata.namespace = meta.get("namespace")
    resource.metadata.generation = meta.get("generation")
    return resource


def _job_done(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )
