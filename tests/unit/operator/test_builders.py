"""Builders and the planner: pure spec -> objects, checked field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hanlin.api import AgentService, EvalRun, ModelDeployment, TrainingJob, load_resource
from hanlin.plan import IndexValue, LeaderAddress, Resolved, SecretValue, plan_resource
from hanlin_operator.builders import (
    BuildSettings,
    agent_service,
    eval_run,
    model_deployment,
    training_job,
)
from hanlin_operator.builders.common import HASH_ANNOTATION

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
SETTINGS = BuildSettings(image="hanlin/runtime:9.9", storage_secret="s3-creds")


def load(name: str, kind: type[Any]) -> Any:
    res = load_resource(EXAMPLES / name, kind)
    res.metadata.namespace = "team"
    res.metadata.uid = "uid-1"
    res.metadata.generation = 1
    return res


def by_kind(objs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


def assert_hardened(pod: dict[str, Any]) -> None:
    sc = pod["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/tmp", "/etc/hanlin"} <= mounts
    empty = [v for v in pod["volumes"] if "emptyDir" in v]
    assert {v["name"] for v in empty} >= {"tmp", "home"}
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_every_child_is_owned_labelled_and_hashed() -> None:
    for build, name, kind in (
        (training_job.build, "trainingjob-sft-lora.yaml", TrainingJob),
        (eval_run.build, "evalrun.yaml", EvalRun),
        (model_deployment.build, "modeldeployment.yaml", ModelDeployment),
        (agent_service.build, "agentservice.yaml", AgentService),
    ):
        res = load(name, kind)
        for obj in build(res, SETTINGS):
            meta = obj["metadata"]
            assert meta["ownerReferences"] == [
                {
                    "apiVersion": "hanlin.dev/v1alpha1",
                    "kind": res.kind,
                    "name": res.metadata.name,
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "hanlin-operator"
            assert meta["labels"]["app.kubernetes.io/instance"] == res.metadata.name
            assert meta["namespace"] == "team" and len(meta[("annotations")][HASH_ANNOTATION]) == 16


def test_training_job_is_an_indexed_job_under_torchrun() -> None:
    tj = load("trainingjob-sft-lora.yaml", TrainingJob)
    objs = by_kind(training_job.build(tj, SETTINGS))
    job = objs["Job"][0]["spec"]
    assert job["completionMode"] == "Indexed" and job["completions"] == job["parallelism"] == 2
    assert job["backoffLimit"] == 3 and job["ttlSecondsAfterFinished"] == 86400
    pod = job["template"]["spec"]
    assert_hardened(pod)
    assert pod["subdomain"] == tj.metadata.name and pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "smollm2-sft-lora-tj-worker"
    c = pod["containers"][0]
    assert c["image"] == "hanlin/runtime:9.9"
    assert "--node-rank=$(NODE_RANK)" in c["command"] and c["command"][-4:] == [
        "hanlin",
        "train",
        "--spec",
        "/etc/hanlin/spec.yaml",
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env["MASTER_ADDR"]["value"] == "smollm2-sft-lora-0.smollm2-sft-lora.team.svc"
    assert env["NPROC_PER_NODE"]["value"] == "1" and env["NNODES"]["value"] == "2"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert env["HANLIN_PROGRESS_CONFIGMAP"]["value"] == "smollm2-sft-lora-tj-progress"
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory"}
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "16Gi"}
    svc = objs["Service"][0]["spec"]
    assert svc["clusterIP"] == "None" and svc["publishNotReadyAddresses"]
    role = objs["Role"][0]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["smollm2-sft-lora-tj-progress"],
            "verbs": ["get", "patch"],
        }
    ]
    progress_cm = next(o for o in objs["ConfigMap"] if o["metadata"]["name"].endswith("-progress"))
    assert "data" not in progress_cm  # the workers own its keys


def test_eval_run_shards_and_merge() -> None:
    run = load("evalrun.yaml", EvalRun)
    job = by_kind(
        eval_run.build(run, SETTINGS, Resolved(endpoint_url="http://smollm2.team.svc:8000/v1"))
    )["Job"][0]
    assert job["spec"]["completions"] == 4
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][-2:] == ["--shard", "$(HANLIN_INDEX)/4"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HANLIN_MODEL_ENDPOINT"] == "http://smollm2.team.svc:8000/v1"
    assert env["HANLIN_PROGRESS_KEY"] == "shard-$(HANLIN_INDEX)"
    merge = eval_run.build_merge(run, SETTINGS)
    assert merge["metadata"]["name"] == "smollm2-eval-merge"
    assert merge["spec"]["template"]["spec"]["containers"][0]["command"][:3] == [
        "hanlin",
        "eval",
        "merge",
    ]


def test_model_deployment_service_probes_hpa_and_secret_by_reference() -> None:
    md = load("modeldeployment.yaml", ModelDeployment)
    objs = by_kind(model_deployment.build(md, SETTINGS))
    dep = objs["Deployment"][0]["spec"]
    assert "replicas" not in dep  # the HPA owns it
    pod = dep["template"]["spec"]
    assert_hardened(pod)
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    key = next(e for e in c["env"] if e["name"] == "HANLIN_API_KEY")
    assert key == {
        "name": "HANLIN_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "smollm2-api-key", "key": "apiKey"}},
    }
    assert {p["port"] for p in objs["Service"][0]["spec"]["ports"]} == {8000, 50051}
    hpa = objs["HorizontalPodAutoscaler"][0]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "hanlin_num_requests_running"


def test_a_spec_change_changes_the_pod_template() -> None:
    md = load("modeldeployment.yaml", ModelDeployment)
    before = by_kind(model_deployment.build(md, SETTINGS))["Deployment"][0]
    md.spec.engine.max_seqs = 8
    after = by_kind(model_deployment.build(md, SETTINGS))["Deployment"][0]
    key = "hanlin.dev/config-hash"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != after["spec"]["template"]["metadata"]["annotations"][key]
    )
    assert by_kind(model_deployment.build(md, SETTINGS))["Deployment"][0] == after  # deterministic


def test_agent_service_tools_configmap_and_llm_url() -> None:
    agent = load("agentservice.yaml", AgentService)
    objs = by_kind(
        agent_service.build(
            agent,
            SETTINGS,
            Resolved(endpoint_url="http://smollm2.team.svc:8000/v1", endpoint_model="smollm2"),
        )
    )
    tools = objs["ConfigMap"][0]["data"]["tools.json"]
    assert "http://company-tools.team.svc:8080/" in tools
    c = objs["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (
        env["HANLIN_LLM_URL"] == "http://smollm2.team.svc:8000/v1"
        and env["HANLIN_LLM_MODEL"] == "smollm2"
    )
    assert objs["Deployment"][0]["spec"]["replicas"] == 2
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


@pytest.mark.parametrize(
    "name,kind,role",
    [
        ("trainingjob-qlora.yaml", TrainingJob, "train"),
        ("evalrun.yaml", EvalRun, "eval"),
        ("modeldeployment-tp.yaml", ModelDeployment, "serve"),
        ("agentservice.yaml", AgentService, "agent"),
    ],
)
def test_one_plan_renders_symbolically(name: str, kind: type[Any], role: str) -> None:
    plan = plan_resource(load(name, kind))
    assert (
        plan.role == role
        and plan.command[plan.command.index("--spec") + 1] == "/etc/hanlin/spec.yaml"
    )
    values = plan.env_dict()
    if role == "train":
        assert isinstance(values["NODE_RANK"], IndexValue)
        assert isinstance(values["MASTER_ADDR"], LeaderAddress)
    for v in values.values():
        assert isinstance(v, str | IndexValue | LeaderAddress | SecretValue)


@pytest.mark.parametrize(
    ("name", "kind", "build"),
    [
        ("trainingjob-sft-lora.yaml", TrainingJob, training_job.build),
        ("evalrun.yaml", EvalRun, eval_run.build),
    ],
)
def test_job_pods_serve_metrics_where_the_pod_monitor_scrapes(
    name: str, kind: type[Any], build: Any
) -> None:
    # The chart's PodMonitor scrapes the port named `metrics`; the workloads read
    # HANLIN_METRICS_HOST/PORT and must bind every interface of the pod.
    resource = load(name, kind)
    resolved = Resolved(endpoint_url="http://m.team.svc:8000/v1") if kind is EvalRun else None
    job = by_kind(build(resource, SETTINGS, resolved))["Job"][0]
    c = job["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert ports["metrics"] == int(env["HANLIN_METRICS_PORT"])
    assert env["HANLIN_METRICS_HOST"] == "0.0.0.0"
    podmonitor = (EXAMPLES.parent / "helm" / "hanlin" / "templates" / "podmonitor.yaml").read_text()
    assert "port: metrics" in podmonitor
