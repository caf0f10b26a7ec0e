"""AgentService: an agent (ReAct, ReWOO, plan-execute, function calling) served over HTTP."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from hanlin.api.base import MAX_NAME, MAX_STRING, MAX_TEXT, SpecModel, cel, validations
from hanlin.api.common import (
    EndpointSpec,
    LocalObjectReference,
    PrinterColumn,
    Resource,
    Resources,
    ResourceStatus,
)

Strategy = Literal["react", "rewoo", "plan-execute", "function-calling"]
BuiltinTool = Literal["calculator", "python", "http", "retrieval"]
AgentPhase = Literal["Pending", "Waiting", "Progressing", "Ready", "Degraded", "Failed"]


class LLMSource(SpecModel):
    """The language model the agent thinks with."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.deploymentRef) != has(self.endpoint)",
                "spec.llm: set exactly one of deploymentRef or endpoint",
            ),
        )
    }

    deployment_ref: LocalObjectReference | None = None
    """A ModelDeployment in this namespace; the agent waits until it is Ready."""
    endpoint: EndpointSpec | None = None
    """Any OpenAI-compatible endpoint."""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    """Sampling temperature for the agent's LLM calls (0 is greedy and repeatable)."""
    max_tokens: Annotated[int, Field(ge=1, le=65536)] = 512
    """Most tokens per LLM call."""

    @model_validator(mode="after")
    def _one_source(self) -> LLMSource:
        if (self.deployment_ref is None) == (self.endpoint is None):
            raise ValueError("spec.llm: set exactly one of deploymentRef or endpoint")
        return self


class ServiceReference(SpecModel):
    """A Service in this namespace."""

    name: Annotated[
        str, Field(min_length=1, max_length=63, pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    ]
    """Name of the Service."""
    port: Annotated[int, Field(ge=1, le=65535)] = 80
    """Port of the Service."""
    path: Annotated[str, Field(max_length=MAX_STRING, pattern=r"^/[^\s]*$")] = "/"
    """Path prefix of the tool server on that port."""


class RemoteTool(SpecModel):
    """A tool server (OpenAPI at /openapi.json, `POST /tools/{name}`) whose tools the agent may call."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.url) != has(self.serviceRef)",
                "spec.tools[].remote: set exactly one of url or serviceRef",
            ),
        )
    }

    url: (
        Annotated[str, Field(max_length=MAX_STRING, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")] | None
    ) = None
    """Base URL of the tool server."""
    service_ref: ServiceReference | None = None
    """A Service in this namespace running a tool server (`hanlin tools serve`)."""
    tools: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_NAME)]], Field(max_length=64)
        ]
        | None
    ) = None
    """Only these of the server's tools; unset offers all of them to the agent."""

    @model_validator(mode="after")
    def _one_target(self) -> RemoteTool:
        if (self.url is None) == (self.service_ref is None):
            raise ValueError("spec.tools[].remote: set exactly one of url or serviceRef")
        return self


class ToolSpec(SpecModel):
    """A tool: built in, or served remotely."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.builtin) != has(self.remote)",
                "spec.tools[]: set exactly one of builtin or remote",
            ),
            cel(
                "!has(self.config) || has(self.builtin)",
                "spec.tools[].config is only allowed with spec.tools[].builtin",
                field_path=".config",
            ),
        )
    }

    builtin: BuiltinTool | None = None
    """A built-in tool: `calculator` (arithmetic), `python` (sandboxed code execution),
`http` (GET from allowed hosts), `retrieval` (search over documents)."""
    config: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Settings of the built-in tool (e.g. `allowedHosts` for http, `documentsUri` for retrieval, `timeoutSeconds` for python)."""
    remote: RemoteTool | None = None
    """Tools served by a tool server."""

    @model_validator(mode="after")
    def _one_kind(self) -> ToolSpec:
        if (self.builtin is None) == (self.remote is None):
            raise ValueError("spec.tools[]: set exactly one of builtin or remote")
        if self.config is not None and self.builtin is None:
            raise ValueError("spec.tools[].config is only allowed with spec.tools[].builtin")
        return self


class AgentServiceSpec(SpecModel):
    """The agent's model, reasoning strategy, tools and replicas."""

    model_config = SpecModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.tools) || self.tools.all(t, !has(t.builtin) || self.tools.exists_one(u, has(u.builtin) && u.builtin == t.builtin))",
                "spec.tools: each builtin tool may appear only once",
                field_path=".tools",
            ),
        )
    }

    llm: LLMSource
    """The language model."""
    strategy: Strategy = "react"
    """How the agent reasons. `react`: think, act, observe, repeat. `rewoo`: plan every tool
call up front, run them, then answer. `plan-execute`: plan steps, execute each with
ReAct, re-plan. `function-calling`: the model's native tool calls (OpenAI `tools`)."""
    system_prompt: Annotated[str, Field(max_length=MAX_TEXT)] | None = None
    """Instructions prepended to every conversation; unset uses the strategy's default."""
    max_steps: Annotated[int, Field(ge=1, le=128)] = 8
    """Most reasoning/tool steps per request before the agent must answer."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 120
    """Most wall time per request."""
    tools: Annotated[list[ToolSpec], Field(max_length=32)] | None = None
    """Tools the agent may call."""
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    """Agent server replicas."""
    resources: Resources = Field(default_factory=Resources)
    """Per-replica resources."""
    image: Annotated[str, Field(min_length=1, max_length=MAX_NAME)] | None = None
    """Container image for the agent servers; unset uses the operator's runtime image."""

    @model_validator(mode="after")
    def _unique_builtins(self) -> AgentServiceSpec:
        builtins = [t.builtin for t in self.tools or [] if t.builtin is not None]
        if len(set(builtins)) != len(builtins):
            raise ValueError("spec.tools: each builtin tool may appear only once")
        return self


class AgentServiceStatus(ResourceStatus):
    """Observed state of an AgentService."""

    phase: AgentPhase | None = None
    """Pending, Waiting (for its LLM), Progressing, Ready, Degraded or Failed."""
    endpoint: str | None = None
    """In-cluster base URL of the agent's HTTP API."""
    tools: list[str] = Field(default_factory=list)
    """Names of the tools the agent can call (after resolving remote servers)."""
    replicas: int | None = None
    """Replicas that exist."""
    ready_replicas: int | None = None
    """Replicas serving."""


class AgentService(Resource):
    """An agent behind an HTTP API: an LLM, a reasoning strategy and tools."""

    plural: ClassVar[str] = "agentservices"
    short_names: ClassVar[tuple[str, ...]] = ("as",)
    max_name_length: ClassVar[int] = 55
    name_is_dns_label: ClassVar[bool] = True
    name_reason: ClassVar[str] = "it names the Deployment and its Service"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn(
            name="Phase",
            type="string",
            json_path=".status.phase",
            description="Whether it is serving",
        ),
        PrinterColumn(
            name="Strategy",
            type="string",
            json_path=".spec.strategy",
            description="Reasoning strategy",
        ),
        PrinterColumn(
            name="Ready",
            type="integer",
            json_path=".status.readyReplicas",
            description="Replicas serving",
        ),
        PrinterColumn(
            name="Endpoint",
            type="string",
            json_path=".status.endpoint",
            description="Base URL",
            priority=1,
        ),
        PrinterColumn(
            name="Age", type="date", json_path=".metadata.creationTimestamp", description="Age"
        ),
    )

    kind: Literal["AgentService"] = "AgentService"
    spec: AgentServiceSpec
    """What to run."""
    status: AgentServiceStatus | None = None
    """What the operator observed."""
