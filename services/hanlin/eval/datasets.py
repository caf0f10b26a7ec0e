"""Evaluation rows: reading and checking the two JSONL formats.

`multiple-choice`: `{"question": str, "choices": [str, ...], "answer": int | "B"}`.
`qa`: `{"question": str, "answer": str | number}`.
Every problem is reported as `file:line: field: what is wrong`, because the
user's fix is always in one row of one file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

DatasetFormat = Literal["multiple-choice", "qa"]
FORMATS: tuple[DatasetFormat, ...] = ("multiple-choice", "qa")


class DatasetError(ValueError):
    """A dataset row is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class Row:
    """One evaluation item, as read from the file (line is 1-based)."""

    line: int
    question: str
    choices: tuple[str, ...]
    """Empty for qa rows."""
    answer: str
    """The reference answer text: the gold choice for multiple-choice rows."""
    gold: int
    """Index of the gold choice; -1 for qa rows."""


def _letter_index(value: str, n: int) -> int | None:
    text = value.strip().upper()
    if len(text) == 1 and "A" <= text <= "Z" and ord(text) - ord("A") < n:
        return ord(text) - ord("A")
    return None


def _parse_row(item: Any, fmt: DatasetFormat, where: str) -> tuple[str, tuple[str, ...], str, int]:
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(item).__name__}")
    question = item.get("question")
    if question is None:
        raise DatasetError(f"{where}: field 'question' is missing")
    if not isinstance(question, str):
        raise DatasetError(f"{where}: field 'question' must be a string")
    if "answer" not in item:
        raise DatasetError(f"{where}: field 'answer' is missing")
    answer = item["answer"]
    if fmt == "qa":
        if isinstance(answer, bool) or not isinstance(answer, str | int | float):
            raise DatasetError(f"{where}: field 'answer' must be a string or a number")
        return question, (), str(answer), -1
    choices = item.get("choices")
    if choices is None:
        raise DatasetError(f"{where}: field 'choices' is missing")
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) for c in choices)
    ):
        raise DatasetError(f"{where}: field 'choices' must be a list of at least two strings")
    if isinstance(answer, bool):
        raise DatasetError(f"{where}: field 'answer' must be a choice index or letter")
    if isinstance(answer, int):
        gold = answer if 0 <= answer < len(choices) else None
    elif isinstance(answer, str):
        gold = _letter_index(answer, len(choices))
    else:
        gold = None
    if gold is None:
        raise DatasetError(
            f"{where}: field 'answer' must be an index 0..{len(choices) - 1} or a letter "
            f"A..{chr(ord('A') + len(choices) - 1)}, got {answer!r}"
        )
    return question, tuple(choices), choices[gold], gold


def parse_rows(text: str, fmt: DatasetFormat, source: str) -> list[Row]:
    """Parse JSONL text in `fmt`; `source` names the file in errors."""
    if fmt not in FORMATS:
        raise DatasetError(f"{source}: format must be one of {FORMATS}, got {fmt!r}")
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{where}: not valid JSON: {err.msg}") from None
        question, choices, answer, gold = _parse_row(item, fmt, where)
        rows.append(Row(number, question, choices, answer, gold))
    if not rows:
        raise DatasetError(f"{source}: no rows")
    return rows
