"""What crosses between the engine and the servers: outputs, limits (no torch here).

The server process imports only this side of the engine, so it stays free of
torch; the engine process imports `hanlin.serve.engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.params import SamplingParams

Logprob = tuple[float, dict[int, float]]


@dataclass
class RequestOutput:
    """What one step added to one request (deltas), and whether it is done."""

    request_id: str
    token_ids: list[int]
    text: str
    finished: bool
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[Logprob] = field(default_factory=list)
    prompt_logprobs: list[Logprob | None] | None = None
    cached_tokens: int = 0  # prompt tokens served from the prefix cache


@dataclass(frozen=True)
class RequestLimits:
    """What a request may ask of an engine: checked by the server before it reaches the engine."""

    max_model_len: int
    vocab_size: int
    lora_names: tuple[str, ...] = ()

    def adapter_id(self, adapter: str | None) -> int:
        """0 for the base model, i + 1 for LoRA adapter i; unknown names are a 404."""
        if adapter is None:
            return 0
        if adapter not in self.lora_names:
            raise RequestError(
                ErrorCode.MODEL_NOT_FOUND,
                f"no LoRA adapter named {adapter!r} is served here",
                "model",
            )
        return self.lora_names.index(adapter) + 1

    def check(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None) -> None:
        """Raise `RequestError` if the request can never run (bad params, too long)."""
        params.validate()
        params.check_vocab(self.vocab_size)
        self.adapter_id(adapter)
        if not prompt_ids:
            raise RequestError(ErrorCode.INVALID_REQUEST, "prompt must not be empty", "prompt")
        vocab = self.vocab_size
        if any(t < 0 or t >= vocab for t in prompt_ids):
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"prompt token ids must be in [0, {vocab})", "prompt"
            )
        if len(prompt_ids) + params.max_tokens > self.max_model_len:
            raise RequestError(
                ErrorCode.CONTEXT_TOO_LONG,
                f"This model's maximum context length is {self.max_model_len} tokens. "
                f"However, you requested {len(prompt_ids) + params.max_tokens} tokens "
                f"({len(prompt_ids)} in the prompt, {params.max_tokens} for the completion). "
                "Please reduce the prompt or max_tokens.",
                "prompt",
            )
