"""Hypothesis strategies for valid resources, derived from the models' JSON schema.

Every constraint a single field carries (types, enums, bounds, lengths,
patterns) comes from the schema pydantic generates; the cross-field invariants
are met by construction where they pick a source ("exactly one of") and by
filtering through the models' own validators otherwise. What comes out is what
the Python models accept, which is exactly what the API server must accept too.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from hanlin.api import KINDS, ResourceError, validate_resource

# Model name -> groups of fields of which a valid object sets exactly one.
EXACTLY_ONE: dict[str, list[tuple[str, ...]]] = {
    "TrainingModelSource": [("uri", "config")],
    "ModelUnderTest": [("deploymentRef", "trainingJobRef", "uri", "endpoint")],
    "AdapterSource": [("uri", "trainingJobRef")],
    "ServedModel": [("uri", "trainingJobRef")],
    "LLMSource": [("deploymentRef", "endpoint")],
    "RemoteTool": [("url", "serviceRef")],
    "ToolSpec": [("builtin", "remote")],
}
# Largest value generated for unbounded integers (Kubernetes integers are int64,
# but nothing in the API needs more than this).
MAX_INT = 2**31 - 1
_TEXT = st.characters(min_codepoint=32, max_codepoint=126)
_KEY = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,11}", fullmatch=True)
_FREE = st.dictionaries(
    _KEY,
    st.one_of(st.integers(-1000, 1000), st.text(_TEXT, max_size=12), st.booleans()),
    max_size=4,
)


class _Walker:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def node(self, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            return self.model(name, self.defs[name])
        if "anyOf" in schema:
            options = [o for o in schema["anyOf"] if o.get("type") != "null"]
            if any("type" in o and o["type"] == "integer" for o in options) and len(options) == 2:
                # int-or-string (a Kubernetes quantity)
                return st.one_of(
                    st.integers(0, 64), st.sampled_from(["500m", "2", "1.5", "4Gi", "512Mi"])
                )
            return st.one_of([self.node(o) for o in options])
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        kind = schema.get("type")
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            low = schema.get("minimum", schema.get("exclusiveMinimum", -MAX_INT - 1) + 1)
            high = schema.get("maximum", schema.get("exclusiveMaximum", MAX_INT + 1) - 1)
            return st.integers(max(low, -MAX_INT), min(high, MAX_INT))
        if kind == "number":
            return st.floats(
                min_value=schema.get("minimum", schema.get("exclusiveMinimum", -1e6)),
                max_value=schema.get("maximum", schema.get("exclusiveMaximum", 1e6)),
                exclude_min="exclusiveMinimum" in schema,
                exclude_max="exclusiveMaximum" in schema,
                allow_nan=False,
                allow_infinity=False,
            )
        if kind == "string":
            return self.string(schema)
        if kind == "array":
            return st.lists(
                self.node(schema["items"]),
                min_size=schema.get("minItems", 0),
                max_size=min(schema.get("maxItems", 3), 3),
            )
        if kind == "object":
            if "patternProperties" in schema:
                ((pattern, values),) = schema["patternProperties"].items()
                keys = st.from_regex(pattern, fullmatch=True, alphabet=_TEXT)
                return st.dictionaries(keys, self.node(values), max_size=2)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return st.dictionaries(_KEY, self.node(extra), max_size=3)
            return _FREE
        raise AssertionError(f"no strategy for schema {schema}")

    def string(self, schema: dict[str, Any]) -> st.SearchStrategy[str]:
        low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
        if "pattern" in schema:
            strings = st.from_regex(schema["pattern"], fullmatch=True, alphabet=_TEXT)
        elif schema.get("format") == "date-time":
            return st.just("2026-01-01T00:00:00Z")
        else:
            strings = st.text(_TEXT, min_size=low, max_size=min(high, 40))
        return strings.filter(lambda s: low <= len(s) <= high)

    def model(self, name: str, schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        groups = EXACTLY_ONE.get(name, [])
        grouped = {f for g in groups for f in g}
        fixed = {k: self.node(v) for k, v in props.items() if k in required and k not in grouped}
        optional = {
            k: self.node(v) for k, v in props.items() if k not in required and k not in grouped
        }

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out = {k: draw(s) for k, s in fixed.items()}
            for key, strategy in optional.items():
                if draw(st.booleans()):
                    out[key] = draw(strategy)
            for group in groups:
                key = draw(st.sampled_from(group))
                out[key] = draw(self.node(props[key]))
            return out

        return build()


def _link_thresholds(doc: dict[str, Any]) -> dict[str, Any]:
    # Threshold keys must name listed benchmarks: derive them instead of hoping.
    spec = doc["spec"]
    if doc["kind"] == "EvalRun" and "thresholds" in spec:
        names = [b["name"] for b in spec["benchmarks"]]
        spec["thresholds"] = {f"{n}/accuracy": ">=0.5" for n in names[:2]}
    return doc


def valid_resources(kind: str, name: str = "generated") -> st.SearchStrategy[dict[str, Any]]:
    """Documents of `kind` that the models accept (camelCase wire form)."""
    model = KINDS[kind]
    schema = model.model_json_schema(by_alias=True)
    walker = _Walker(schema.get("$defs", {}))
    spec = walker.node(schema["properties"]["spec"])

    def valid(doc: dict[str, Any]) -> bool:
        try:
            validate_resource(doc)
        except ResourceError:
            return False
        return True

    docs = spec.map(
        lambda s: {
            "apiVersion": "hanlin.dev/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": s,
        }
    )
    return docs.map(_link_thresholds).filter(valid)
