"""Loading a file for the local runner: relative URIs, validation errors, reference order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hanlin.run.resources import RunError, load_file, order

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_quickstart_orders_the_chain_and_localizes_the_data() -> None:
    resources = order(load_file(EXAMPLES / "quickstart.yaml"))
    assert [r.kind for r in resources] == [
        "TrainingJob",
        "EvalRun",
        "ModelDeployment",
        "AgentService",
    ]
    data_uri = resources[0].spec.data[0].uri  # type: ignore[union-attr]
    assert data_uri == (EXAMPLES / "data" / "instructions.jsonl").resolve().as_uri()
    assert Path(data_uri.removeprefix("file://")).is_file()


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
