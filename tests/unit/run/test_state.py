"""Reference resolution goes through the operator's reconciler, with local URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hanlin.api import AgentService, EvalRun, ModelDeployment, TrainingJob
from hanlin.run.resources import load_file
from hanlin.run.state import GateFailed, LocalState

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _chain() -> tuple[TrainingJob, EvalRun, ModelDeployment, AgentService]:
    tj, er, md, agent = load_file(EXAMPLES / "quickstart.yaml")
    assert isinstance(tj, TrainingJob) and isinstance(er, EvalRun)
    assert isinstance(md, ModelDeployment) and isinstance(agent, AgentService)
    return tj, er, md, agent


def test_merged_model_feeds_eval_and_serving() -> None:
    tj, er, md, agent = _chain()
    state = LocalState()
    artifact = {"uri": "file:///o/adapter", "kind": "adapter", "mergedUri": "file:///o/merged"}
    state.set_status(tj, {"phase": "Succeeded", "artifact": artifact})
    assert state.resolve(er).model_uri == "file:///o/merged"
    state.set_status(er, {"phase": "Succeeded", "passed": True})
    resolved = state.resolve(md)
    assert resolved.model_uri == "file:///o/merged" and resolved.adapters == {}
    state.urls[md.metadata.name] = "http://127.0.0.1:9999/v1"
    state.set_status(md, {"phase": "Ready", "servedModel": "quickstart"})
    to_llm = state.resolve(agent)
    assert to_llm.endpoint_url == "http://127.0.0.1:9999/v1"
    assert to_llm.endpoint_model == "quickstart"


def test_adapter_without_merge_resolves_to_base_plus_adapter() -> None:
    tj, er, _, _ = _chain()
    state = LocalState()
    state.set_status(
        tj, {"phase": "Succeeded", "artifact": {"uri": "file:///o/adapter", "kind": "adapter"}}
    )
    resolved = state.resolve(er)
    assert resolved.model_uri == str(tj.spec.model.uri)
    assert resolved.adapters == {"trained": "file:///o/adapter"}


def test_failed_gate_stops_the_deployment() -> None:
    tj, er, md, _ = _chain()
    state = LocalState()
    state.set_status(
        tj, {"phase": "Succeeded", "artifact": {"uri": "file:///o/model", "kind": "model"}}
    )
    state.set_status(er, {"phase": "Succeeded", "passed": False, "summary": "mmlu/accuracy 0.1"})
    with pytest.raises(GateFailed, match="mmlu/accuracy 0.1"):
        state.resolve(md)
