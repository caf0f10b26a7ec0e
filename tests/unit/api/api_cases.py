"""The table of invalid resources (invalid_resources.yaml), shared by unit and integration tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TABLE = Path(__file__).with_name("invalid_resources.yaml")


@dataclass(frozen=True)
class InvalidCase:
    id: str
    doc: dict[str, Any]
    expect: str


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def apply(doc: dict[str, Any], set_: dict[str, Any], unset: list[str]) -> dict[str, Any]:
    """A copy of `doc` with the dotted paths set or removed."""
    out = copy.deepcopy(doc)
    for path, value in set_.items():
        node, last = _walk(out, path)
        if isinstance(node, list) and isinstance(last, int) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    for path in unset:
        node, last = _walk(out, path)
        del node[last]
    return out


def bases() -> dict[str, dict[str, Any]]:
    """One valid resource per kind."""
    return yaml.safe_load(TABLE.read_text())["bases"]  # type: ignore[no-any-return]


def invalid_cases() -> list[InvalidCase]:
    """Every invalid resource with the field its refusal must name."""
    data = yaml.safe_load(TABLE.read_text())
    out = []
    for case in data["cases"]:
        doc = apply(data["bases"][case["base"]], case.get("set", {}), case.get("unset", []))
        doc["metadata"].setdefault("name", case["id"])
        out.append(InvalidCase(case["id"], doc, case["expect"]))
    return out
