"""From an EvalRun's `benchmarks[]` entry to a task: rows, prompts, metrics, version.

Prompts: the context of a row is its question exactly as given, after the
few-shot examples; in ppl mode each choice is its continuation, appended with
no separator (so the data decides the spacing, as with MMLU's " A").
Few-shot examples are one fixed set per benchmark drawn with a fixed seed and
left out of the scored rows, so every row sees the same prefix (OpenCompass's
fixed-k retriever) and no row is shown its own answer.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from hanlin.eval.datasets import DatasetFormat, Row, parse_rows
from hanlin.eval.registry import EvalMode, PostProcess, builtin

FEWSHOT_SEED = 1234
FEWSHOT_DELIMITER = "\n\n"
DEFAULT_STOP = ("\n",)


class TaskError(ValueError):
    """A benchmark entry cannot be turned into a task; the message names the field."""


@dataclass(frozen=True)
class Prompt:
    """The few-shot pairs and the question; rendered plain or through a chat template."""

    shots: tuple[tuple[str, str], ...]
    question: str
    answer_delimiter: str

    def plain(self) -> str:
        """Few-shot examples then the question, as one completion prompt."""
        parts = [q + self.answer_delimiter + a for q, a in self.shots]
        return FEWSHOT_DELIMITER.join([*parts, self.question])

    def messages(self) -> list[dict[str, str]]:
        """Chat messages: each example as a user/assistant turn, then the question."""
        out: list[dict[str, str]] = []
        for q, a in self.shots:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a.strip()}]
        out.append({"role": "user", "content": self.question})
        return out


@dataclass(frozen=True)
class Task:
    """One benchmark ready to run."""

    name: str
    mode: EvalMode
    format: DatasetFormat
    source: str
    rows: list[Row]
    """The scored rows, in file order (few-shot rows removed, limit applied)."""
    shots: list[Row]
    postprocess: PostProcess
    metric: str
    """The headline metric (also used for thresholds): accuracy, exactMatch, f1 or perplexity."""
    version: str
    """A short hash of the data and every prompt setting (the summary's version column)."""
    chat: bool = False
    stop: tuple[str, ...] = DEFAULT_STOP
    max_new_tokens: int = 256
    extra: dict[str, str] = field(default_factory=dict)

    def prompt(self, row: Row) -> Prompt:
        """The prompt of one row."""
        delim = "" if self.format == "multiple-choice" else " "
        shots = tuple((s.question, s.answer) for s in self.shots)
        return Prompt(shots, row.question, delim)

    def continuations(self, row: Row) -> tuple[str, ...]:
        """What ppl mode scores after the context."""
        if self.format == "multiple-choice":
            return row.choices
        return (" " + row.answer,)

    def reference(self, row: Row) -> str:
        """What gen mode compares against (the gold choice without its spacing)."""
        return row.answer.strip()

    def key(self, row: Row) -> str:
        """Stable identity of a sample across restarts and shards."""
        return f"{self.name}/{self.version}/{row.line}"


def _read_dataset(uri: str) -> tuple[bytes, str]:
    from hanlin import storage

    try:
        return storage.read_bytes(uri), uri
    except storage.StorageError as err:
        raise TaskError(f"dataset.uri: cannot read {uri}: {err}") from None


def _metrics_for(fmt: DatasetFormat, mode: EvalMode, metric: str | None) -> str:
    if metric is not None:
        if metric == "perplexity" and mode != "ppl":
            raise TaskError("metric: perplexity needs mode ppl")
        if metric in ("exactMatch", "f1") and mode != "gen":
            raise TaskError(f"metric: {metric} needs mode gen")
        return metric
    if fmt == "multiple-choice":
        return "accuracy"
    return "exactMatch" if mode == "gen" else "perplexity"


def build_task(
    name: str,
    *,
    mode: EvalMode | None = None,
    shots: int = 0,
    limit: int | None = None,
    dataset_uri: str | None = None,
    dataset_format: DatasetFormat | None = None,
    metric: str | None = None,
    chat: bool = False,
    max_new_tokens: int = 256,
) -> Task:
    """Resolve one benchmark (built-in by name, or a custom dataset) into a Task."""
    postprocess: PostProcess
    if dataset_uri is not None:
        if dataset_format is None:
            raise TaskError(f"benchmarks[{name}].dataset.format is required")
        data, source = _read_dataset(dataset_uri)
        fmt = dataset_format
        postprocess = "first-line"
        default_mode: EvalMode = "ppl" if fmt == "multiple-choice" else "gen"
    else:
        try:
            spec = builtin(name)
        except KeyError as err:
            raise TaskError(f"benchmarks[{name}].name: {err.args[0]}") from None
        data, source = spec.path.read_bytes(), f"{spec.name} ({spec.file})"
        fmt, postprocess, default_mode = spec.format, spec.postprocess, spec.default_mode
    chosen = mode or default_mode
    if chosen == "ppl" and fmt == "qa" and metric not in (None, "perplexity"):
        raise TaskError(f"benchmarks[{name}].mode: ppl on a qa dataset only measures perplexity")
    try:
        headline = _metrics_for(fmt, chosen, metric)
    except TaskError as err:
        raise TaskError(f"benchmarks[{name}].{err}") from None
    all_rows = parse_rows(data.decode("utf-8"), fmt, source)
    if shots >= len(all_rows):
        raise TaskError(f"benchmarks[{name}].shots: {shots} >= the {len(all_rows)} rows")
    picked = sorted(random.Random(FEWSHOT_SEED).sample(range(len(all_rows)), shots))
    shot_rows = [all_rows[i] for i in picked]
    rows = [r for i, r in enumerate(all_rows) if i not in set(picked)]
    if limit is not None:
        rows = rows[:limit]
    stop = DEFAULT_STOP if not chat else ()
    settings = {
        "data": hashlib.sha256(data).hexdigest(),
        "mode": chosen,
        "shots": [r.line for r in shot_rows],
        "chat": chat,
        "stop": list(stop),
        "maxNewTokens": max_new_tokens if chosen == "gen" else None,
        "postprocess": postprocess if chosen == "gen" else None,
        "metric": headline,
    }
    version = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6]
    return Task(
        name=name,
        mode=chosen,
        format=fmt,
        source=source,
        rows=rows,
        shots=shot_rows,
        postprocess=postprocess,
        metric=headline,
        version=version,
        chat=chat,
        stop=stop,
        max_new_tokens=max_new_tokens,
    )


def local_dataset_uri(path: Path) -> str:
    """A file:// URI for a local dataset path."""
    return f"file://{path.absolute()}"
