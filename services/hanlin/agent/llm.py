"""A small client for OpenAI-compatible chat endpoints (a ModelDeployment, or any other)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

JSONDict = dict[str, Any]


class LLMError(RuntimeError):
    """The endpoint failed or answered something that is not a chat completion."""


@dataclass
class ToolCall:
    """One call the model asked for in OpenAI `tool_calls` form (arguments still as text)."""

    id: str
    name: str
    arguments: str


@dataclass
class ChatReply:
    """The first choice of a chat completion, plus token usage."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""


def v1_base(url: str) -> str:
    """`http://host:port` or `http://host:port/v1` → the `/v1` base URL."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


@dataclass
class LLMClient:
    """Chat completions over HTTP; one pooled httpx client per agent."""

    url: str
    model: str
    api_key: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 120.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.Client(base_url=v1_base(self.url), headers=headers)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def chat(
        self,
        messages: list[JSONDict],
        *,
        stop: list[str] | None = None,
        tools: list[JSONDict] | None = None,
        timeout_s: float | None = None,
    ) -> ChatReply:
        """One chat completion; raises `LLMError` on transport or protocol failure."""
        body: JSONDict = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if stop:
            body["stop"] = stop
        if tools:
            body["tools"] = tools
        timeout = min(self.timeout_s, timeout_s) if timeout_s is not None else self.timeout_s
        try:
            response = self._http.post("/chat/completions", json=body, timeout=max(timeout, 0.1))
        except httpx.TimeoutException:
            raise LLMError(f"the model endpoint did not answer within {timeout:.1f} s") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach the model endpoint {self.url}: {exc}") from None
        if response.status_code != 200:
            raise LLMError(
                f"model endpoint returned HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"not a chat completion: {response.text[:300]}") from None
        calls = [
            ToolCall(
                id=str(c.get("id", f"call_{i}")),
                name=str(c.get("function", {}).get("name", "")),
                arguments=_arguments_text(c.get("function", {}).get("arguments", "")),
            )
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        usage = data.get("usage") or {}
        return ChatReply(
            content=message.get("content") or "",
            tool_calls=calls,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=str(choice.get("finish_reason") or ""),
        )


def _arguments_text(arguments: Any) -> str:
    # Some servers send the arguments as an object rather than a JSON string.
    return arguments if isinstance(arguments, str) else json.dumps(arguments)
