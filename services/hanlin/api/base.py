"""Base classes and shared constrained types for the Hanlin API models.

Specs are strict (`extra="forbid"`): a misspelled field is an error, in Python
exactly as on the API server. Field names are snake_case in Python and camelCase
on the wire (YAML, JSON, the CRD); documents are validated by their camelCase
names only, so a file that loads here is a file the API server accepts.

CEL rules (`x-kubernetes-validations`) are attached to a model with `cel(...)`
and carried into the CRD by the generator; the same invariants are checked in
Python by each model's validators, so `hanlin train --spec FILE` refuses what
the API server refuses.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

API_GROUP = "hanlin.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"

#: Upper bounds on list sizes and string lengths: the API server estimates the
#: cost of every CEL rule from them and refuses rules whose worst case is too
#: expensive, so every list and string a rule can touch needs one.
MAX_NAME = 253
MAX_STRING = 2048
MAX_TEXT = 65536


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; `message` must name the field."""
    entry = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules for a model or a field."""
    return {"x-kubernetes-validations": list(rules)}


class SpecModel(BaseModel):
    """A strict part of a resource spec: unknown fields are errors."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(BaseModel):
    """A part of a resource status: written by the operator, tolerant on read."""

    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Kubernetes names of objects this API refers to (RFC 1123 subdomain).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)]

# A resource.Quantity ("500m", "4Gi", 2): the API server's own grammar.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _quantity(value: object) -> object:
    # YAML reads `cpu: 2` as an int and `cpu: 0.5` as a float; Kubernetes
    # accepts both, so normalise to the string form.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        value = repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (like 500m, 2, 4Gi)")
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
        }
    ),
]
