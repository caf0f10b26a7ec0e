"""Result log and report: resume-safe appends, idempotent merge, thresholds, table."""

from __future__ import annotations

import json
from pathlib import Path

from hanlin.eval.results import ResultLog, Shard, read_records
from hanlin.eval.runner import try_merge
from hanlin.eval.summary import build_report, check_thresholds, task_results
from hanlin.eval.tasks import build_task


def _records(task, correct: set[int]) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    out = []
    for i, row in enumerate(task.rows):
        hit = float(i in correct)
        out.append({
            "key": task.key(row), "benchmark": task.name, "line": row.line,
            "scores": {"accuracy": hit, "accuracyNorm": hit, "accuracyBytes": hit},
        })  # fmt: skip
    return out


def test_partial_line_is_skipped_and_appends_continue(tmp_path: Path) -> None:
    task = build_task("mmlu", limit=4)
    recs = _records(task, {0, 1})
    log = ResultLog(str(tmp_path), Shard(0, 1))
    log.append(recs[:2])
    assert log.path is not None
    with log.path.open("ab") as fh:  # a writer killed mid-line
        fh.write(json.dumps(recs[2])[:20].encode())
    assert set(read_records(str(tmp_path))) == {recs[0]["key"], recs[1]["key"]}
    log.append(recs[2:])
    assert set(read_records(str(tmp_path))) == {r["key"] for r in recs}


def test_merge_is_idempotent_and_independent_of_shard_files(tmp_path: Path) -> None:
    task = build_task("mmlu", limit=6)
    recs = _records(task, {0, 2, 3})
    one, two = tmp_path / "one", tmp_path / "two"
    ResultLog(str(one), Shard(0, 1)).append(recs)
    ResultLog(str(two), Shard(1, 2)).append(recs[3:])
    ResultLog(str(two), Shard(0, 2)).append(recs[:3])
    ResultLog(str(two), Shard(0, 2)).append(recs[:1])  # a duplicate changes nothing
    assert try_merge([task], str(two / "missing"), "m", None) is None
    first = try_merge([task], str(one), "m", {"mmlu/accuracy": ">=0.5"})
    again = try_merge([task], str(one), "m", {"mmlu/accuracy": ">=0.5"})
    other = try_merge([task], str(two), "m", {"mmlu/accuracy": ">=0.5"})
    assert first == again == other
    assert first is not None and first["passed"] is True
    assert (one / "results.json").read_bytes() == (two / "results.json").read_bytes()
    table = (one / "summary.md").read_text()
    assert f"| mmlu | {task.version} | accuracy | ppl | 50.00 |" in table


def test_thresholds() -> None:
    task = build_task("mmlu", limit=4)
    records = {r["key"]: r for r in _records(task, {0})}
    results = task_results(task, records)
    ok, detail = check_thresholds(results, {"mmlu/accuracy": ">=0.5"})
    assert not ok and detail["mmlu/accuracy"]["value"] == 0.25
    ok, detail = check_thresholds(results, {"mmlu/accuracy": "<0.3", "mmlu/accuracyNorm": "==0.25"})
    assert ok
    ok, detail = check_thresholds(results, {"mmlu/f1": ">=0"})
    assert not ok and "no such result" in detail["mmlu/f1"]["error"]
    report = build_report("m", [task], records, None)
    assert report["passed"] is True and report["summary"] == "mmlu/accuracy=0.25"
