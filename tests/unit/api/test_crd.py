"""The generated CRDs: in step with the models, structural, documented, bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hanlin.api import KINDS
from hanlin.api.crd import build_crd, crd_files, stale_crds, write_crds

CRDS = Path(__file__).parents[3] / "crds"


def test_crds_directory_matches_the_models() -> None:
    assert stale_crds(CRDS) == [], "run `hanlin crds generate`"


def _hanlin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from hanlin.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_command_fails_on_drift_and_generate_fixes_it(tmp_path: Path) -> None:
    write_crds(tmp_path)
    assert _hanlin("crds", "check", "--dir", str(tmp_path)).returncode == 0
    victim = tmp_path / "hanlin.dev_evalruns.yaml"
    victim.write_text(victim.read_text().replace("maxItems: 64", "maxItems: 65", 1))
    (tmp_path / "hanlin.dev_oldkinds.yaml").write_text("{}\n")
    (tmp_path / "hanlin.dev_agentservices.yaml").unlink()
    failed = _hanlin("crds", "check", "--dir", str(tmp_path))
    assert failed.returncode == 1
    assert "hanlin.dev_evalruns.yaml: differs from the models" in failed.stderr
    assert "hanlin.dev_agentservices.yaml: missing" in failed.stderr
    assert "hanlin.dev_oldkinds.yaml: no model generates it" in failed.stderr
    fixed = _hanlin("crds", "generate", "--dir", str(tmp_path))
    assert fixed.returncode == 0 and "wrote" in fixed.stdout
    (tmp_path / "hanlin.dev_oldkinds.yaml").unlink()
    assert _hanlin("crds", "check", "--dir", str(tmp_path)).returncode == 0


def test_names_and_subresources() -> None:
    shorts = {}
    for kind, model in KINDS.items():
        crd = build_crd(model)
        names = crd["spec"]["names"]
        assert names["kind"] == kind and names["categories"] == ["hanlin"]
        shorts[kind] = names["shortNames"]
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["scope"] == "Namespaced"
    assert shorts == {
        "TrainingJob": ["tj"],
        "EvalRun": ["er"],
        "ModelDeployment": ["md"],
        "AgentService": ["as"],
    }


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if "items" in node:
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural_documented_and_bounded(kind: str) -> None:
    crd = build_crd(KINDS[kind])
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(root)
    for forbidden in ("$ref", "$defs", "title:", "const:", "additionalProperties: false", "null"):
        assert forbidden not in text, forbidden
    for path, node in _walk(root, kind):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
            continue
        assert "anyOf" not in node and "oneOf" not in node, path
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, (
            path
        )
        if node["type"] == "object" and "properties" not in node:
            # a map with typed values, or genuinely free-form (a model config, tool settings)
            free = path.endswith((".config", ".metadata"))
            assert "additionalProperties" in node or free, path
        if path.startswith(f"{kind}.spec"):
            element = path.endswith(("[]", "{}")) and node["type"] not in ("object", "array")
            assert node.get("description") or element, f"{path} has no description"
            if node["type"] == "array":
                assert "maxItems" in node, f"{path}: CEL cost needs maxItems"
            if node["type"] == "string":
                assert "maxLength" in node or "enum" in node, f"{path}: CEL cost needs maxLength"
            if node["type"] == "object" and "additionalProperties" in node:
                assert "maxProperties" in node, f"{path}: CEL cost needs maxProperties"


@pytest.mark.parametrize("kind", list(KINDS))
def test_printer_columns_point_at_real_fields(kind: str) -> None:
    crd = build_crd(KINDS[kind])
    version = crd["spec"]["versions"][0]
    paths = {p for p, _ in _walk(version["schema"]["openAPIV3Schema"], "")}
    columns = version["additionalPrinterColumns"]
    assert columns[-1]["name"] == "Age" and any(c["name"] == "Phase" for c in columns)
    for column in columns:
        if column["jsonPath"] != ".metadata.creationTimestamp":
            assert column["jsonPath"] in paths, column


def _rules(node: dict[str, Any]) -> list[dict[str, str]]:
    found = list(node.get("x-kubernetes-validations", []))
    for sub in node.get("properties", {}).values():
        found += _rules(sub)
    if "items" in node:
        found += _rules(node["items"])
    return found


def test_every_cel_message_names_a_field() -> None:
    total = 0
    for model in KINDS.values():
        root = build_crd(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for rule in _rules(root):
            total += 1
            assert rule["message"].startswith(("spec.", "spec:", "metadata.")), rule
            assert set(rule) <= {"rule", "message", "fieldPath", "reason"}
    assert total >= 30


def test_generated_files_are_valid_yaml_with_a_header() -> None:
    for name, text in crd_files().items():
        assert text.startswith("# Generated by `hanlin crds generate`")
        assert yaml.safe_load(text)["metadata"]["name"].endswith(".hanlin.dev"), name
