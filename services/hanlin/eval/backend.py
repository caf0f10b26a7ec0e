"""What a model backend must do for the evaluator: score continuations, generate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hanlin.eval.tasks import Prompt


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score each continuation after the same prompt."""

    prompt: Prompt
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class ContinuationScore:
    """Sum of a continuation's token log-probs and its token count."""

    loglikelihood: float
    tokens: int


@dataclass(frozen=True)
class GenerateRequest:
    """Generate greedily after the prompt until a stop string or the token limit."""

    prompt: Prompt
    stop: tuple[str, ...]
    max_new_tokens: int


class Backend(Protocol):
    """A model under test: a local checkpoint or an OpenAI-compatible endpoint."""

    name: str
    """The model's name in the summary table."""

    def loglikelihoods(
        self, requests: list[LoglikelihoodRequest], chat: bool
    ) -> list[list[ContinuationScore]]:
        """One score per continuation, per request, in order."""
        ...

    def generate(self, requests: list[GenerateRequest], chat: bool) -> list[str]:
        """The generated text per request, cut at the first stop string."""
        ...

    def close(self) -> None:
        """Release connections or memory."""
        ...


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Text before the first occurrence of any stop string (each applied in turn)."""
    for term in stop:
        if term:
            text = text.split(term, 1)[0]
    return text
