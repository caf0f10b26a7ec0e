"""Reading a resource file for the local runner: local URIs, validation, reference order.

The file is the same one a user `kubectl apply`s, with two local conveniences:
a `uri` without a scheme is a path relative to the file, and the dev model's
`pvc://models/smollm2-135m-instruct` is provisioned on first use. The order
comes from the operator's own `references()`, so both run the chain alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hanlin.api import AnyResource, ResourceError, validate_resource
from hanlin_operator.reconcile import references

#: The claim and path under which the quickstart names the dev model.
DEV_MODEL_CLAIM = "models"


class RunError(Exception):
    """Something the user must fix in the file or the environment (exit code 2)."""


def _localize(node: Any, base: Path) -> Any:
    # Every `uri` field in a spec may be relative locally; the API itself only takes absolute URIs.
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "uri" and isinstance(value, str) and "://" not in value:
                value = (base / value).resolve().as_uri()
            out[key] = _localize(value, base)
        return out
    if isinstance(node, list):
        return [_localize(v, base) for v in node]
    return node


def load_file(path: Path) -> list[AnyResource]:
    """Every resource in a (multi-document) YAML file, validated, relative URIs made absolute."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as err:
        raise RunError(f"{path}: {err}") from None
    if not docs:
        raise RunError(f"{path}: no resources in the file")
    out: list[AnyResource] = []
    seen: set[tuple[str, str]] = set()
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise RunError(f"{path}: document {i + 1} is not a mapping")
        try:
            resource = validate_resource(_localize(doc, path.parent.resolve()))
        except ResourceError as err:
            raise RunError(f"{path}: document {i + 1}: {err}") from None
        key = (resource.kind, resource.metadata.name)
        if key in seen:
            raise RunError(f"{path}: {resource.kind} {resource.metadata.name!r} appears twice")
        seen.add(key)
        out.append(resource)
    return out


def order(resources: list[AnyResource]) -> list[AnyResource]:
    """Resources so that each comes after everything it references (stable otherwise)."""
    by_key: dict[tuple[str, str], AnyResource] = {(r.kind, r.metadata.name): r for r in resources}
    for r in resources:
        for kind, name in references(r):
            if (kind, name) not in by_key:
                raise RunError(
                    f"{r.kind} {r.metadata.name!r} references {kind} {name!r}, "
                    "which is not in the file"
                )
    done: list[AnyResource] = []
    placed: set[tuple[str, str]] = set()
    visiting: set[tuple[str, str]] = set()

    def visit(r: AnyResource) -> None:
        key = (r.kind, r.metadata.name)
        if key in placed:
            return
        if key in visiting:
            raise RunError(f"{r.kind} {r.metadata.name!r} is part of a reference cycle")
        visiting.add(key)
        for ref in references(r):
            visit(by_key[ref])
        visiting.discard(key)
        placed.add(key)
        done.append(r)

    for r in resources:
        visit(r)
    return done


def provision_dev_model(resources: list[AnyResource], pvc_root: Path) -> Path | None:
    """Put the dev model where a `pvc://models/<dev model>` URI points, if one does; its path."""
    from hanlin.dev.model import MODEL_NAME

    wanted = f"pvc://{DEV_MODEL_CLAIM}/{MODEL_NAME}"
    text = "\n".join(yaml.safe_dump(r.spec.to_dict()) for r in resources)
    if wanted not in text:
        return None
    dest = pvc_root / DEV_MODEL_CLAIM / MODEL_NAME
    if not (dest / "config.json").is_file():
        from hanlin.dev.model import ensure_model

        # The cached copy is built once per machine; a link avoids copying half a gigabyte.
        cached = ensure_model()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        dest.symlink_to(cached, target_is_directory=True)
    return dest
