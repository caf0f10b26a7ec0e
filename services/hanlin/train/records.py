"""Dataset readers: raw text, alpaca, OpenAI messages and XTuner conversations.

Every reader streams its file line by line (or paragraph by paragraph for
`.txt`), so a corpus larger than memory is fine, and turns each row into a
`Record`: raw text for pretraining, or chat turns with a per-turn loss flag for
SFT. A malformed row raises `DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("text", "alpaca", "messages", "conversation")
ROLES = ("system", "user", "assistant", "tool")


class DataError(ValueError):
    """A dataset row is malformed; the message says where and which field."""


@dataclass
class Turn:
    """One chat message; `loss` says whether its tokens are trained on."""

    role: str
    content: str
    loss: bool


@dataclass
class Record:
    """One document: `text` (pretraining) or `turns` (chat), and where it came from."""

    source: str
    line: int
    text: str | None = None
    turns: list[Turn] = field(default_factory=list)


def _err(path: Path, line: int, fieldname: str, why: str) -> DataError:
    return DataError(f"{path}:{line}: field {fieldname!r}: {why}")


def _str(row: dict[str, Any], key: str, path: Path, line: int, where: str = "") -> str:
    name = f"{where}{key}"
    if key not in row:
        raise _err(path, line, name, "missing")
    value = row[key]
    if not isinstance(value, str):
        raise _err(path, line, name, f"must be a string, got {type(value).__name__}")
    return value


def _text_row(row: dict[str, Any], path: Path, line: int) -> Record:
    return Record(str(path), line, text=_str(row, "text", path, line))


def _alpaca_row(row: dict[str, Any], path: Path, line: int) -> Record:
    instruction = _str(row, "instruction", path, line)
    extra = row.get("input") or ""
    if not isinstance(extra, str):
        raise _err(path, line, "input", f"must be a string, got {type(extra).__name__}")
    output = _str(row, "output", path, line)
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    turns = []
    if isinstance(row.get("system"), str) and row["system"]:
        turns.append(Turn("system", row["system"], False))
    turns += [Turn("user", prompt, False), Turn("assistant", output, True)]
    return Record(str(path), line, turns=turns)


def _messages_row(row: dict[str, Any], path: Path, line: int) -> Record:
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _err(path, line, "messages", "must be a non-empty list")
    turns = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]."
        if not isinstance(msg, dict):
            raise _err(path, line, f"messages[{i}]", "must be an object")
        role = _str(msg, "role", path, line, where)
        if role not in ROLES:
            raise _err(path, line, f"{where}role", f"must be one of {ROLES}, got {role!r}")
        content = _str(msg, "content", path, line, where)
        loss = msg.get("loss", role == "assistant")
        if not isinstance(loss, bool):
            raise _err(path, line, f"{where}loss", "must be true or false")
        if loss and role != "assistant":
            raise _err(path, line, f"{where}loss", "only assistant turns can carry loss")
        turns.append(Turn(role, content, loss))
    if not any(t.loss for t in turns):
        raise _err(path, line, "messages", "no assistant turn with loss: nothing to learn")
    return Record(str(path), line, turns=turns)


def _conversation_row(row: dict[str, Any], path: Path, line: int) -> Record:
    conversation = row.get("conversation")
    if not isinstance(conversation, list) or not conversation:
        raise _err(path, line, "conversation", "must be a non-empty list")
    turns = []
    for i, item in enumerate(conversation):
        where = f"conversation[{i}]."
        if not isinstance(item, dict):
            raise _err(path, line, f"conversation[{i}]", "must be an object")
        system = item.get("system")
        if system:
            if not isinstance(system, str):
                raise _err(path, line, f"{where}system", "must be a string")
            turns.append(Turn("system", system, False))
        turns.append(Turn("user", _str(item, "input", path, line, where), False))
        turns.append(Turn("assistant", _str(item, "output", path, line, where), True))
    return Record(str(path), line, turns=turns)


_ROW_READERS = {
    "text": _text_row,
    "alpaca": _alpaca_row,
    "messages": _messages_row,
    "conversation": _conversation_row,
}


def _paragraphs(path: Path) -> Iterator[Record]:
    """A `.txt` file: documents are separated by blank lines."""
    lines: list[str] = []
    start = 1
    with path.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                if not lines:
                    start = number
                lines.append(raw.rstrip("\n"))
            elif lines:
                yield Record(str(path), start, text="\n".join(lines))
                lines = []
    if lines:
        yield Record(str(path), start, text="\n".join(lines))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".json", ".txt"))
        if not found:
            raise DataError(f"{path}: no .jsonl, .json or .txt files")
        return found
    if not path.exists():
        raise DataError(f"{path}: no such file")
    return [path]


def read_records(path: Path, fmt: str) -> Iterator[Record]:
    """Stream the records of a file (or every data file under a directory)."""
    if fmt not in FORMATS:
        raise DataError(f"{path}: unknown format {fmt!r}; use one of {FORMATS}")
    for file in _files(path):
        if file.suffix == ".txt":
            if fmt != "text":
                raise DataError(f"{file}: a .txt file holds raw text; format must be 'text'")
            yield from _paragraphs(file)
            continue
        reader = _ROW_READERS[fmt]
        with file.open(encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise DataError(f"{file}:{number}: not valid JSON: {e.msg}") from e
                if not isinstance(row, dict):
                    raise DataError(f"{file}:{number}: a row must be a JSON object")
                yield reader(row, file, number)
