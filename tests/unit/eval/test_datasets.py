"""Dataset rows: both formats, and errors that name file, line and field."""

from __future__ import annotations

import json

import pytest

from hanlin.eval.datasets import DatasetError, parse_rows


def _jsonl(*items: object) -> str:
    return "".join(json.dumps(i) + "\n" for i in items)


def test_multiple_choice_accepts_index_and_letter() -> None:
    text = _jsonl(
        {"question": "Q1", "choices": [" a", " b", " c"], "answer": 2},
        {"question": "Q2", "choices": [" a", " b"], "answer": "b"},
    )
    rows = parse_rows(text, "multiple-choice", "mc.jsonl")
    assert [(r.line, r.gold, r.answer) for r in rows] == [(1, 2, " c"), (2, 1, " b")]


def test_blank_lines_keep_file_line_numbers() -> None:
    text = "\n" + _jsonl({"question": "2+2", "answer": 4})
    rows = parse_rows(text, "qa", "qa.jsonl")
    assert rows[0].line == 2 and rows[0].answer == "4" and rows[0].gold == -1


@pytest.mark.parametrize(
    ("item", "fmt", "message"),
    [
        (
            {"choices": ["a", "b"], "answer": 0},
            "multiple-choice",
            "mc.jsonl:3: field 'question' is missing",
        ),
        (
            {"question": "q", "answer": 0},
            "multiple-choice",
            "mc.jsonl:3: field 'choices' is missing",
        ),
        (
            {"question": "q", "choices": ["a", "b"]},
            "multiple-choice",
            "mc.jsonl:3: field 'answer' is missing",
        ),
        (
            {"question": "q", "choices": ["a", "b"], "answer": 5},
            "multiple-choice",
            "mc.jsonl:3: field 'answer' must be an index 0..1",
        ),
        (
            {"question": "q", "choices": ["a", "b"], "answer": "C"},
            "multiple-choice",
            "mc.jsonl:3: field 'answer' must be an index",
        ),
        (
            {"question": "q", "choices": ["only"], "answer": 0},
            "multiple-choice",
            "mc.jsonl:3: field 'choices' must be a list of at least two",
        ),
        ({"question": 7, "answer": "x"}, "qa", "mc.jsonl:3: field 'question' must be a string"),
        (
            {"question": "q", "answer": None},
            "qa",
            "mc.jsonl:3: field 'answer' must be a string or a number",
        ),
    ],
)
def test_bad_row_names_file_line_and_field(item: dict[str, object], fmt: str, message: str) -> None:
    good = {"question": "ok", "choices": ["a", "b"], "answer": 0}
    text = _jsonl(good, good, item)
    with pytest.raises(DatasetError) as err:
        parse_rows(text, fmt, "mc.jsonl")  # type: ignore[arg-type]
    assert str(err.value).startswith(message)


def test_invalid_json_and_empty_file() -> None:
    with pytest.raises(DatasetError, match=r"^d.jsonl:1: not valid JSON"):
        parse_rows("{oops\n", "qa", "d.jsonl")
    with pytest.raises(DatasetError, match="no rows"):
        parse_rows("\n\n", "qa", "d.jsonl")
