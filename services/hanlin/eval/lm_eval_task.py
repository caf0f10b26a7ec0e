"""The same data as an lm-evaluation-harness task, to compare Hanlin's scores with its own.

Hanlin's multiple-choice JSONL (`question`, `choices`, `answer` index) and QA
JSONL (`question`, `answer`) map onto lm-eval's `multiple_choice` and
`generate_until` tasks with the prompts Hanlin uses (question, then each choice
with no delimiter; greedy generation until a newline, scored on the last
number as `hanlin.eval.scoring` does). Used by the parity test and the eval
benchmark; useful to anyone checking a number against lm-eval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

from hanlin.eval.scoring import NUMBER_RE

TaskKind = Literal["multiple-choice", "qa"]


def lm_eval_task(name: str, rows: Path, kind: TaskKind, max_new_tokens: int = 32) -> dict[str, Any]:
    """The lm-eval task config (as a dict) over the JSONL file `rows`."""
    task: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(rows)}},
        "test_split": "test",
        "doc_to_text": "question",
        "doc_to_target": "answer",
    }
    if kind == "multiple-choice":
        task |= {
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",
            "target_delimiter": "",
            "metric_list": [_metric("acc"), _metric("acc_norm")],
        }
    else:
        task |= {
            "output_type": "generate_until",
            "generation_kwargs": {
                "until": ["\n"],
                "max_gen_toks": max_new_tokens,
                "do_sample": False,
            },
            "filter_list": [
                {
                    "name": "last-number",
                    "filter": [
                        {
                            "function": "regex",
                            "regex_pattern": NUMBER_RE.pattern,
                            "group_select": -1,
                        },
                        {"function": "take_first"},
                    ],
                }
            ],
            "metric_list": [_metric("exact_match")],
        }
    return task


def write_lm_eval_task(
    directory: Path, name: str, rows: Path, kind: TaskKind, max_new_tokens: int = 32
) -> Path:
    """Write `<directory>/<name>.yaml` for lm-eval's `TaskManager(include_path=directory)`."""
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(lm_eval_task(name, rows, kind, max_new_tokens), sort_keys=False))
    return path


def _metric(name: str) -> dict[str, Any]:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}
