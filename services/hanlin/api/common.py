"""Types shared by the four resources: references, resources, endpoints, conditions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hanlin.api.base import (
    GROUP_VERSION,
    MAX_NAME,
    MAX_STRING,
    Name,
    Quantity,
    SpecModel,
    StatusModel,
)

DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class LocalObjectReference(SpecModel):
    """A reference to another object, by name, in the same namespace."""

    name: Name
    """Name of the referenced object (it must be in this resource's namespace)."""


class SecretKeyReference(SpecModel):
    """A key in a Secret in the same namespace."""

    name: Name
    """Name of the Secret."""
    key: Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=r"^[-._a-zA-Z0-9]+$")] = (
        "apiKey"
    )
    """Key inside the Secret whose value is used."""


class EndpointSpec(SpecModel):
    """An OpenAI-compatible HTTP endpoint outside Hanlin (or one not managed by it)."""

    url: Annotated[str, Field(max_length=MAX_STRING, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]
    """Base URL of the OpenAI-compatible API, e.g. `http://host:8000/v1`."""
    model: Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
    """Model name sent in each request's `model` field."""
    api_key_secret_ref: SecretKeyReference | None = None
    """Secret holding the API key sent as a Bearer token; none means no key."""


class Toleration(SpecModel):
    """A pod toleration, as in the core Kubernetes API."""

    key: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    """Taint key the toleration applies to; empty with operator Exists matches all taints."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """`Equal` matches key and value; `Exists` matches any value of the key."""
    value: Annotated[str, Field(max_length=MAX_NAME)] | None = None
    """Taint value to match when operator is Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: Annotated[int, Field(ge=0)] | None = None
    """For NoExecute: how long the pod stays bound after the taint appears."""


class Resources(SpecModel):
    """What each pod of the workload asks for, and where it may be scheduled."""

    cpu: Quantity | None = None
    """CPU requested per pod (a Kubernetes quantity: `500m`, `4`); also its limit."""
    memory: Quantity | None = None
    """Memory requested per pod (`8Gi`); also its limit, so exceeding it kills the pod."""
    gpu: Annotated[int, Field(ge=0, le=64)] = 0
    """GPUs (`nvidia.com/gpu`) per pod; 0 runs on CPU."""
    node_selector: (
        Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=32)] | None
    ) = None
    """Node labels the pods must match."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the pods tolerate."""


class ObjectMeta(BaseModel):
    """The Kubernetes object metadata fields Hanlin reads; others are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: Name
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    generation: int | None = None
    resourceVersion: str | None = None  # noqa: N815 (the wire name)
    creationTimestamp: datetime | None = None  # noqa: N815


class Condition(StatusModel):
    """A standard Kubernetes condition: one aspect of the resource's state."""

    type: Annotated[str, Field(max_length=316)]
    """Which aspect: Ready, Succeeded, Failed, ModelReady, Gated, ..."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: Annotated[str, Field(max_length=1024)] = ""
    """A CamelCase word a program can switch on (why it is in this state)."""
    message: Annotated[str, Field(max_length=32768)] = ""
    """A human-readable explanation."""
    last_transition_time: datetime | None = None
    """When `status` last changed."""
    observed_generation: int | None = None
    """The `metadata.generation` this condition was computed from."""


class ResourceStatus(StatusModel):
    """Fields every Hanlin status carries."""

    phase: str | None = None
    """The one-word summary shown by `kubectl get`."""
    message: Annotated[str, Field(max_length=32768)] | None = None
    """Why the resource is in its phase, for a human."""
    observed_generation: int | None = None
    """The `metadata.generation` the operator last acted on."""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Standard conditions, one per type."""


class PrinterColumn(BaseModel):
    """An `additionalPrinterColumns` entry of a CRD."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str = Field(alias="jsonPath")
    description: str
    priority: int = 0

    model_config = ConfigDict(populate_by_name=True)


class Resource(BaseModel):
    """A Hanlin custom resource: apiVersion, kind, metadata, spec and status."""

    model_config = ConfigDict(extra="forbid")

    # Filled in by each kind: what the CRD generator needs besides the schema.
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[PrinterColumn, ...]]
    # Names of the objects the operator creates derive from metadata.name: Indexed
    # Job pods are `<name>-<index>-<random>`, Services need DNS-1035 labels.
    max_name_length: ClassVar[int]
    name_is_dns_label: ClassVar[bool]
    name_reason: ClassVar[str]

    apiVersion: Literal["hanlin.dev/v1alpha1"] = GROUP_VERSION  # type: ignore[assignment]  # noqa: N815
    metadata: ObjectMeta

    @model_validator(mode="after")
    def _name_fits(self) -> Resource:
        name = self.metadata.name
        if len(name) > self.max_name_length:
            raise ValueError(self.name_rule_message())
        if self.name_is_dns_label and not re.fullmatch(DNS_LABEL_PATTERN, name):
            raise ValueError(self.name_rule_message())
        return self

    @classmethod
    def name_rule_message(cls) -> str:
        """What `metadata.name` must look like for this kind, and why."""
        shape = (
            ", start with a letter and contain only lowercase letters, digits and '-'"
            if cls.name_is_dns_label
            else ""
        )
        return f"metadata.name must be at most {cls.max_name_length} characters{shape} ({cls.name_reason})"

    def to_dict(self) -> dict[str, Any]:
        """The manifest: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


__all__ = [
    "Condition",
    "EndpointSpec",
    "LocalObjectReference",
    "ObjectMeta",
    "PrinterColumn",
    "Resource",
    "ResourceStatus",
    "Resources",
    "SecretKeyReference",
    "Toleration",
]
