"""Reading resources from YAML: parse, dispatch on kind, validate, explain errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar, overload

import yaml
from pydantic import ValidationError

from hanlin.api.agent_service import AgentService
from hanlin.api.base import GROUP_VERSION
from hanlin.api.common import Resource
from hanlin.api.eval_run import EvalRun
from hanlin.api.model_deployment import ModelDeployment
from hanlin.api.training_job import TrainingJob

AnyResource = TrainingJob | EvalRun | ModelDeployment | AgentService

#: kind -> model class
KINDS: dict[str, type[AnyResource]] = {
    "TrainingJob": TrainingJob,
    "EvalRun": EvalRun,
    "ModelDeployment": ModelDeployment,
    "AgentService": AgentService,
}


R = TypeVar("R", TrainingJob, EvalRun, ModelDeployment, AgentService)


class ResourceError(ValueError):
    """A document is not a valid Hanlin resource; the message names the field."""


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "-" in part or "/" in part:
            # dict keys (thresholds, nodeSelector) and pydantic's union tags
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def explain(err: ValidationError) -> str:
    """One line per problem, each starting with the path of the offending field."""
    lines = []
    for e in err.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        where = _location(tuple(e["loc"]))
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        # Model-level checks name their field generically (`spec.tools[].config`);
        # put the concrete index back (`spec.tools[2].config`).
        generic = re.sub(r"\[\d+\]", "[]", where)
        if where and msg.startswith(generic) and generic != where:
            lines.append(msg.replace(generic, where))
        elif msg.startswith(("spec", "metadata", "kind", "apiVersion")) or not where:
            lines.append(msg)
        else:
            lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def validate_resource(doc: Any, source: str = "<document>") -> AnyResource:
    """Validate one parsed document (a dict) as the resource its `kind` names."""
    if not isinstance(doc, dict):
        raise ResourceError(f"{source}: expected a mapping with apiVersion, kind, metadata, spec")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise ResourceError(f"{source}: kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if doc.get("apiVersion") != GROUP_VERSION:
        raise ResourceError(
            f"{source}: apiVersion: expected {GROUP_VERSION}, got {doc.get('apiVersion')!r}"
        )
    name = (
        (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    )
    try:
        # Wire names only: a snake_case field in YAML is refused, as the API server would.
        return KINDS[kind].model_validate(doc, by_alias=True, by_name=False)
    except ValidationError as err:
        label = f"{kind} {name!r}" if name else str(kind)
        raise ResourceError(f"{source}: {label}: {explain(err)}") from None


def _read(path_or_text: str | Path) -> tuple[str, str]:
    if isinstance(path_or_text, Path):
        if not path_or_text.is_file():
            raise ResourceError(f"{path_or_text}: no such file")
        return path_or_text.read_text(encoding="utf-8"), str(path_or_text)
    if "\n" not in path_or_text:
        if Path(path_or_text).is_file():
            return Path(path_or_text).read_text(encoding="utf-8"), path_or_text
        if path_or_text.endswith((".yaml", ".yml", ".json")):
            raise ResourceError(f"{path_or_text}: no such file")
    return path_or_text, "<text>"


def load_resources(path_or_text: str | Path) -> list[AnyResource]:
    """All resources in a (multi-document) YAML file or string, in order."""
    text, source = _read(path_or_text)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ResourceError(f"{source}: not valid YAML: {err}") from None
    return [
        validate_resource(d, f"{source} (document {i + 1})" if len(docs) > 1 else source)
        for i, d in enumerate(docs)
    ]


@overload
def load_resource(path_or_text: str | Path) -> AnyResource: ...
@overload
def load_resource(path_or_text: str | Path, kind: type[R]) -> R: ...
def load_resource(
    path_or_text: str | Path,
    kind: type[Resource] | None = None,
) -> AnyResource:
    """The single resource in a YAML file or string (what `--spec FILE` receives).

    A `Path`, or a one-line string naming an existing file, is read; anything
    else is parsed as YAML text. With `kind` (e.g. `TrainingJob`), a resource of
    another kind is an error. Raises ResourceError naming the offending field.
    """
    resources = load_resources(path_or_text)
    source = (
        str(path_or_text)
        if isinstance(path_or_text, Path) or "\n" not in path_or_text
        else "<text>"
    )
    if len(resources) != 1:
        raise ResourceError(f"{source}: expected exactly one resource, found {len(resources)}")
    resource = resources[0]
    if kind is not None and not isinstance(resource, kind):
        raise ResourceError(f"{source}: kind: expected {kind.__name__}, got {resource.kind}")
    return resource
