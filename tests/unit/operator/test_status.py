"""Status computation: phases from children, progress folding, the eval judgement, no regression."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hanlin.api import EvalRun, ModelDeployment, TrainingJob, load_resource
from hanlin_operator.conditions import set_condition
from hanlin_operator.status import (
    deployment_status,
    eval_status,
    judge,
    progress_documents,
    training_status,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def load(name: str, kind: type[Any]) -> Any:
    res = load_resource(EXAMPLES / name, kind)
    res.metadata.namespace, res.metadata.generation = "team", 3
    return res


def job(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j", "generation": 1}, "status": status}


def done(kind: str = "Complete") -> dict[str, Any]:
    return job(conditions=[{"type": kind, "status": "True", "message": "m"}], failed=1)


def test_training_phases_follow_the_job() -> None:
    tj = load("trainingjob-sft-lora.yaml", TrainingJob)
    assert training_status(tj, None, {}, {})["phase"] == "Pending"
    assert training_status(tj, job(active=2), {}, {})["phase"] == "Pending"
    running = training_status(tj, job(active=2, ready=2), {}, {})
    assert running["phase"] == "Running" and running["observedGeneration"] == 3
    succeeded = training_status(tj, done(), {}, running)
    assert succeeded["phase"] == "Succeeded" and succeeded["completionTime"]
    assert succeeded["artifact"] == {"uri": "s3://artifacts/smollm2-sft-lora", "kind": "adapter"}
    assert succeeded["restarts"] == 1
    failed = training_status(tj, done("Failed"), {}, running)
    assert failed["phase"] == "Failed"
    # A terminal phase is never left, whatever the children say later.
    assert training_status(tj, None, {}, succeeded)["phase"] == "Succeeded"


def test_training_progress_from_rank_zero() -> None:
    tj = load("trainingjob-sft-lora.yaml", TrainingJob)
    cm = {
        "data": {
            "rank-0": json.dumps({"progress": {"step": 30, "totalSteps": 120, "loss": 1.5}}),
            "junk": "{",
        }
    }
    docs = progress_documents(cm)
    assert list(docs) == ["rank-0"]
    st = training_status(tj, job(ready=1), docs, {})
    assert st["progress"] == {"step": 30, "totalSteps": 120, "loss": 1.5, "percent": 25}


def test_eval_status_merges_shards_and_judges() -> None:
    run = load("evalrun.yaml", EvalRun)
    docs = {f"shard-{i}": {"progress": {"done": 5, "total": 10}} for i in range(4)}
    st = eval_status(run, job(ready=4), None, docs, {})
    assert st["phase"] == "Running" and st["progress"] == {"done": 20, "total": 40, "percent": 50}
    merging = eval_status(run, done(), None, docs, st)
    assert merging["phase"] == "Running" and merging["message"] == "merging shard results"
    results = [
        {"benchmark": "mmlu", "metric": "accuracy", "value": 0.3, "samples": 100},
        {"benchmark": "arithmetic", "metric": "exactMatch", "value": 0.01, "samples": 200},
        {"benchmark": "support-faq", "metric": "accuracy", "value": 0.9, "samples": 20},
    ]
    docs["merge"] = {"results": results, "reportUri": "s3://r/report.md"}
    final = eval_status(run, done(), done(), docs, merging)
    assert final["phase"] == "Succeeded" and final["passed"] is False
    assert "arithmetic/exactMatch 0.01 >=0.05 FAILED" in final["summary"]
    assert final["reportUri"] == "s3://r/report.md" and final["progress"]["done"] == 40
    no_results = eval_status(run, done(), done(), {}, merging)
    assert no_results["phase"] == "Failed"


def test_judge_operators_and_missing_metrics() -> None:
    r = [{"benchmark": "b", "metric": "perplexity", "value": 12.0}]
    assert judge(r, {"b/perplexity": "<20"})[0] is True
    assert judge(r, {"b/perplexity": "<=11.5"})[0] is False
    assert judge(r, {"c/accuracy": ">=0"}) == (False, "c/accuracy missing >=0 FAILED")
    assert judge(r, None) == (True, "no thresholds")


def test_deployment_phases() -> None:
    md = load("modeldeployment.yaml", ModelDeployment)
    dep = {"metadata": {"generation": 2}, "spec": {}, "status": {"observedGeneration": 1}}
    progressing = deployment_status(md, dep, {})
    assert progressing["phase"] == "Progressing" and progressing["adapters"] == []
    dep["status"] = {
        "observedGeneration": 2,
        "replicas": 1,
        "updatedReplicas": 1,
        "readyReplicas": 1,
    }
    ready = deployment_status(md, dep, {})
    assert ready["phase"] == "Ready" and ready["endpoints"] == {
        "rest": "http://smollm2.team.svc:8000/v1",
        "grpc": "smollm2.team.svc:50051",
    }
    assert ready["adapters"] == ["support", "sql"]  # claimed only once a replica is serving
    dep["status"]["readyReplicas"] = 0
    degraded = deployment_status(md, dep, ready)
    assert degraded["phase"] == "Degraded" and degraded["adapters"] == []


def test_condition_transition_time_moves_only_on_change() -> None:
    first = set_condition([], "Ready", False, "A", "", 1)
    same = set_condition(first, "Ready", False, "B", "msg", 2)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert same[0]["reason"] == "B" and same[0]["observedGeneration"] == 2


def test_eval_report_read_from_the_output_location(tmp_path: Path) -> None:
    from hanlin_operator.reports import read_eval_report

    uri = f"file://{tmp_path}/run"
    assert read_eval_report(uri) == {}
    (tmp_path / "run").mkdir()
    doc = {
        "results": [
            {"benchmark": "mmlu", "metric": "accuracy", "value": 0.4, "samples": 5, "stderr": None}
        ],
        "passed": True,
    }
    (tmp_path / "run" / "results.json").write_text(json.dumps(doc))
    report = read_eval_report(uri)
    assert report["results"] == [
        {"benchmark": "mmlu", "metric": "accuracy", "value": 0.4, "samples": 5}
    ]
    assert report["reportUri"] == f"{uri}/summary.md"
