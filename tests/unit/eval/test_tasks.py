"""Tasks: built-ins, custom datasets, fixed-seed few-shot, version hashes, shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hanlin.eval.registry import BUILTINS
from hanlin.eval.results import Shard
from hanlin.eval.tasks import TaskError, build_task


def _write(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"file://{path}"


def test_builtins_load_and_have_expected_sizes() -> None:
    sizes = {name: len(build_task(name).rows) for name in BUILTINS}
    assert sizes == {"mmlu": 200, "date_understanding": 369, "arithmetic": 300}
    assert build_task("mmlu").mode == "ppl" and build_task("arithmetic").mode == "gen"


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(
        TaskError, match=r"benchmarks\[nope\]\.name: unknown benchmark 'nope'.*mmlu"
    ):
        build_task("nope")


def test_custom_multiple_choice_prompt_is_the_question_as_given(tmp_path: Path) -> None:
    uri = _write(tmp_path / "mc.jsonl", [
        {"question": f"Q{i}:", "choices": [" x", " y"], "answer": i % 2} for i in range(10)
    ])  # fmt: skip
    task = build_task("mine", dataset_uri=uri, dataset_format="multiple-choice")
    row = task.rows[3]
    assert task.prompt(row).plain() == "Q3:"
    assert task.continuations(row) == (" x", " y")


def test_fewshot_is_fixed_excluded_and_changes_the_version(tmp_path: Path) -> None:
    uri = _write(
        tmp_path / "qa.jsonl", [{"question": f"Q: {i}?\nA:", "answer": str(i)} for i in range(20)]
    )
    zero = build_task("qa", dataset_uri=uri, dataset_format="qa")
    two = build_task("qa", dataset_uri=uri, dataset_format="qa", shots=2)
    again = build_task("qa", dataset_uri=uri, dataset_format="qa", shots=2)
    assert [s.line for s in two.shots] == [s.line for s in again.shots]
    assert len(two.rows) == 18 and not {s.line for s in two.shots} & {r.line for r in two.rows}
    assert zero.version != two.version == again.version
    prompt = two.prompt(two.rows[0]).plain()
    s0, s1 = two.shots
    assert (
        prompt
        == f"{s0.question} {s0.answer}\n\n{s1.question} {s1.answer}\n\n{two.rows[0].question}"
    )


def test_bad_dataset_uri_and_metric(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="dataset.uri: cannot read"):
        build_task("x", dataset_uri=f"file://{tmp_path}/missing.jsonl", dataset_format="qa")
    uri = _write(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(
        TaskError, match=r"benchmarks\[x\]\.mode: ppl on a qa dataset only measures perplexity"
    ):
        build_task("x", dataset_uri=uri, dataset_format="qa", mode="ppl", metric="exactMatch")


def test_shards_partition_every_index() -> None:
    for n in (1, 2, 3, 7):
        for total in (0, 1, 5, 200):
            seen = [i for k in range(n) for i in Shard(k, n).take(total)]
            assert seen == list(range(total))
    with pytest.raises(ValueError, match="--shard"):
        Shard.parse("2/2")
