"""Request and response models of the agent service."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RunRequest(BaseModel):
    """POST /v1/runs and /v1/sessions/{id}/runs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    task: str = Field(min_length=1, description="What the agent should do.")
    session_id: str | None = Field(default=None, alias="sessionId")
    stream: bool = Field(default=False, description="Stream steps as server-sent events.")


class StepModel(BaseModel):
    """One step of a run's trace."""

    kind: str
    content: str
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    ok: bool | None = None
    latency_s: float | None = Field(default=None, serialization_alias="latencySeconds")


class Usage(BaseModel):
    """LLM tokens a run used."""

    prompt_tokens: int
    completion_tokens: int


class RunResponse(BaseModel):
    """A finished run: answer or failure reason, and the whole trace."""

    id: str
    status: Literal["succeeded", "failed"]
    answer: str | None
    reason: str | None
    steps: list[StepModel]
    tool_steps: int = Field(serialization_alias="toolSteps")
    usage: Usage
    duration_s: float = Field(serialization_alias="durationSeconds")
    session_id: str | None = Field(default=None, serialization_alias="sessionId")


class SessionCreate(BaseModel):
    """POST /v1/sessions."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class Turn(BaseModel):
    """One task and its outcome within a session."""

    task: str
    status: str
    answer: str | None
    reason: str | None


class SessionView(BaseModel):
    """GET /v1/sessions/{id}."""

    id: str
    turns: list[Turn]
    memory: list[dict[str, str]]


class ToolView(BaseModel):
    """One entry of GET /v1/tools."""

    name: str
    description: str
    parameters: dict[str, Any]
    source: str


class ChatMessage(BaseModel):
    """An OpenAI chat message (tool-call fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text, joining content parts."""
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    """POST /v1/chat/completions: the OpenAI shape; sampling fields are accepted, not used
    (the agent's own settings decide how the model is called)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
