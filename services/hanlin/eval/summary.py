"""Merging per-sample records into the report: results.json and summary.md.

The summary is a pure function of the tasks and the set of sample records, so
merging shards in any order, or twice, writes the same files.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hanlin.eval.scoring import mean_and_stderr
from hanlin.eval.tasks import Task

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}
PPL_METRICS = ("accuracy", "accuracyNorm", "accuracyBytes")


class IncompleteError(RuntimeError):
    """Some samples have no record yet (a shard has not finished)."""


@dataclass(frozen=True)
class Result:
    """One number of the report."""

    benchmark: str
    metric: str
    value: float
    samples: int
    mode: str
    version: str
    stderr: float | None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase, as in EvalRun status.results)."""
        return {
            "benchmark": self.benchmark,
            "metric": self.metric,
            "value": self.value,
            "samples": self.samples,
            "stderr": self.stderr,
            "mode": self.mode,
        }


def missing_samples(tasks: list[Task], records: dict[str, dict[str, Any]]) -> int:
    """How many samples of `tasks` have no record."""
    return sum(1 for t in tasks for r in t.rows if t.key(r) not in records)


def task_results(task: Task, records: dict[str, dict[str, Any]]) -> list[Result]:
    """The metrics of one task from its sample records (all must be present)."""
    recs = [records[task.key(r)] for r in task.rows if task.key(r) in records]
    if len(recs) != len(task.rows):
        raise IncompleteError(
            f"{task.name}: {len(task.rows) - len(recs)} samples have no result yet"
        )
    names: tuple[str, ...]
    if task.metric == "perplexity":
        total_ll = sum(float(r["loglikelihoods"][0]) for r in recs)
        total_tokens = sum(int(r["tokens"][0]) for r in recs)
        value = math.exp(-total_ll / max(total_tokens, 1))
        return [Result(task.name, "perplexity", value, len(recs), task.mode, task.version, None)]
    names = PPL_METRICS if task.mode == "ppl" else (task.metric,)
    out = []
    for name in names:
        value, stderr = mean_and_stderr([float(r["scores"][name]) for r in recs])
        out.append(Result(task.name, name, value, len(recs), task.mode, task.version, stderr))
    return out


def check_thresholds(
    results: list[Result], thresholds: dict[str, str]
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """(every threshold holds, per-threshold detail); an unknown metric fails its threshold."""
    from hanlin.api.eval_run import parse_threshold

    values = {f"{r.benchmark}/{r.metric}": r.value for r in results}
    detail: dict[str, dict[str, Any]] = {}
    for key, condition in sorted(thresholds.items()):
        op, bound = parse_threshold(condition)
        value = values.get(key)
        held = value is not None and _OPS[op](value, bound)
        detail[key] = {"condition": condition, "value": value, "passed": held}
        if value is None:
            known = ", ".join(sorted(values))
            detail[key]["error"] = f"no such result; the results are {known}"
    return all(d["passed"] for d in detail.values()), detail


def _cell(metric: str, value: float) -> str:
    # Percentages like OpenCompass's tables, except perplexity which is a ratio.
    return f"{value:.2f}" if metric == "perplexity" else f"{value * 100:.2f}"


def markdown_table(model: str, results: list[Result]) -> str:
    """dataset | version | metric | mode | <model>, one row per metric."""
    lines = [
        f"| dataset | version | metric | mode | {model} |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.benchmark} | {r.version} | {r.metric} | {r.mode} | {_cell(r.metric, r.value)} |"
        )
    return "\n".join(lines) + "\n"


def build_report(
    model: str,
    tasks: list[Task],
    records: dict[str, dict[str, Any]],
    thresholds: dict[str, str] | None,
) -> dict[str, Any]:
    """The results.json document (IncompleteError if a sample is missing)."""
    results = [res for t in tasks for res in task_results(t, records)]
    passed, detail = check_thresholds(results, thresholds or {})
    headline = [
        r for r in results if r.metric in {t.metric for t in tasks if t.name == r.benchmark}
    ]
    return {
        "model": model,
        "results": [r.to_dict() for r in results],
        "passed": passed,
        "thresholds": detail,
        "summary": " ".join(f"{r.benchmark}/{r.metric}={r.value:.4g}" for r in headline),
        "versions": {t.name: t.version for t in tasks},
        "table": markdown_table(model, results),
    }


def report_json(report: dict[str, Any]) -> bytes:
    """Stable bytes for results.json."""
    return (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
