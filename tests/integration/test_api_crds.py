"""The CRDs on a real API server: installed, discoverable, documented; examples accepted."""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hanlin.api import KINDS, TrainingJob, load_resource, load_resources

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CRDS = ROOT / "crds"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CRD_NAMES = [f"crd/{m.plural}.hanlin.dev" for m in KINDS.values()]


def shared(name: str) -> ModuleType:
    """A helper module of the API unit tests (the invalid table, the strategies)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests/unit/api" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def crds(k8s: Any) -> Any:
    k8s.install_crds(CRDS)
    return k8s


@pytest.fixture
def namespace(crds: Any) -> Iterator[str]:
    name = "api-" + secrets.token_hex(4)
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false")


def test_crds_are_established_and_structural(crds: Any) -> None:
    out = json.loads(crds.kubectl("get", *CRD_NAMES, "-o", "json").stdout)
    assert len(out["items"]) == 4
    for crd in out["items"]:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", crd["metadata"]["name"]
        assert conditions.get("NamesAccepted") == "True"
        # the API server reports schemas that are not structural as this condition
        assert conditions.get("NonStructuralSchema", "False") == "False"


def test_category_and_short_names_list_all_kinds(crds: Any, namespace: str) -> None:
    crds.kubectl("create", "-n", namespace, "-f", str(ROOT / "examples/pipeline.yaml"))
    listed = crds.kubectl("get", "hanlin", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(listed) == sorted(
        [
            "trainingjob.hanlin.dev/assistant-sft",
            "evalrun.hanlin.dev/assistant-gate",
            "modeldeployment.hanlin.dev/assistant",
            "agentservice.hanlin.dev/assistant-agent",
        ]
    )
    for short, name in [
        ("tj", "assistant-sft"),
        ("er", "assistant-gate"),
        ("md", "assistant"),
        ("as", "assistant-agent"),
    ]:
        got = crds.kubectl(
            "get", short, "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}"
        )
        assert got.stdout == name


def test_explain_teaches_the_api(crds: Any) -> None:
    # The server publishes a new CRD's OpenAPI asynchronously: give it a moment.
    deadline = time.monotonic() + 60
    while True:
        out = crds.kubectl("explain", "trainingjob.spec.adapter", check=False)
        if out.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "Train a LoRA/QLoRA adapter instead of all weights" in text
    assert "Scaling numerator: the update is multiplied by alpha / r." in text
    assert "QLoRA only: bits per weight" in text
    assert "targetModules" in text
    hp = crds.kubectl("explain", "tj.spec.hyperparameters.packing").stdout
    assert "Pack several short records" in " ".join(hp.split())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_accepted(crds: Any, namespace: str, path: Path) -> None:
    dry = crds.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), "-o", "json")
    crds.kubectl("create", "-n", namespace, "-f", str(path))
    expected = load_resources(path)
    for resource in expected:
        stored = crds.kubectl(
            "get", resource.kind.lower(), resource.metadata.name, "-n", namespace, "-o", "json"
        )
        back = load_resource(stored.stdout)
        # the server's defaults are the models' defaults
        assert back.spec == resource.spec, resource.metadata.name
    assert dry.stdout.strip()


def test_defaults_applied_by_the_server(crds: Any, namespace: str) -> None:
    minimal = {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "minimal"},
        "spec": {
            "method": "pretrain",
            "model": {"config": {"model_type": "llama", "hidden_size": 64}},
            "data": [{"uri": "file:///data/corpus.txt"}],
            "output": {"uri": "file:///out"},
        },
    }
    crds.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(minimal))
    stored = json.loads(crds.kubectl("get", "tj", "minimal", "-n", namespace, "-o", "json").stdout)
    spec = stored["spec"]
    assert spec["hyperparameters"]["learningRate"] == pytest.approx(1e-4)
    assert spec["hyperparameters"]["seed"] == 42 and spec["hyperparameters"]["packing"] is True
    assert spec["resources"] == {"gpu": 0, "nodes": 1, "procsPerNode": 1}
    assert spec["checkpoint"] == {"keep": 2}
    assert spec["data"][0] == {"uri": "file:///data/corpus.txt", "format": "text", "weight": 1}
    # free-form model config is kept as written, not pruned
    assert spec["model"]["config"] == {"model_type": "llama", "hidden_size": 64}
    assert load_resource(json.dumps(stored), TrainingJob).spec.backoff_limit == 3


def test_status_subresource_feeds_the_printer_columns(crds: Any, namespace: str) -> None:
    crds.kubectl("create", "-n", namespace, "-f", str(ROOT / "examples/trainingjob-sft-lora.yaml"))
    status = {
        "status": {
            "phase": "Running",
            "progress": {"step": 40, "totalSteps": 100, "percent": 40, "loss": 2.25},
        }
    }
    crds.kubectl(
        "patch",
        "tj",
        "smollm2-sft-lora",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    table = crds.kubectl("get", "tj", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "METHOD", "PHASE", "PROGRESS", "LOSS"]
    assert table[1].split()[:5] == ["smollm2-sft-lora", "sft", "Running", "40", "2.25"]
    # a spec write through the main resource cannot touch status
    crds.kubectl(
        "patch",
        "tj",
        "smollm2-sft-lora",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"suspend": True}, "status": {"phase": "Failed"}}),
    )
    stored = load_resource(
        crds.kubectl("get", "tj", "smollm2-sft-lora", "-n", namespace, "-o", "json").stdout,
        TrainingJob,
    )
    assert stored.spec.suspend is True
    assert stored.status is not None and stored.status.phase == "Running"
