"""Incremental detokenization and stop-string handling for one sequence."""

from __future__ import annotations

from typing import Any

# Tokens of context decoded before the new ones, so word-initial spaces and
# multi-byte characters render the same as in a full decode.
_CONTEXT = 5


class Detokenizer:
    """Turns each new token into the text it adds, holding back what a stop string may claim."""

    def __init__(self, tokenizer: Any, prompt_ids: list[int], stop: list[str], skip_special: bool):
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-_CONTEXT:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.stop = stop
        self.skip_special = skip_special
        self.text = ""
        self.sent = 0
        self.holdback = max((len(s) for s in stop), default=1) - 1

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=self.skip_special))

    def add(self, token: int) -> bool:
        """Append a token; return True when a stop string was reached (text is truncated)."""
        self.ids.append(token)
        before = len(self.text)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
        if self.stop:
            # A stop string can only end inside the newly added text (or straddle into it).
            window_start = max(0, before - self.holdback)
            hits = [i for s in self.stop if (i := self.text.find(s, window_start)) >= 0]
            if hits:
                self.text = self.text[: min(hits)]
                return True
        return False

    def delta(self, finished: bool) -> str:
        """Text not yet handed out; while running, keep back a possible stop-string prefix."""
        end = len(self.text) if finished or not self.stop else len(self.text) - self.holdback
        end = max(end, self.sent)
        out = self.text[self.sent : end]
        self.sent = end
        return out
