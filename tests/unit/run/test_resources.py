"""Loading a file for the local runner: relative URIs, validation errors, reference order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hanlin.run.resources import RunError, load_file, order, provision

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_quickstart_orders_the_chain_and_seeds_the_data(tmp_path: Path) -> None:
    resources = order(load_file(EXAMPLES / "quickstart.yaml"))
    assert [r.kind for r in resources] == [
        "TrainingJob",
        "EvalRun",
        "ModelDeployment",
        "AgentService",
    ]
    assert resources[0].spec.data[0].uri == "pvc://data/instructions.jsonl"  # type: ignore[union-attr]
    linked = provision(resources, tmp_path, EXAMPLES)
    seeded = tmp_path / "data" / "instructions.jsonl"
    assert (
        seeded in linked
        and seeded.read_text() == (EXAMPLES / "data" / "instructions.jsonl").read_text()
    )
    assert (tmp_path / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    # Outputs are not seeded, and a second call links nothing new.
    assert not (tmp_path / "artifacts").exists()
    assert provision(resources, tmp_path, EXAMPLES) == []


def test_a_relative_uri_is_a_local_path_beside_the_file(tmp_path: Path) -> None:
    text = (EXAMPLES / "quickstart.yaml").read_text()
    (tmp_path / "q.yaml").write_text(text.replace("pvc://data/instructions.jsonl", "rows.jsonl"))
    resources = load_file(tmp_path / "q.yaml")
    assert resources[0].spec.data[0].uri == (tmp_path / "rows.jsonl").as_uri()  # type: ignore[union-attr]


def test_order_follows_references_whatever_the_file_order(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "pipeline.yaml").read_text()))
    reversed_file = tmp_path / "reversed.yaml"
    reversed_file.write_text(yaml.safe_dump_all(list(reversed(docs))))
    kinds = [r.kind for r in order(load_file(reversed_file))]
    assert kinds == ["TrainingJob", "EvalRun", "ModelDeployment", "AgentService"]


def test_missing_reference_names_it(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((EXAMPLES / "pipeline.yaml").read_text()))
    only_agent = tmp_path / "agent.yaml"
    only_agent.write_text(yaml.safe_dump(docs[-1]))
    with pytest.raises(RunError, match="ModelDeployment 'assistant'.*not in the file"):
        order(load_file(only_agent))


def test_invalid_resource_names_the_field(tmp_path: Path) -> None:
    doc = yaml.safe_load((EXAMPLES / "agentservice.yaml").read_text())
    doc["spec"]["maxSteps"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(RunError, match="maxSteps"):
        load_file(bad)


def test_duplicate_resource_is_refused(tmp_path: Path) -> None:
    text = (EXAMPLES / "agentservice.yaml").read_text()
    dup = tmp_path / "dup.yaml"
    dup.write_text(text + "\n---\n" + text)
    with pytest.raises(RunError, match="appears twice"):
        load_file(dup)
