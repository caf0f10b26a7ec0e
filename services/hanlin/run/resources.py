"""Reading a resource file for the local runner: local URIs, validation, reference order.

The file is the same one a user `kubectl apply`s, with local conveniences:
a `uri` without a scheme is a path relative to the file (a local-only shorthand the
API server refuses), and a `pvc://CLAIM/PATH` that the workdir's volumes do not hold
yet is seeded on first use: the dev model's `pvc://models/smollm2-135m-instruct`
from the model cache, anything else from `CLAIM/PATH` beside the file (so
`examples/quickstart.yaml` names its shipped data as `pvc://data/...`, which a
cluster provides as a PersistentVolumeClaim). The order
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


def _pvc_uris(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [u for v in node.values() for u in _pvc_uris(v)]
    if isinstance(node, list):
        return [u for v in node for u in _pvc_uris(v)]
    return [node] if isinstance(node, str) and node.startswith("pvc://") else []


def provision(resources: list[AnyResource], pvc_root: Path, base: Path) -> list[Path]:
    """Seed the pvc:// paths the resources read that the local volumes lack; what was linked.

    Outputs are not seeded: a path is linked only where a source for it exists.
    """
    from hanlin.dev.model import MODEL_NAME

    linked = []
    for uri in sorted({u for r in resources for u in _pvc_uris(r.spec.to_dict())}):
        rel = uri.removeprefix("pvc://").rstrip("/")
        dest = pvc_root / rel
        if dest.exists():
            continue
        if rel == f"{DEV_MODEL_CLAIM}/{MODEL_NAME}":
            from hanlin.dev.model import ensure_model

            # The cached copy is built once per machine; a link avoids copying it.
            source = ensure_model()
        elif (base / rel).exists():
            source = (base / rel).resolve()
        else:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():  # a dangling link from an earlier run
            dest.unlink()
        dest.symlink_to(source, target_is_directory=source.is_dir())
        linked.append(dest)
    return linked
