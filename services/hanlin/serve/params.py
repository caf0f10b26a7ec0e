"""Sampling parameters of one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from hanlin.serve.errors import ErrorCode, RequestError


@dataclass
class SamplingParams:
    """How to pick tokens and when to stop; validated by `validate()`."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None  # top alternatives per generated token (0 = only the chosen)
    prompt_logprobs: int | None = None  # same for every prompt token (first is None)
    skip_special_tokens: bool = True

    def validate(self) -> None:
        """Raise `RequestError(INVALID_REQUEST)` naming the first bad field."""
        checks: list[tuple[bool, str, str]] = [
            (self.max_tokens >= 0, "max_tokens", f"must be >= 0, got {self.max_tokens}"),
            (self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0 or self.top_k == -1, "top_k", f"must be >= 0, got {self.top_k}"),
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
        ]
        for ok, name, message in checks:
            if not ok:
                raise RequestError(ErrorCode.INVALID_REQUEST, f"{name} {message}", param=name)

    @property
    def greedy(self) -> bool:
        """Temperature 0 means argmax."""
        return self.temperature == 0
