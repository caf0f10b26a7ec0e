"""OpenAI wire format: request and response payloads (pydantic v2).

Requests ignore fields they do not know (clients send many optional ones);
fields they do know are type-checked, and a bad value is a 400 naming it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.guided import Guide, one_guide
from hanlin.serve.params import SamplingParams


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Request):
    """`stream_options`: whether the last chunk carries `usage`."""

    include_usage: bool = False


class _Sampling(_Request):
    model: str
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=-1)
    min_p: float = Field(default=0.0, ge=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    ignore_eos: bool = False
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    # vLLM's extensions, sent by clients through `extra_body`:
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=2.0)
    min_tokens: int = Field(default=0, ge=0)
    skip_special_tokens: bool = True
    user: str | None = None
    # Structured output: OpenAI's response_format, or vLLM's structured_outputs / guided_*.
    response_format: dict[str, Any] | None = None
    structured_outputs: dict[str, Any] | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    def logit_bias_ids(self) -> dict[int, float]:
        """`logit_bias` with its keys (token ids, as JSON strings) parsed."""
        out: dict[int, float] = {}
        for key, bias in (self.logit_bias or {}).items():
            try:
                out[int(key)] = float(bias)
            except ValueError:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"logit_bias keys must be token ids, got {key!r}",
                    "logit_bias",
                ) from None
        return out

    def requested_guide(self) -> Guide | None:
        """The structured output the request asks for (at most one way of asking)."""
        asked: list[Guide] = []
        fmt = self.response_format
        if fmt is not None:
            kind = fmt.get("type", "text")
            if kind == "json_object":
                asked.append(Guide.of("json", {"type": "object"}, "response_format"))
            elif kind == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema")
                if not isinstance(schema, dict):
                    raise RequestError(
                        ErrorCode.INVALID_REQUEST,
                        "response_format.json_schema.schema must be a JSON schema object",
                        "response_format",
                    )
                asked.append(Guide.of("json", schema, "response_format"))
            elif kind != "text":
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"response_format type {kind!r} is not one of text, json_object, json_schema",
                    "response_format",
                )
        outputs = dict(self.structured_outputs or {})
        if outputs.pop("json_object", False):
            asked.append(Guide.of("json", {"type": "object"}, "structured_outputs"))
        for kind, value in outputs.items():
            if value is not None:
                asked.append(Guide.of(kind, value, "structured_outputs"))
        legacy = {
            "json": self.guided_json,
            "regex": self.guided_regex,
            "choice": self.guided_choice,
            "grammar": self.guided_grammar,
        }
        asked += [Guide.of(k, v, f"guided_{k}") for k, v in legacy.items() if v is not None]
        return one_guide(asked)

    def to_sampling_params(
        self,
        max_tokens: int,
        logprobs: int | None,
        prompt_logprobs: int | None,
        seed_offset: int,
        guide: Guide | None,
    ) -> SamplingParams:
        """The engine's parameters for choice `seed_offset` of this request (`n` seeds
        count up from `seed`), its output held to `guide` (see `requested_guide`)."""
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k, 0),
            min_p=self.min_p,
            skip_special_tokens=self.skip_special_tokens,
            seed=None if self.seed is None else self.seed + seed_offset,
            stop=self.stop_list(),
            stop_token_ids=list(self.stop_token_ids or []),
            ignore_eos=self.ignore_eos,
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            min_tokens=self.min_tokens,
            logit_bias=self.logit_bias_ids(),
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            guide=guide,
        )

    def stop_list(self) -> list[str]:
        """`stop` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_Sampling):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)


class ChatMessage(_Request):
    """One message of a conversation; `content` may be text or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (parts of type "text" joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    add_generation_prompt: bool = True


class PromptTokensDetails(BaseModel):
    """What OpenAI reports of the prompt: how much of it came from the cache."""

    cached_tokens: int = 0


class UsageInfo(BaseModel):
    """Token counts of a request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None


class CompletionLogprobs(BaseModel):
    """Legacy completions `logprobs` object (parallel lists)."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    """One completion."""

    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


def _completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def _chat_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _now() -> int:
    return int(time.time())


class CompletionResponse(BaseModel):
    """Response (or stream chunk) of /v1/completions."""

    id: str = Field(default_factory=_completion_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


class TopLogprob(BaseModel):
    """An alternative token in chat logprobs."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    """A generated token in chat logprobs."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    """Chat `logprobs` object."""

    content: list[TokenLogprob] | None = None


class FunctionCall(BaseModel):
    """The function a tool call names and its arguments (a JSON object, as text)."""

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One call the model asks the client to make."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class DeltaToolCall(ToolCall):
    """A tool call in a stream chunk (sent whole, in one chunk)."""

    index: int


class ChatResponseMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    """One chat completion."""

    index: int
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    """Response of /v1/chat/completions."""

    id: str = Field(default_factory=_chat_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChoice]
    usage: UsageInfo


class DeltaMessage(BaseModel):
    """A streamed piece of the assistant's message."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(BaseModel):
    """One choice of a chat stream chunk."""

    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """A chat stream chunk."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    choices: list[ChatChunkChoice]
    usage: UsageInfo | None = None


class ModelCard(BaseModel):
    """An entry of /v1/models."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "hanlin"
    max_model_len: int | None = None
    root: str | None = None
    parent: str | None = None
    """For a LoRA adapter: the base model it runs on."""


class ModelList(BaseModel):
    """Response of /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(_Request):
    """POST /tokenize (vLLM's): a prompt, or chat messages through the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    tools: list[dict[str, Any]] | None = None


class TokenizeResponse(BaseModel):
    """The prompt's token ids and how many the model takes."""

    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeRequest(_Request):
    """POST /detokenize (vLLM's)."""

    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    """The text of some token ids."""

    prompt: str
