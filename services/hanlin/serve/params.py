"""Sampling parameters of one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.guided import Guide


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop; validated by `validate()`."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k
    min_p: float = 0.0  # drop tokens less likely than min_p x the likeliest (0 = off)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None  # top alternatives per generated token (0 = only the chosen)
    prompt_logprobs: int | None = None  # same for every prompt token (first is None)
    skip_special_tokens: bool = True
    # Logits processors, applied in this order before any choice (greedy included):
    min_tokens: int = 0  # EOS and stop_token_ids are barred until this many tokens are out
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added logit
    repetition_penalty: float = 1.0  # HF/CTRL: seen tokens (prompt and output) divide/multiply
    presence_penalty: float = 0.0  # OpenAI: minus this once for each token already generated
    frequency_penalty: float = 0.0  # OpenAI: minus this times the token's count in the output
    guide: Guide | None = None  # structured output: a JSON schema, regex, choice or grammar

    def validate(self) -> None:
        """Raise `RequestError(INVALID_REQUEST)` naming the first bad field."""
        checks: list[tuple[bool, str, str]] = [
            (self.max_tokens >= 0, "max_tokens", f"must be >= 0, got {self.max_tokens}"),
            (self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0 or self.top_k == -1, "top_k", f"must be >= 0, got {self.top_k}"),
            (0 <= self.min_p <= 1, "min_p", f"must be in [0, 1], got {self.min_p}"),
            (1 <= self.n <= 16, "n", f"must be between 1 and 16, got {self.n}"),
            (
                self.logprobs is None or 0 <= self.logprobs <= 20,
                "logprobs",
                f"must be between 0 and 20, got {self.logprobs}",
            ),
            (
                self.prompt_logprobs is None or 0 <= self.prompt_logprobs <= 20,
                "prompt_logprobs",
                f"must be between 0 and 20, got {self.prompt_logprobs}",
            ),
            (len(self.stop) <= 8, "stop", f"at most 8 stop strings, got {len(self.stop)}"),
            (all(self.stop), "stop", "stop strings must not be empty"),
            (self.min_tokens >= 0, "min_tokens", f"must be >= 0, got {self.min_tokens}"),
            (
                self.min_tokens <= self.max_tokens,
                "min_tokens",
                f"must be <= max_tokens ({self.max_tokens}), got {self.min_tokens}",
            ),
            (
                0 < self.repetition_penalty <= 2,
                "repetition_penalty",
                f"must be in (0, 2], got {self.repetition_penalty}",
            ),
            (
                -2 <= self.presence_penalty <= 2,
                "presence_penalty",
                f"must be between -2 and 2, got {self.presence_penalty}",
            ),
            (
                -2 <= self.frequency_penalty <= 2,
                "frequency_penalty",
                f"must be between -2 and 2, got {self.frequency_penalty}",
            ),
            (
                len(self.logit_bias) <= 300,
                "logit_bias",
                f"at most 300 tokens, got {len(self.logit_bias)}",
            ),
            (
                all(-100 <= b <= 100 for b in self.logit_bias.values()),
                "logit_bias",
                "biases must be between -100 and 100",
            ),
        ]
        for ok, name, message in checks:
            if not ok:
                raise RequestError(ErrorCode.INVALID_REQUEST, f"{name} {message}", param=name)
        if self.guide is not None:
            self.guide.validate()

    def check_vocab(self, vocab_size: int) -> None:
        """Token ids the request names must exist: a clear 400, not an index error later."""
        for name, ids in (("logit_bias", self.logit_bias), ("stop_token_ids", self.stop_token_ids)):
            bad = [t for t in ids if not 0 <= t < vocab_size]
            if bad:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"{name} names token {bad[0]}, outside the vocabulary [0, {vocab_size})",
                    param=name,
                )

    @property
    def processes_logits(self) -> bool:
        """Whether any logits processor applies (else the raw logits are chosen from)."""
        return bool(
            self.min_tokens
            or self.logit_bias
            or self.repetition_penalty != 1.0
            or self.presence_penalty
            or self.frequency_penalty
        )

    @property
    def greedy(self) -> bool:
        """Temperature 0 means argmax."""
        return self.temperature == 0
