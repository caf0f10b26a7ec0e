"""Turn records into token ids and labels, with the model's own chat template.

Chat data is rendered by `tokenizer.apply_chat_template`, exactly as the
server renders a request, so a fine-tuned model sees at inference the text it
was trained on. Labels are the token ids for assistant turns flagged for loss
(including the template's end-of-turn tokens, so the model learns to stop) and
IGNORE everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hanlin.train.records import DataError, Record

IGNORE = -100


@dataclass
class Sample:
    """One tokenized document: ids and labels of equal length (IGNORE = no loss)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text: str = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    return text


def encode_chat(tokenizer: Any, record: Record) -> Sample:
    """Tokenize a chat record; only assistant turns with `loss` get labels."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise DataError(f"{record.source}:{record.line}: the tokenizer has no chat template")
    messages = [{"role": t.role, "content": t.content} for t in record.turns]
    full = _render(tokenizer, messages, False)
    # Character spans of the trained assistant turns: what the template adds after
    # the prompt (with its generation prompt) up to the end of that turn.
    spans: list[tuple[int, int]] = []
    for i, turn in enumerate(record.turns):
        if not turn.loss:
            continue
        start = len(_render(tokenizer, messages[:i], True))
        upto = _render(tokenizer, messages[: i + 1], False)
        if not full.startswith(upto):
            raise DataError(
                f"{record.source}:{record.line}: the chat template does not render turns "
                "as prefixes of the conversation; per-turn loss masking needs that"
            )
        spans.append((start, len(upto)))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    for k, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and any(s <= a < e for s, e in spans):
            labels[k] = ids[k]
    return Sample(ids, labels)


def encode_text(tokenizer: Any, record: Record) -> Sample:
    """Tokenize raw text for (continued) pretraining; every token is a target."""
    ids: list[int] = list(tokenizer(record.text or "", add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return Sample(ids, list(ids))


def encode(tokenizer: Any, record: Record) -> Sample:
    """Tokenize a record of either kind."""
    if record.text is not None:
        return encode_text(tokenizer, record)
    return encode_chat(tokenizer, record)
