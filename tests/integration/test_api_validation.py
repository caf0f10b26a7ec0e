"""The API server refuses invalid resources, naming the field; immutable fields stay put."""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]


def shared(name: str) -> ModuleType:
    """A helper module of the API unit tests (the invalid table)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests/unit/api" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


CASES = shared("api_cases").invalid_cases()


@pytest.fixture(scope="module")
def ns(k8s: Any) -> Iterator[str]:
    k8s.install_crds(ROOT / "crds")
    name = "api-" + secrets.token_hex(4)
    k8s.kubectl("create", "namespace", name)
    yield name
    k8s.kubectl("delete", "namespace", name, "--wait=false")


def _create(k8s: Any, ns: str, doc: dict[str, Any], *, dry_run: bool) -> str | None:
    """Create through the API with strict field validation; the refusal message, or None."""
    from kubernetes import client

    api = client.CustomObjectsApi(k8s.api)
    plural = doc["kind"].lower() + "s"
    try:
        api.create_namespaced_custom_object(
            "hanlin.dev",
            "v1alpha1",
            ns,
            plural,
            doc,
            dry_run="All" if dry_run else None,
            field_validation="Strict",
        )
    except client.ApiException as err:
        assert err.status in (400, 422), err
        return str(json.loads(err.body)["message"])
    return None


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert {c.doc["kind"] for c in CASES} == {
        "TrainingJob",
        "EvalRun",
        "ModelDeployment",
        "AgentService",
    }


def test_the_bases_are_accepted(k8s: Any, ns: str) -> None:
    for doc in shared("api_cases").bases().values():
        assert _create(k8s, ns, doc, dry_run=True) is None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_resource_is_refused_naming_the_field(k8s: Any, ns: str, case: Any) -> None:
    message = _create(k8s, ns, case.doc, dry_run=True)
    assert message is not None, f"{case.id} was accepted"
    assert case.expect in message, message


def _cel_rules(node: dict[str, Any]) -> list[dict[str, str]]:
    found = list(node.get("x-kubernetes-validations", []))
    for sub in node.get("properties", {}).values():
        found += _cel_rules(sub)
    if "items" in node:
        found += _cel_rules(node["items"])
    return found


def test_every_cel_rule_is_exercised_by_the_table(k8s: Any, ns: str) -> None:
    from hanlin.api import KINDS
    from hanlin.api.crd import build_crd

    messages = " ".join(m for c in CASES if (m := _create(k8s, ns, c.doc, dry_run=True)))
    for model in KINDS.values():
        schema = build_crd(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for rule in _cel_rules(schema):
            if "oldSelf" in rule["rule"]:
                continue  # transition rules: test_immutable_fields_refuse_updates
            assert rule["message"] in messages, f"no invalid case triggers: {rule['message']}"


def _patch(k8s: Any, ns: str, kind: str, name: str, patch: dict[str, Any]) -> str | None:
    out = k8s.kubectl(
        "patch", kind, name, "-n", ns, "--type=merge", "-p", json.dumps(patch), check=False
    )
    return None if out.returncode == 0 else out.stderr


def test_immutable_fields_refuse_updates(k8s: Any, ns: str) -> None:
    bases = shared("api_cases").bases()
    tj = dict(bases["TrainingJob"], metadata={"name": "immutable-tj"})
    er = dict(bases["EvalRun"], metadata={"name": "immutable-er"})
    assert _create(k8s, ns, tj, dry_run=False) is None
    assert _create(k8s, ns, er, dry_run=False) is None

    refused = {
        "spec.method is immutable": {"spec": {"method": "continue"}},
        "spec.model is immutable": {"spec": {"model": {"uri": "pvc://models/other"}}},
        "spec.adapter is immutable": {"spec": {"adapter": {"r": 16}}},
        "spec.data is immutable": {"spec": {"data": [{"uri": "s3://datasets/other.jsonl"}]}},
        "spec.output.uri is immutable": {"spec": {"output": {"uri": "s3://artifacts/elsewhere"}}},
    }
    for message, patch in refused.items():
        err = _patch(k8s, ns, "trainingjob", "immutable-tj", patch)
        assert err is not None and message in err, (patch, err)
    removed = _patch(k8s, ns, "trainingjob", "immutable-tj", {"spec": {"adapter": None}})
    assert removed is not None and "spec.adapter is immutable" in removed

    # what may change after creation does
    assert _patch(k8s, ns, "trainingjob", "immutable-tj", {"spec": {"suspend": True}}) is None
    assert (
        _patch(k8s, ns, "trainingjob", "immutable-tj", {"spec": {"output": {"mergeAdapter": True}}})
        is None
    )
    assert (
        _patch(
            k8s, ns, "trainingjob", "immutable-tj", {"spec": {"hyperparameters": {"maxSteps": 200}}}
        )
        is None
    )

    for message, patch in {
        "spec.model is immutable": {"spec": {"model": {"deploymentRef": {"name": "other"}}}},
        "spec.benchmarks is immutable": {"spec": {"benchmarks": [{"name": "mmlu", "mode": "gen"}]}},
        "spec.thresholds is immutable": {"spec": {"thresholds": {"mmlu/accuracy": ">=0.1"}}},
    }.items():
        err = _patch(k8s, ns, "evalrun", "immutable-er", patch)
        assert err is not None and message in err, (patch, err)
    assert _patch(k8s, ns, "evalrun", "immutable-er", {"spec": {"workers": 3}}) is None
