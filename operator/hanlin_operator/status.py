"""Status from observed children: pure functions, one per kind.

Each takes the resource, the children as last seen (plain dicts, None when
absent), the progress documents the workers published and the previous
status, and returns the new status (a dict in wire form). A terminal phase
(Succeeded, Failed) is never left, so a restarted operator cannot regress it.
"""

from __future__ import annotations

import json
from typing import Any

from hanlin.api import (
    AgentService,
    EvalRun,
    ModelDeployment,
    TrainingJob,
    parse_threshold,
)
from hanlin.plan import AGENT_PORT, GRPC_PORT, REST_PORT
from hanlin_operator.conditions import TERMINAL_PHASES, job_condition, now, set_condition

_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}


def progress_documents(configmap: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The workers' JSON documents in a progress ConfigMap, by key; unreadable keys skipped."""
    out: dict[str, dict[str, Any]] = {}
    for key, text in ((configmap or {}).get("data") or {}).items():
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out[key] = doc
    return out


def _job_phase(job: dict[str, Any] | None, suspended: bool) -> tuple[str, str]:
    if job is None:
        return "Pending", "creating the Job"
    if (cond := job_condition(job, "Complete")) is not None:
        return "Succeeded", cond.get("message") or "all pods succeeded"
    if (cond := job_condition(job, "Failed")) is not None:
        return "Failed", f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
    if suspended or job_condition(job, "Suspended") is not None:
        return "Suspended", "spec.suspend is true"
    status = job.get("status") or {}
    # `active` counts pods that were created but may still be unscheduled; `ready` ones run.
    if status.get("ready"):
        return "Running", f"{status.get('ready')} pod(s) running"
    return "Pending", "waiting for pods to start"


def _job_conditions(
    previous: list[dict[str, Any]], phase: str, message: str, generation: int | None
) -> list[dict[str, Any]]:
    conds = set_condition(
        previous,
        "Succeeded",
        phase == "Succeeded",
        phase,
        message if phase == "Succeeded" else "",
        generation,
    )
    conds = set_condition(
        conds, "Failed", phase == "Failed", phase, message if phase == "Failed" else "", generation
    )
    return set_condition(conds, "Suspended", phase == "Suspended", phase, "", generation)


def _times(previous: dict[str, Any], job: dict[str, Any] | None, phase: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    job_status = (job or {}).get("status") or {}
    start = previous.get("startTime") or job_status.get("startTime")
    if start is None and phase in ("Running", "Succeeded", "Failed"):
        start = now()
    if start:
        out["startTime"] = start
    if phase in TERMINAL_PHASES:
        out["completionTime"] = (
            previous.get("completionTime") or job_status.get("completionTime") or now()
        )
    return out


def training_status(
    job_resource: TrainingJob,
    job: dict[str, Any] | None,
    progress: dict[str, dict[str, Any]],
    previous: dict[str, Any],
) -> dict[str, Any]:
    """TrainingJob status from its Job and rank-0's progress document."""
    generation = job_resource.metadata.generation
    phase, message = _job_phase(job, job_resource.spec.suspend)
    if previous.get("phase") in TERMINAL_PHASES:
        phase, message = previous["phase"], previous.get("message", "")
    status: dict[str, Any] = {"phase": phase, "message": message, "observedGeneration": generation}
    status["conditions"] = _job_conditions(
        previous.get("conditions") or [], phase, message, generation
    )
    status.update(_times(previous, job, phase))
    lead = progress.get("rank-0") or {}
    prog = dict(previous.get("progress") or {})
    prog.update(lead.get("progress") or {})
    if phase == "Succeeded" and prog.get("totalSteps"):
        prog["step"] = prog["totalSteps"]
    if prog.get("totalSteps"):
        prog["percent"] = min(100, int(100 * int(prog.get("step", 0)) / int(prog["totalSteps"])))
    if prog:
        status["progress"] = prog
    if job is not None:
        status["restarts"] = int((job.get("status") or {}).get("failed") or 0)
    if phase == "Succeeded":
        spec = job_resource.spec
        default = {"uri": spec.output.uri, "kind": "adapter" if spec.adapter else "model"}
        status["artifact"] = lead.get("artifact") or previous.get("artifact") or default
    return status


def judge(results: list[dict[str, Any]], thresholds: dict[str, str] | None) -> tuple[bool, str]:
    """Whether every threshold holds, and a one-line summary of each check."""
    values = {f"{r.get('benchmark')}/{r.get('metric')}": r.get("value") for r in results}
    checks: list[str] = []
    passed = True
    for key, rule in sorted((thresholds or {}).items()):
        op, bound = parse_threshold(rule)
        value = values.get(key)
        ok = isinstance(value, int | float) and _OPS[op](float(value), bound)
        passed = passed and ok
        shown = "missing" if value is None else f"{value:.4g}"
        checks.append(f"{key} {shown} {op}{bound:g} {'ok' if ok else 'FAILED'}")
    return passed, "; ".join(checks) or "no thresholds"


def eval_status(
    run: EvalRun,
    shards: dict[str, Any] | None,
    merge: dict[str, Any] | None,
    progress: dict[str, dict[str, Any]],
    previous: dict[str, Any],
) -> dict[str, Any]:
    """EvalRun status from the shard Job, the merge Job and the shards' progress."""
    generation = run.metadata.generation
    phase, message = _job_phase(shards, False)
    if phase == "Succeeded":
        phase, message = _job_phase(merge, False)
        if phase != "Failed" and phase != "Succeeded":
            phase, message = "Running", "merging shard results"
    status: dict[str, Any] = {"observedGeneration": generation}
    if phase == "Succeeded":
        merged = progress.get("merge") or {}
        results = merged.get("results")
        if not results:
            phase, message = "Failed", "the merge step finished without publishing results"
        else:
            status["results"] = results
            passed, summary = judge(results, run.spec.thresholds)
            status["passed"] = passed
            status["summary"] = summary
            message = summary
            if merged.get("reportUri"):
                status["reportUri"] = merged["reportUri"]
    if previous.get("phase") in TERMINAL_PHASES:
        phase, message = previous["phase"], previous.get("message", "")
        for key in ("results", "passed", "summary", "reportUri"):
            if key in previous:
                status[key] = previous[key]
    status.update({"phase": phase, "message": message})
    status["conditions"] = _job_conditions(
        previous.get("conditions") or [], phase, message, generation
    )
    status.update(_times(previous, shards, phase))
    shard_docs = [d.get("progress") or {} for k, d in progress.items() if k.startswith("shard-")]
    prog = dict(previous.get("progress") or {})
    if shard_docs:
        prog["done"] = sum(int(d.get("done", 0)) for d in shard_docs)
        totals = [d.get("total") for d in shard_docs]
        if len(shard_docs) == run.spec.workers and all(isinstance(t, int) for t in totals):
            prog["total"] = sum(int(t) for t in totals if t is not None)
    if phase == "Succeeded" and prog.get("total"):
        prog["done"] = prog["total"]
    if prog.get("total"):
        prog["percent"] = min(100, int(100 * int(prog.get("done", 0)) / int(prog["total"])))
    if prog:
        status["progress"] = prog
    return status


def _service_phase(
    deployment: dict[str, Any] | None, desired: int, previous_phase: str | None
) -> tuple[str, str, int, int]:
    if deployment is None:
        return "Progressing", "creating the Deployment", 0, 0
    spec_replicas = (deployment.get("spec") or {}).get("replicas")
    if spec_replicas is not None:
        desired = int(spec_replicas)
    st = deployment.get("status") or {}
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    replicas = int(st.get("replicas") or 0)
    rolled = int(st.get("observedGeneration") or 0) >= int(
        deployment["metadata"].get("generation") or 0
    )
    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "Degraded", cond.get("message") or "rollout stalled", replicas, ready
    if rolled and updated >= desired and ready >= desired and replicas <= desired:
        return "Ready", f"{ready}/{desired} replicas ready", replicas, ready
    if previous_phase == "Ready" and rolled and updated >= desired and ready < desired:
        return "Degraded", f"{ready}/{desired} replicas ready", replicas, ready
    return (
        "Progressing",
        f"rolling out: {updated} updated, {ready}/{desired} ready",
        replicas,
        ready,
    )


def _service_conditions(
    previous: list[dict[str, Any]], phase: str, message: str, generation: int | None
) -> list[dict[str, Any]]:
    conds = set_condition(previous, "Ready", phase == "Ready", phase, message, generation)
    conds = set_condition(conds, "Progressing", phase == "Progressing", phase, message, generation)
    return set_condition(conds, "Degraded", phase == "Degraded", phase, message, generation)


def deployment_status(
    md: ModelDeployment, deployment: dict[str, Any] | None, previous: dict[str, Any]
) -> dict[str, Any]:
    """ModelDeployment status from its Deployment."""
    spec = md.spec
    desired = spec.replicas if spec.replicas is not None else 1
    if spec.autoscaling is not None:
        desired = spec.autoscaling.min_replicas
    phase, message, replicas, ready = _service_phase(deployment, desired, previous.get("phase"))
    name, ns = md.metadata.name, md.metadata.namespace
    endpoints: dict[str, str] = {}
    if spec.api.rest:
        endpoints["rest"] = f"http://{name}.{ns}.svc:{REST_PORT}/v1"
    if spec.api.grpc:
        endpoints["grpc"] = f"{name}.{ns}.svc:{GRPC_PORT}"
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": md.metadata.generation,
        "conditions": _service_conditions(
            previous.get("conditions") or [], phase, message, md.metadata.generation
        ),
        "replicas": replicas,
        "readyReplicas": ready,
        "endpoints": endpoints,
        "servedModel": spec.model.name or name,
        # A replica is ready only once its engine loaded every adapter: before that,
        # none is claimed (peers show adapters "running" whose loading failed).
        "adapters": [a.name for a in spec.model.adapters or []] if ready else [],
    }


def agent_status(
    agent: AgentService, deployment: dict[str, Any] | None, previous: dict[str, Any]
) -> dict[str, Any]:
    """AgentService status from its Deployment."""
    phase, message, replicas, ready = _service_phase(
        deployment, agent.spec.replicas, previous.get("phase")
    )
    tools = [
        t.builtin
        or (t.remote.url if t.remote and t.remote.url else "")
        or (t.remote.service_ref.name if t.remote and t.remote.service_ref else "")
        for t in agent.spec.tools or []
    ]
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": agent.metadata.generation,
        "conditions": _service_conditions(
            previous.get("conditions") or [], phase, message, agent.metadata.generation
        ),
        "replicas": replicas,
        "readyReplicas": ready,
        "endpoint": f"http://{agent.metadata.name}.{agent.metadata.namespace}.svc:{AGENT_PORT}",
        "tools": tools,
    }
