"""Structured output: generation held to a JSON schema, a regex, a list of choices or a grammar.

A `Guide` is what a request asks for (plain data: it crosses to the engine process
inside `SamplingParams`). The engine turns it into an llguidance matcher per
sequence (the Rust engine vLLM and SGLang also use): before each token the matcher
gives the set of tokens that keep the output inside the grammar, every other token's
logit becomes -inf, and the chosen token advances the matcher. When the grammar is
complete only end-of-sequence is allowed, or the matcher stops and the sequence
ends with `finish_reason` "stop". A sequence cut by `max_tokens` ends "length" with
the output incomplete, as OpenAI's does.

The server process validates a guide before the request is queued (no tokenizer
needed), so a bad schema or regex is a 400 naming the field it came from.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from hanlin.serve.errors import ErrorCode, RequestError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Kind = Literal["json", "regex", "choice", "grammar"]
KINDS: tuple[Kind, ...] = ("json", "regex", "choice", "grammar")


@dataclass(frozen=True)
class Guide:
    """A constraint on one request's output."""

    kind: Kind
    spec: str
    """JSON schema text, regex, JSON list of strings, or Lark/GBNF grammar text."""
    param: str = "response_format"
    """The request field it came from, named in errors."""

    @classmethod
    def of(cls, kind: str, value: Any, param: str = "guide") -> Guide:
        """A guide from a request field's value (a schema may come as an object).

        From Python: `SamplingParams(guide=Guide.of("json", schema))`; kinds are
        "json" (a JSON schema), "regex", "choice" (a list of strings) and "grammar"
        (Lark or GBNF).
        """
        if kind not in KINDS:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"{param}: unknown kind {kind!r}; one of {', '.join(KINDS)}",
                param,
            )
        if kind == "json":
            spec = value if isinstance(value, str) else json.dumps(value)
        elif kind == "choice":
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) and v for v in value)
            ):
                raise RequestError(
                    ErrorCode.INVALID_REQUEST,
                    f"{param} must be a non-empty list of non-empty strings",
                    param,
                )
            spec = json.dumps(value)
        else:
            if not isinstance(value, str) or not value:
                raise RequestError(
                    ErrorCode.INVALID_REQUEST, f"{param} must be a non-empty string", param
                )
            spec = value
        return cls(kind, spec, param)  # type: ignore[arg-type]

    def grammar(self) -> str:
        """The llguidance grammar; a malformed spec is a 400 naming `param`."""
        import llguidance

        try:
            if self.kind == "json":
                return str(llguidance.LLMatcher.grammar_from_json_schema(json.loads(self.spec)))
            return str(llguidance.grammar_from(self.kind, self.spec))
        except (ValueError, TypeError) as exc:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"{self.param}: {exc}", self.param
            ) from None

    def validate(self) -> None:
        """Raise a 400 naming `param` unless the grammar compiles."""
        import llguidance

        error = llguidance.LLMatcher.validate_grammar(self.grammar())
        if error:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"{self.param}: {error.strip()}", self.param
            )


def one_guide(asked: list[Guide]) -> Guide | None:
    """The one structured output a request asked for; asking two ways is a 400."""
    if len(asked) > 1:
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            "ask for one structured output: "
            + ", ".join(sorted({g.param for g in asked}))
            + " were given together",
            asked[1].param,
        )
    return asked[0] if asked else None


class GuidedDecoding:
    """The engine's side: one matcher per guided sequence, masks for a batch's rows."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos: set[int]) -> None:
        self._hf = tokenizer
        self.vocab_size = vocab_size
        self.eos = sorted(eos)
        self._tokenizer: Any = None  # built on the first guided request (~0.4 s)

    def _ll_tokenizer(self) -> Any:
        if self._tokenizer is None:
            import llguidance.hf

            self._tokenizer = llguidance.hf.from_tokenizer(
                self._hf, n_vocab=self.vocab_size, eos_token=self.eos or None
            )
        return self._tokenizer

    def matcher(self, guide: Guide) -> Any:
        """A fresh matcher for `guide` (it lives with its sequence, across preemptions).

        A grammar that compiles without the tokenizer but not with it is the request's
        fault: a `RequestError` naming the field, never an engine failure.
        """
        import llguidance

        try:
            m = llguidance.LLMatcher(self._ll_tokenizer(), guide.grammar())
        except (ValueError, TypeError, RuntimeError) as exc:
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"{guide.param}: {exc}", guide.param
            ) from None
        if m.is_error():
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"{guide.param}: {m.get_error()}", guide.param
            )
        return m

    def mask(self, matchers: list[Any], logits: torch.Tensor) -> None:
        """Set to -inf, in place, every logit a row's matcher forbids (None: row is free)."""
        import llguidance.torch as lt

        rows = [i for i, m in enumerate(matchers) if m is not None]
        if not rows:
            return
        bitmask = lt.allocate_token_bitmask(len(rows), self.vocab_size)
        for j, i in enumerate(rows):
            lt.fill_next_token_bitmask(matchers[i], bitmask, j)
        import torch

        index = torch.tensor(rows, dtype=torch.long, device=logits.device)
        picked = logits.index_select(0, index).float()
        lt.apply_token_bitmask_inplace(picked, bitmask.to(logits.device))
        logits.index_copy_(0, index, picked.to(logits.dtype))

    @staticmethod
    def advance(matcher: Any, token: int) -> bool:
        """Feed the chosen token; True when the grammar is complete (the sequence stops)."""
        if not matcher.consume_token(token):
            log.warning("guided token %d refused: %s", token, matcher.get_error())
            return True
        return bool(matcher.is_stopped())
