"""The operator on the real control plane: children, status from driven children, GC, order."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from hanlin.dev.fixtures import K8s
from hanlin.dev.processes import terminate
from hanlin.telemetry import ConfigMapChannel, ProgressReporter

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "hanlin.dev", "v1alpha1"


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start_operator(k8s: K8s, *extra: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KUBECONFIG": str(k8s.kubeconfig), "HANLIN_IMAGE": "hanlin/runtime:test"}
    cmd = [sys.executable, "-m", "hanlin.cli", "operator", "run", "--metrics-host", "127.0.0.1"]
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*cmd, *extra], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    terminate(proc)


@pytest.fixture(scope="module")
def crds(k8s: K8s) -> None:
    peering = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "operator", "peering-crds"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    k8s.install_crds(ROOT / "crds", extra=peering)


@pytest.fixture(scope="module")
def operator(
    k8s: K8s, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc = start_operator(k8s, "--metrics-port", "18481", "--standalone", log=log)
    yield proc
    stop(proc)
    sys.stderr.write(log.read_text()[-4000:])


@pytest.fixture
def ns(k8s: K8s) -> Iterator[str]:
    core = client.CoreV1Api(k8s.api)
    name = "op-" + uuid.uuid4().hex[:8]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def apply_file(k8s: K8s, ns: str, path: Path) -> None:
    k8s.kubectl("apply", "-n", ns, "-f", str(path))


def get(k8s: K8s, plural: str, ns: str, name: str) -> dict[str, Any]:
    return client.CustomObjectsApi(k8s.api).get_namespaced_custom_object(
        GROUP, VERSION, ns, plural, name
    )


def status_of(k8s: K8s, plural: str, ns: str, name: str) -> dict[str, Any]:
    return get(k8s, plural, ns, name).get("status") or {}


def job(k8s: K8s, ns: str, name: str) -> Any:
    try:
        return client.BatchV1Api(k8s.api).read_namespaced_job(name, ns)
    except client.ApiException:
        return None


def complete_job(k8s: K8s, ns: str, name: str) -> None:
    """What the Job controller writes when every index succeeded."""
    batch = client.BatchV1Api(k8s.api)
    j = batch.read_namespaced_job(name, ns)
    n = j.spec.completions
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    start = j.status.start_time.strftime("%Y-%m-%dT%H:%M:%SZ") if j.status.start_time else now
    body = {
        "status": {
            "startTime": start,
            "completionTime": now,
            "succeeded": n,
            "active": 0,
            "ready": 0,
            "completedIndexes": f"0-{n - 1}" if n > 1 else "0",
            "conditions": [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
    }
    batch.patch_namespaced_job_status(name, ns, body)


def run_job(k8s: K8s, ns: str, name: str, selector: str | None = None, count: int = 1) -> None:
    """What the kubelet writes when the pods start: Running and Ready."""
    core = client.CoreV1Api(k8s.api)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pods = wait_for(
        lambda: (
            (
                pods := core.list_namespaced_pod(
                    ns, label_selector=selector or f"job-name={name}"
                ).items
            )
            and len(pods) >= count
            and pods
        ),
        what="the Job's pods",
    )
    for pod in pods:
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            ns,
            {
                "status": {
                    "phase": "Running",
                    "startTime": now,
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                }
            },
        )


def test_trainingjob_children_progress_status_and_gc(k8s: K8s, operator: Any, ns: str) -> None:
    apply_file(k8s, ns, ROOT / "examples" / "trainingjob-sft-lora.yaml")
    name = "smollm2-sft-lora"
    j = wait_for(lambda: job(k8s, ns, name), what="the Job")
    tj = get(k8s, "trainingjobs", ns, name)
    assert j.metadata.owner_references[0].uid == tj["metadata"]["uid"]
    assert j.metadata.labels["app.kubernetes.io/managed-by"] == "hanlin-operator"
    assert j.spec.completion_mode == "Indexed" and j.spec.completions == 2
    pod = j.spec.template.spec
    c = pod.containers[0]
    assert c.command[:2] == ["torchrun", "--no-python"] and c.command[-3:] == [
        "train",
        "--spec",
        "/etc/hanlin/spec.yaml",
    ]
    env = {e.name: e for e in c.env}
    assert env["MASTER_ADDR"].value == f"{name}-0.{name}.{ns}.svc" and env["NNODES"].value == "2"
    assert "job-completion-index" in env["NODE_RANK"].value_from.field_ref.field_path
    assert (
        c.security_context.read_only_root_filesystem
        and not c.security_context.allow_privilege_escalation
    )
    assert c.security_context.capabilities.drop == ["ALL"] and pod.security_context.run_as_non_root
    assert {v.name for v in pod.volumes} >= {"spec", "tmp", "shm"}
    assert c.resources.requests == {"cpu": "4", "memory": "16Gi"}
    core = client.CoreV1Api(k8s.api)
    svc = core.read_namespaced_service(name, ns)
    assert svc.spec.cluster_ip == "None" and pod.subdomain == name
    spec_cm = core.read_namespaced_config_map(f"{name}-tj-spec", ns)
    assert yaml.safe_load(spec_cm.data["spec.yaml"])["spec"]["method"] == "sft"
    role = client.RbacAuthorizationV1Api(k8s.api).read_namespaced_role(f"{name}-tj-worker", ns)
    assert role.rules[0].resource_names == [f"{name}-tj-progress"] and role.rules[0].verbs == [
        "get",
        "patch",
    ]
    wait_for(
        lambda: status_of(k8s, "trainingjobs", ns, name).get("phase") == "Pending", what="Pending"
    )

    run_job(k8s, ns, name)
    wait_for(
        lambda: status_of(k8s, "trainingjobs", ns, name).get("phase") == "Running", what="Running"
    )
    reporter = ProgressReporter(
        ConfigMapChannel(ns, f"{name}-tj-progress", api_client=k8s.api), key="rank-0"
    )
    reporter.update(step=25, total_steps=100, loss=1.75, tokens_per_second=900.0, eta_seconds=60)
    prog = wait_for(
        lambda: status_of(k8s, "trainingjobs", ns, name).get("progress"), what="progress"
    )
    assert prog["step"] == 25 and prog["percent"] == 25 and prog["loss"] == 1.75
    printed = k8s.kubectl("get", "tj", name, "-n", ns).stdout
    assert "Running" in printed and "25" in printed

    reporter.artifact(uri="s3://artifacts/smollm2-sft-lora", sha256="ab" * 32, kind="adapter")
    complete_job(k8s, ns, name)
    st = wait_for(
        lambda: (s := status_of(k8s, "trainingjobs", ns, name)).get("phase") == "Succeeded" and s,
        what="Succeeded",
    )
    assert st["artifact"]["sha256"] == "ab" * 32 and st["completionTime"] and st["startTime"]
    assert st["observedGeneration"] == 1
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Succeeded"] == "True" and conds["Failed"] == "False"
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    assert {"Running", "Succeeded"} <= {e.reason for e in events}

    client.CustomObjectsApi(k8s.api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, "trainingjobs", name
    )
    wait_for(lambda: job(k8s, ns, name) is None, timeout=60, what="the Job to be garbage-collected")
    wait_for(
        lambda: (
            not core.list_namespaced_config_map(
                ns, label_selector="app.kubernetes.io/managed-by=hanlin-operator"
            ).items
        ),
        timeout=60,
        what="ConfigMaps GC",
    )


def test_pipeline_runs_in_order(k8s: K8s, operator: Any, ns: str) -> None:
    apply_file(k8s, ns, ROOT / "examples" / "pipeline.yaml")
    apps = client.AppsV1Api(k8s.api)

    def deployment(name: str) -> Any:
        try:
            return apps.read_namespaced_deployment(name, ns)
        except client.ApiException:
            return None

    wait_for(lambda: job(k8s, ns, "assistant-sft"), what="training Job")
    er = wait_for(
        lambda: (
            (s := status_of(k8s, "evalruns", ns, "assistant-gate")).get("phase") == "Waiting" and s
        ),
        what="eval waiting",
    )
    cond = next(c for c in er["conditions"] if c["type"] == "ReferencesReady")
    assert cond["reason"] == "WaitingForTrainingJob" and "assistant-sft" in cond["message"]
    md = wait_for(
        lambda: (
            (s := status_of(k8s, "modeldeployments", ns, "assistant")).get("phase") == "Waiting"
            and s
        ),
        what="md waiting",
    )
    assert any(c["reason"].startswith("WaitingFor") for c in md["conditions"])
    assert job(k8s, ns, "assistant-gate") is None and deployment("assistant") is None

    ProgressReporter(
        ConfigMapChannel(ns, "assistant-sft-tj-progress", api_client=k8s.api)
    ).artifact(
        uri="s3://artifacts/assistant-sft",
        kind="adapter",
        merged_uri="s3://artifacts/assistant-sft/merged",
    )
    complete_job(k8s, ns, "assistant-sft")
    shards = wait_for(lambda: job(k8s, ns, "assistant-gate"), what="eval Job after training")
    assert shards.spec.completions == 2
    env = {e.name: e.value for e in shards.spec.template.spec.containers[0].env}
    assert env["HANLIN_MODEL_URI"] == "s3://artifacts/assistant-sft/merged"
    assert shards.spec.template.spec.containers[0].command[-2:] == ["--shard", "$(HANLIN_INDEX)/2"]
    channel = ConfigMapChannel(ns, "assistant-gate-er-progress", api_client=k8s.api)
    for shard in range(2):
        ProgressReporter(channel, key=f"shard-{shard}").update(done=10, total=75)
    prog = wait_for(
        lambda: (
            (p := status_of(k8s, "evalruns", ns, "assistant-gate").get("progress") or {})
            and p.get("done") == 20
            and p
        ),
        what="eval progress of both shards",
    )
    assert prog["done"] == 20 and prog["total"] == 150
    assert deployment("assistant") is None

    complete_job(k8s, ns, "assistant-gate")
    wait_for(lambda: job(k8s, ns, "assistant-gate-merge"), what="merge Job")
    ProgressReporter(channel, key="merge").results(
        [{"benchmark": "mmlu", "metric": "accuracy", "value": 0.31, "samples": 100}],
        report_uri="s3://artifacts/evals/assistant-gate/report.md",
    )
    complete_job(k8s, ns, "assistant-gate-merge")
    er = wait_for(
        lambda: (
            (s := status_of(k8s, "evalruns", ns, "assistant-gate")).get("phase") == "Succeeded"
            and s
        ),
        what="eval Succeeded",
    )
    assert (
        er["passed"] is True
        and er["results"][0]["value"] == 0.31
        and er["reportUri"].endswith("report.md")
    )

    wait_for(lambda: deployment("assistant"), what="Deployment after the gate")
    assert wait_for(
        lambda: status_of(k8s, "agentservices", ns, "assistant-agent").get("phase") == "Waiting",
        what="agent waiting",
    )
    assert deployment("assistant-agent") is None
    run_job(
        k8s, ns, "assistant", "app.kubernetes.io/instance=assistant,hanlin.dev/kind=ModelDeployment"
    )
    md = wait_for(
        lambda: (
            (s := status_of(k8s, "modeldeployments", ns, "assistant")).get("phase") == "Ready" and s
        ),
        what="md Ready",
    )
    assert md["endpoints"]["rest"] == f"http://assistant.{ns}.svc:8000/v1"
    agent = wait_for(lambda: deployment("assistant-agent"), what="agent Deployment after md Ready")
    env = {e.name: e.value for e in agent.spec.template.spec.containers[0].env}
    assert env["HANLIN_LLM_URL"] == f"http://assistant.{ns}.svc:8000/v1"


def test_spec_update_rolls_the_deployment(k8s: K8s, operator: Any, ns: str) -> None:
    apply_file(k8s, ns, ROOT / "examples" / "modeldeployment.yaml")
    apps = client.AppsV1Api(k8s.api)
    dep = wait_for(lambda: _read(apps, "smollm2", ns), what="Deployment")
    hpa = client.AutoscalingV2Api(k8s.api).read_namespaced_horizontal_pod_autoscaler("smollm2", ns)
    assert hpa.spec.max_replicas == 4 and dep.spec.replicas == 1
    svc = client.CoreV1Api(k8s.api).read_namespaced_service("smollm2", ns)
    assert {p.port for p in svc.spec.ports} == {8000, 50051}
    c = dep.spec.template.spec.containers[0]
    assert c.readiness_probe.http_get.path == "/health"
    key = next(e for e in c.env if e.name == "HANLIN_API_KEY")
    assert key.value is None and key.value_from.secret_key_ref.name == "smollm2-api-key"
    before = dep.spec.template.metadata.annotations["hanlin.dev/config-hash"]
    wait_for(
        lambda: status_of(k8s, "modeldeployments", ns, "smollm2").get("observedGeneration") == 1
    )
    client.CustomObjectsApi(k8s.api).patch_namespaced_custom_object(
        GROUP, VERSION, ns, "modeldeployments", "smollm2", {"spec": {"engine": {"maxSeqs": 8}}}
    )
    wait_for(
        lambda: status_of(k8s, "modeldeployments", ns, "smollm2").get("observedGeneration") == 2,
        what="observedGeneration 2",
    )
    after = wait_for(
        lambda: (
            (d := _read(apps, "smollm2", ns))
            and d.metadata.generation > dep.metadata.generation
            and d
        ),
        what="rollout",
    )
    assert after.spec.template.metadata.annotations["hanlin.dev/config-hash"] != before


def _read(apps: Any, name: str, ns: str) -> Any:
    try:
        return apps.read_namespaced_deployment(name, ns)
    except client.ApiException:
        return None


def test_services_eval_against_a_deployment_and_gc(k8s: K8s, operator: Any, ns: str) -> None:
    for example in ("modeldeployment.yaml", "agentservice.yaml", "evalrun.yaml"):
        apply_file(k8s, ns, ROOT / "examples" / example)
    apps = client.AppsV1Api(k8s.api)
    wait_for(lambda: _read(apps, "smollm2", ns), what="model Deployment")
    agent = wait_for(
        lambda: (
            (s := status_of(k8s, "agentservices", ns, "analyst")).get("phase") == "Waiting" and s
        ),
        what="agent waiting for the deployment",
    )
    cond = next(c for c in agent["conditions"] if c["type"] == "ReferencesReady")
    assert cond["reason"] == "WaitingForModelDeployment" and "smollm2" in cond["message"]
    assert job(k8s, ns, "smollm2-eval") is None

    run_job(
        k8s, ns, "smollm2", "app.kubernetes.io/instance=smollm2,hanlin.dev/kind=ModelDeployment"
    )
    wait_for(
        lambda: status_of(k8s, "modeldeployments", ns, "smollm2").get("phase") == "Ready",
        what="md Ready",
    )
    dep = wait_for(lambda: _read(apps, "analyst", ns), what="agent Deployment")
    cm = client.CoreV1Api(k8s.api).read_namespaced_config_map("analyst-as-spec", ns)
    assert "company-tools" in cm.data["tools.json"]
    assert dep.spec.template.spec.containers[0].ports[0].container_port == 8080
    shards = wait_for(lambda: job(k8s, ns, "smollm2-eval"), what="eval Job against the deployment")
    env = {e.name: e.value for e in shards.spec.template.spec.containers[0].env}
    assert env["HANLIN_MODEL_ENDPOINT"] == f"http://smollm2.{ns}.svc:8000/v1"
    run_job(
        k8s, ns, "analyst", "app.kubernetes.io/instance=analyst,hanlin.dev/kind=AgentService", 2
    )
    st = wait_for(
        lambda: (s := status_of(k8s, "agentservices", ns, "analyst")).get("phase") == "Ready" and s,
        what="agent Ready",
    )
    assert st["endpoint"] == f"http://analyst.{ns}.svc:8080" and st["readyReplicas"] == 2

    objects = client.CustomObjectsApi(k8s.api)
    for plural, name in (
        ("agentservices", "analyst"),
        ("evalruns", "smollm2-eval"),
        ("modeldeployments", "smollm2"),
    ):
        objects.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
    core = client.CoreV1Api(k8s.api)
    wait_for(
        lambda: (
            not apps.list_namespaced_deployment(ns).items
            and not core.list_namespaced_service(ns).items
            and not client.BatchV1Api(k8s.api).list_namespaced_job(ns).items
            and not client.AutoscalingV2Api(k8s.api)
            .list_namespaced_horizontal_pod_autoscaler(ns)
            .items
        ),
        timeout=90,
        what="children garbage-collected",
    )
