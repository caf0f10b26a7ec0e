"""The runner starts what the operator's pods run: same argv and env, local equivalents only.

For every resource of the shipped examples, the operator's builders render a pod
spec and the runner renders local processes from the same plan. After expanding
`$(VAR)` the way Kubernetes does, the two must agree except where a value has a
documented local equivalent (spec mount, leader address, scratch paths, ports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hanlin.api import AgentService, AnyResource, EvalRun, ModelDeployment, TrainingJob
from hanlin.plan import SPEC_PATH, Resolved, plan_eval_merge, plan_resource
from hanlin.run.render import LOCALHOST, LocalPorts, expand, render, service_args
from hanlin.run.resources import load_file
from hanlin_operator.builders import (
    BuildSettings,
    agent_service,
    eval_run,
    model_deployment,
    training_job,
)
from hanlin_operator.builders.common import INDEX_ANNOTATION

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RESOLVED = {
    "TrainingJob": Resolved(),
    "EvalRun": Resolved(model_uri="file:///models/merged"),
    "ModelDeployment": Resolved(model_uri="file:///models/merged"),
    "AgentService": Resolved(endpoint_url="http://127.0.0.1:1234/v1", endpoint_model="m"),
}


def _resources() -> list[AnyResource]:
    out = []
    for name in ("quickstart.yaml", "pipeline.yaml"):
        for r in load_file(EXAMPLES / name):
            r.metadata.namespace = "team"
            r.metadata.uid = "uid-1"
            out.append(r)
    return out


def _container(resource: AnyResource, resolved: Resolved) -> dict[str, Any]:
    settings = BuildSettings()
    if isinstance(resource, TrainingJob):
        children = training_job.build(resource, settings, resolved)
    elif isinstance(resource, EvalRun):
        children = eval_run.build(resource, settings, resolved)
    elif isinstance(resource, ModelDeployment):
        children = model_deployment.build(resource, settings, resolved)
    else:
        assert isinstance(resource, AgentService)
        children = agent_service.build(resource, settings, resolved)
    workload = next(c for c in children if c["kind"] in ("Job", "Deployment"))
    container: dict[str, Any] = workload["spec"]["template"]["spec"]["containers"][0]
    return container


def _pod_env(container: dict[str, Any], index: int) -> dict[str, str]:
    """The env a replica's container sees (fieldRefs resolved as the kubelet would)."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        ref = var["valueFrom"].get("fieldRef", {}).get("fieldPath", "")
        if INDEX_ANNOTATION in ref:
            env[var["name"]] = str(index)
    return env


@pytest.mark.parametrize("resource", _resources(), ids=lambda r: f"{r.kind}-{r.metadata.name}")
def test_local_process_equals_container(resource: AnyResource, tmp_path: Path) -> None:
    resolved = RESOLVED[resource.kind]
    container = _container(resource, resolved)
    plan = plan_resource(resource, resolved)
    ports = LocalPorts()
    spec_file = tmp_path / "spec.yaml"
    extra = service_args(plan, ports) if plan.shape == "service" else ()
    procs = render(plan, spec_file, tmp_path, ports, {}, extra)
    assert len(procs) == (plan.replicas if plan.shape == "job" else 1)
    leader_vars = {"MASTER_ADDR"}
    for proc in procs:
        pod_env = _pod_env(container, proc.index)
        pod_argv = [expand(a, pod_env) for a in container["command"]]
        # The command is the container's, with the spec mount as a local file and the
        # local bind flags (services) appended.
        local_prefix = list(proc.argv[: len(pod_argv)])
        want = [str(spec_file) if a == SPEC_PATH else a for a in pod_argv]
        for i, (mine, theirs) in enumerate(zip(local_prefix, want, strict=True)):
            if "--master-addr=" in theirs:
                assert mine == f"--master-addr={LOCALHOST}"
            elif "--master-port=" in theirs:
                assert mine == f"--master-port={ports.local(29500)}"
            else:
                assert mine == theirs, f"argv[{i}]"
        assert proc.argv[len(pod_argv) :] == extra
    # Replicas of one workload never share a per-replica port (e.g. two eval shards' /metrics).
    for p in (p for p in plan.ports if p.per_replica):
        assert len({ports.local(p.port, proc.index) for proc in procs}) == len(procs)
        # The environment: the same names (the progress ConfigMap pair is cluster-only,
        # TMPDIR points temp files at the local /tmp scratch), the same values
        # except scratch paths, the leader, ports and the bind address (loopback here).
        cluster_only = {"HANLIN_PROGRESS_CONFIGMAP", "HANLIN_PROGRESS_NAMESPACE"}
        assert set(proc.env) - {"TMPDIR"} == set(pod_env) - cluster_only
        scratch = {s.path: str(tmp_path / "scratch" / s.name) for s in plan.scratch}
        for name, value in pod_env.items():
            if name in cluster_only:
                continue
            local = proc.env[name]
            per_replica = {str(p.port) for p in plan.ports if p.per_replica}
            if name in leader_vars or value == "0.0.0.0":
                assert local == LOCALHOST
            elif value in per_replica:
                assert local == str(ports.local(int(value), proc.index))
            elif value in {str(p.port) for p in plan.ports}:
                assert local == str(ports.local(int(value)))
            elif any(value.startswith(p) for p in scratch):
                root = next(p for p in scratch if value.startswith(p))
                assert local == scratch[root] + value[len(root) :]
            else:
                assert local == value, name


def test_eval_merge_step_matches(tmp_path: Path) -> None:
    run = next(r for r in _resources() if isinstance(r, EvalRun))
    job = eval_run.build_merge(run, BuildSettings())
    container = job["spec"]["template"]["spec"]["containers"][0]
    (proc,) = render(plan_eval_merge(run), tmp_path / "s.yaml", tmp_path, LocalPorts(), {})
    want = [str(tmp_path / "s.yaml") if a == SPEC_PATH else a for a in container["command"]]
    assert list(proc.argv) == want


def test_resolved_model_reaches_eval_through_the_plan_env(tmp_path: Path) -> None:
    from typer.main import get_command

    from hanlin.eval.cli import app as eval_app

    run = next(r for r in _resources() if isinstance(r, EvalRun))
    resolved = Resolved(model_uri="file:///m/merged")
    (proc,) = render(plan_resource(run, resolved), tmp_path / "s.yaml", tmp_path, LocalPorts(), {})
    assert proc.env["HANLIN_MODEL_URI"] == "file:///m/merged"
    # The same argv in a pod and here: `hanlin eval` reads the variable the plan sets.
    params = {p.name: p for p in get_command(eval_app).params}
    assert params["model_uri"].envvar == "HANLIN_MODEL_URI"
