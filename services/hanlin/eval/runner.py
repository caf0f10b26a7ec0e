"""One evaluation worker: score this shard's samples, then merge if every shard is done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hanlin import storage
from hanlin.eval.backend import Backend, GenerateRequest, LoglikelihoodRequest
from hanlin.eval.datasets import Row
from hanlin.eval.progress import Progress
from hanlin.eval.results import ResultLog, Shard, read_records
from hanlin.eval.scoring import postprocess, score_choices, score_generation
from hanlin.eval.summary import build_report, missing_samples, report_json
from hanlin.eval.tasks import Task

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"


@dataclass(frozen=True)
class WorkerConfig:
    """What one worker does."""

    tasks: list[Task]
    output: str
    shard: Shard
    batch_size: int


def shard_rows(task: Task, shard: Shard) -> list[Row]:
    """This shard's rows of a task (every benchmark is split, so shards finish together)."""
    return [task.rows[i] for i in shard.take(len(task.rows))]


def planned(tasks: list[Task], shard: Shard) -> int:
    """Samples this shard owns."""
    return sum(len(shard_rows(t, shard)) for t in tasks)


def _score_chunk(
    backend: Backend, task: Task, rows: list[Row], shard: Shard
) -> list[dict[str, Any]]:
    base = [
        {
            "key": task.key(r),
            "benchmark": task.name,
            "version": task.version,
            "line": r.line,
            "mode": task.mode,
            "shard": f"{shard.index}/{shard.count}",
        }
        for r in rows
    ]
    if task.mode == "ppl":
        reqs = [LoglikelihoodRequest(task.prompt(r), task.continuations(r)) for r in rows]
        scored = backend.loglikelihoods(reqs, chat=task.chat)
        for rec, row, per in zip(base, rows, scored, strict=True):
            lls = [s.loglikelihood for s in per]
            rec["loglikelihoods"] = lls
            rec["tokens"] = [s.tokens for s in per]
            rec["scores"] = score_choices(lls, row.choices, row.gold) if row.choices else {}
        return base
    gens = [GenerateRequest(task.prompt(r), task.stop, task.max_new_tokens) for r in rows]
    texts = backend.generate(gens, chat=task.chat)
    for rec, row, text in zip(base, rows, texts, strict=True):
        extracted = postprocess(text, task.postprocess, len(row.choices))
        reference = task.reference(row)
        rec["prediction"] = text
        rec["extracted"] = extracted
        rec["reference"] = reference
        rec["scores"] = score_generation(extracted, reference, task.postprocess, task.metric)
    return base


def run_worker(backend: Backend, cfg: WorkerConfig, progress: Progress | None = None) -> int:
    """Score the shard's samples not already in the output; return how many were scored."""
    done = read_records(cfg.output)
    log = ResultLog(cfg.output, cfg.shard)
    todo: list[tuple[Task, list[Row]]] = []
    for task in cfg.tasks:
        mine = [r for r in shard_rows(task, cfg.shard) if task.key(r) not in done]
        # Longest first, so a batch holds prompts of similar length (little padding).
        mine.sort(key=lambda r: -len(r.question) - max((len(c) for c in r.choices), default=0))
        todo.append((task, mine))
    total = planned(cfg.tasks, cfg.shard)
    remaining = sum(len(rows) for _, rows in todo)
    if progress is None:
        progress = Progress(total=total, skipped=total - remaining)
    scored = 0
    for task, rows in todo:
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start : start + cfg.batch_size]
            log.append(_score_chunk(backend, task, chunk, cfg.shard))
            scored += len(chunk)
            progress.advance(len(chunk), task.name)
    return scored


def try_merge(
    cfg_tasks: list[Task], output: str, model: str, thresholds: dict[str, str] | None
) -> dict[str, Any] | None:
    """Write results.json and summary.md if every sample has a record; else None."""
    records = read_records(output)
    if missing_samples(cfg_tasks, records):
        return None
    report = build_report(model, cfg_tasks, records, thresholds)
    root = storage.parse_uri(output)
    storage.write_bytes(root.join(RESULTS_FILE), report_json(report))
    storage.write_bytes(root.join(SUMMARY_FILE), str(report["table"]).encode())
    return report
