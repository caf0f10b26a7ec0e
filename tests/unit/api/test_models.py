"""The models: examples load, defaults, wire names, and refusals that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from api_cases import InvalidCase, bases, invalid_cases

from hanlin.api import (
    KINDS,
    AgentService,
    EvalRun,
    ModelDeployment,
    ResourceError,
    TrainingJob,
    TrainingJobSpec,
    load_resource,
    load_resources,
    parse_threshold,
)

EXAMPLES = Path(__file__).parents[3] / "examples"


def _yaml(doc: dict[str, object]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def test_every_kind_has_an_example_and_pipeline_links_all_four() -> None:
    kinds = {r.kind for f in EXAMPLES.glob("*.yaml") for r in load_resources(f)}
    assert kinds == set(KINDS)
    chain = load_resources(EXAMPLES / "pipeline.yaml")
    assert [r.kind for r in chain] == ["TrainingJob", "EvalRun", "ModelDeployment", "AgentService"]
    tj, er, md, agent = chain
    assert isinstance(er, EvalRun) and isinstance(md, ModelDeployment)
    assert isinstance(agent, AgentService)
    assert (
        er.spec.model.training_job_ref and er.spec.model.training_job_ref.name == tj.metadata.name
    )
    assert (
        md.spec.model.training_job_ref and md.spec.model.training_job_ref.name == tj.metadata.name
    )
    assert md.spec.promotion and md.spec.promotion.eval_run_ref.name == er.metadata.name
    assert agent.spec.llm.deployment_ref and agent.spec.llm.deployment_ref.name == md.metadata.name


def test_defaults_and_snake_case_attributes() -> None:
    job = load_resource(_yaml(bases()["TrainingJob"]), TrainingJob)
    hp = job.spec.hyperparameters
    assert hp.max_steps == 100 and hp.learning_rate == 1e-4 and hp.packing is True
    assert job.spec.resources.nodes == 1 and job.spec.checkpoint.keep == 2
    assert job.spec.output.merge_adapter is False and job.spec.suspend is False
    assert job.spec.adapter is not None and job.spec.adapter.alpha == 16.0


def test_wire_form_is_camel_case_and_round_trips() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for resource in load_resources(path):
            wire = resource.to_dict()
            assert "snake_case" not in str(wire)
            assert not any("_" in k for k in _keys(wire["spec"]))
            again = load_resource(_yaml(wire))
            assert again == resource


def _keys(node: object, free: bool = False) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            # model.config and tool config are free-form: their keys are the user's.
            if key != "config":
                out.append(key)
                out += _keys(value)
    elif isinstance(node, list):
        for item in node:
            out += _keys(item)
    return out


def test_snake_case_in_yaml_is_refused_like_the_api_server_would() -> None:
    doc = bases()["TrainingJob"]
    doc["spec"]["hyperparameters"]["learning_rate"] = 0.01
    with pytest.raises(ResourceError, match=r"spec\.hyperparameters\.learning_rate: unknown field"):
        load_resource(_yaml(doc))


def test_python_construction_by_attribute_name() -> None:
    spec = TrainingJobSpec(
        method="pretrain",
        model={"config": {"model_type": "llama"}},  # type: ignore[arg-type]
        data=[{"uri": "file:///data/corpus.txt"}],  # type: ignore[list-item]
        output={"uri": "file:///out"},  # type: ignore[arg-type]
    )
    assert spec.to_dict()["output"] == {"uri": "file:///out", "mergeAdapter": False}


def test_load_from_a_path_a_file_name_and_text(tmp_path: Path) -> None:
    text = _yaml(bases()["EvalRun"])
    path = tmp_path / "er.yaml"
    path.write_text(text)
    assert load_resource(path) == load_resource(str(path)) == load_resource(text)
    assert isinstance(load_resource(path, EvalRun), EvalRun)
    with pytest.raises(ResourceError, match="kind: expected TrainingJob, got EvalRun"):
        load_resource(path, TrainingJob)
    for missing in (tmp_path / "nope.yaml", str(tmp_path / "nope.yaml")):
        with pytest.raises(ResourceError, match="nope.yaml: no such file"):
            load_resource(missing)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("a: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("apiVersion: hanlin.dev/v1alpha1\nkind: Pod\n", "kind: expected one of TrainingJob"),
        ("apiVersion: v1\nkind: EvalRun\n", "apiVersion: expected hanlin.dev/v1alpha1"),
        ("", "expected exactly one resource, found 0"),
    ],
)
def test_documents_that_are_not_resources(text: str, says: str) -> None:
    with pytest.raises(ResourceError, match=says):
        load_resource(text)


def test_one_resource_expected_for_a_spec_file() -> None:
    with pytest.raises(ResourceError, match="expected exactly one resource, found 4"):
        load_resource(EXAMPLES / "pipeline.yaml")


def test_multi_document_errors_name_the_document() -> None:
    good, bad = bases()["AgentService"], bases()["AgentService"]
    bad["spec"]["maxSteps"] = 0
    text = _yaml(good) + "---\n" + _yaml(bad)
    with pytest.raises(ResourceError, match=r"document 2.*spec\.maxSteps: Input should be greater"):
        load_resources(text)


def test_status_is_tolerant_and_typed() -> None:
    doc = bases()["TrainingJob"]
    doc["status"] = {
        "phase": "Running",
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Training",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
        "progress": {"step": 10, "totalSteps": 100, "loss": 2.5, "etaSeconds": 90},
        "someFutureField": 1,
    }
    job = load_resource(_yaml(doc), TrainingJob)
    assert job.status is not None and job.status.progress is not None
    assert job.status.progress.total_steps == 100
    assert job.status.conditions[0].last_transition_time is not None
    assert job.status.conditions[0].last_transition_time.year == 2026


def test_thresholds_parse() -> None:
    assert parse_threshold(">=0.5") == (">=", 0.5)
    assert parse_threshold("< 12") == ("<", 12.0)
    assert parse_threshold("==-1.25") == ("==", -1.25)
    with pytest.raises(ValueError, match="like >=0.5"):
        parse_threshold("0.5")


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c.id)
def test_invalid_resources_are_refused_naming_the_field(case: InvalidCase) -> None:
    with pytest.raises(ResourceError) as info:
        load_resource(_yaml(case.doc))
    assert case.expect in str(info.value), str(info.value)


def test_the_bases_of_the_invalid_table_are_valid() -> None:
    for doc in bases().values():
        load_resource(_yaml(doc))
