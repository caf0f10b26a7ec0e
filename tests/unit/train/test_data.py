"""Readers, chat-template label masking and packing."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_fixtures import write_jsonl

from hanlin.train.pipeline import Source, collate, mixed_samples, pack, unpacked
from hanlin.train.records import DataError, read_records
from hanlin.train.tokenize import IGNORE, Sample, encode
from hanlin.train.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return byte_tokenizer()


def _trained_text(tok, sample: Sample) -> str:  # type: ignore[no-untyped-def]
    return tok.decode(
        [i for i, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE]
    )


def test_formats_become_the_same_turns(tmp_path: Path) -> None:
    alpaca = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"instruction": "Add", "input": "2+2", "output": "4"},
            {"instruction": "Hi", "output": "Hello"},
        ],
    )
    conv = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {
                "conversation": [
                    {"system": "Be brief.", "input": "Q1", "output": "A1"},
                    {"input": "Q2", "output": "A2"},
                ]
            }
        ],
    )
    text = tmp_path / "t.txt"
    text.write_text("first doc\nline two\n\n\nsecond doc\n")
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{"text": "hello"}])

    a = list(read_records(alpaca, "alpaca"))
    assert [(t.role, t.content, t.loss) for t in a[0].turns] == [
        ("user", "Add\n\n2+2", False),
        ("assistant", "4", True),
    ]
    c = list(read_records(conv, "conversation"))[0]
    assert [t.role for t in c.turns] == ["system", "user", "assistant", "user", "assistant"]
    t = list(read_records(text, "text"))
    assert [(r.text, r.line) for r in t] == [("first doc\nline two", 1), ("second doc", 5)]
    assert [r.text for r in read_records(jsonl, "text")] == ["hello"]


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        (
            "messages",
            {"messages": [{"role": "user"}]},
            r"bad\.jsonl:2: field 'messages\[0\]\.content': missing",
        ),
        (
            "messages",
            {"messages": [{"role": "bot", "content": "x"}]},
            r":2: field 'messages\[0\]\.role': must be one of",
        ),
        (
            "messages",
            {
                "messages": [
                    {"role": "user", "content": "q", "loss": True},
                    {"role": "assistant", "content": "a"},
                ]
            },
            r":2: field 'messages\[0\]\.loss': only assistant",
        ),
        (
            "alpaca",
            {"instruction": "x", "output": 3},
            r":2: field 'output': must be a string, got int",
        ),
        (
            "conversation",
            {"conversation": [{"output": "o"}]},
            r":2: field 'conversation\[0\]\.input': missing",
        ),
        ("text", {"txt": "typo"}, r":2: field 'text': missing"),
    ],
)
def test_bad_rows_name_file_line_and_field(
    tmp_path: Path, fmt: str, row: dict, message: str
) -> None:
    good = {
        "messages": {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        },
        "alpaca": {"instruction": "i", "output": "o"},
        "conversation": {"conversation": [{"input": "i", "output": "o"}]},
        "text": {"text": "t"},
    }[fmt]
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError, match=message):
        list(read_records(path, fmt))


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DataError, match=r"x\.jsonl:2: not valid JSON"):
        list(read_records(path, "text"))


def test_sft_labels_cover_only_trained_assistant_turns(tok) -> None:  # type: ignore[no-untyped-def]
    from hanlin.train.records import Record, Turn

    record = Record(
        "mem",
        1,
        turns=[
            Turn("system", "sys", False),
            Turn("user", "first?", False),
            Turn("assistant", "skip me", False),  # a per-turn loss flag set to false
            Turn("user", "second?", False),
            Turn("assistant", "learn me", True),
        ],
    )
    sample = encode(tok, record)
    rendered = tok.apply_chat_template(
        [{"role": t.role, "content": t.content} for t in record.turns], tokenize=False
    )
    assert tok.decode(sample.input_ids) == rendered  # the server's exact rendering
    assert _trained_text(tok, sample) == "learn me<|im_end|>\n"
    # Every position up to the final assistant header is masked.
    header_end = len(tok(rendered[: rendered.rindex("learn me")])["input_ids"])
    assert all(lab == IGNORE for lab in sample.labels[:header_end])
    assert all(lab != IGNORE for lab in sample.labels[header_end:])


def test_text_samples_train_every_token_and_end_with_eos(tok) -> None:  # type: ignore[no-untyped-def]
    from hanlin.train.records import Record

    s = encode(tok, Record("t", 1, text="abc"))
    assert s.input_ids == s.labels and s.input_ids[-1] == tok.eos_token_id and len(s) == 4


def test_packing_resets_positions_and_masks_document_starts() -> None:
    docs = [
        Sample([1, 2, 3], [1, 2, 3]),
        Sample([4, 5], [4, 5]),
        Sample([6, 7, 8, 9], [6, 7, 8, 9]),
    ]
    rows = list(pack(docs, seq_len=6, split=True))
    assert [r.input_ids for r in rows] == [[1, 2, 3, 4, 5, 6], [7, 8, 9]]
    assert rows[0].position_ids == [0, 1, 2, 0, 1, 0]
    assert rows[0].labels == [IGNORE, 2, 3, IGNORE, 5, IGNORE]
    assert rows[1].position_ids == [0, 1, 2] and rows[1].labels == [IGNORE, 8, 9]
    # Chat documents are never split: a row is closed early instead.
    rows = list(pack(docs, seq_len=6, split=False))
    assert [r.input_ids for r in rows] == [[1, 2, 3, 4, 5], [6, 7, 8, 9]]
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist()[1] == [6, 7, 8, 9, 0]
    assert batch["labels"].tolist()[1][-1] == IGNORE
    assert batch["position_ids"].tolist()[1] == [0, 1, 2, 3, 0]
    assert [r.input_ids for r in unpacked(docs, 3)] == [[1, 2, 3], [4, 5], [6, 7, 8]]


def test_mixing_follows_weights_and_is_seeded(tmp_path: Path, tok) -> None:  # type: ignore[no-untyped-def]
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"a{i}"} for i in range(30)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": f"b{i}"} for i in range(30)])
    sources = [Source(a, "text", 2.0), Source(b, "text", 1.0)]
    first = [tok.decode(s.input_ids[:1]) for s in mixed_samples(sources, tok, seed=1, epoch=0)]
    again = [tok.decode(s.input_ids[:1]) for s in mixed_samples(sources, tok, seed=1, epoch=0)]
    other = [tok.decode(s.input_ids[:1]) for s in mixed_samples(sources, tok, seed=1, epoch=1)]
    assert first == again and first != other and sorted(first) == sorted(other)
    assert len(first) == 60  # every document of both, once per epoch
