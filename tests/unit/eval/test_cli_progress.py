"""The CLI's error paths (no model needed) and progress reporting."""

from __future__ import annotations

import io
import json
from pathlib import Path

from typer.testing import CliRunner

from hanlin.eval.cli import app
from hanlin.eval.progress import Metrics, Progress


def _spec(tmp: Path, dataset: Path) -> Path:
    path = tmp / "er.yaml"
    path.write_text(f"""\
apiVersion: hanlin.dev/v1alpha1
kind: EvalRun
metadata: {{name: bad}}
spec:
  model: {{uri: "file://{tmp}/no-model"}}
  benchmarks:
    - {{name: mine, dataset: {{uri: "file://{dataset}", format: multiple-choice}}}}
  output: {{uri: "file://{tmp}/out"}}
""")
    return path


def test_bad_row_fails_before_loading_a_model(tmp_path: Path) -> None:
    data = tmp_path / "mc.jsonl"
    data.write_text(
        '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q2", "answer": 1}\n'
    )
    result = CliRunner().invoke(app, ["--spec", str(_spec(tmp_path, data)), "--no-bar"])
    assert result.exit_code == 2
    assert f"{data}:2: field 'choices' is missing" in result.output


def test_merge_before_any_shard_names_what_is_missing(tmp_path: Path) -> None:
    data = tmp_path / "mc.jsonl"
    data.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n')
    result = CliRunner().invoke(app, ["merge", "--spec", str(_spec(tmp_path, data))])
    assert result.exit_code == 2
    assert "1 samples have no result yet" in result.output


def test_progress_lines_bar_and_metrics() -> None:
    from prometheus_client import generate_latest

    out, bar = io.StringIO(), io.StringIO()
    metrics = Metrics.create()
    progress = Progress(total=10, skipped=4, out=out, bar=bar, metrics=metrics)
    progress.advance(2, "mmlu")
    progress.advance(4, "mmlu")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["done"], e["total"]) for e in events] == [(6, 10), (10, 10)]
    assert all(e["samplesPerSecond"] > 0 for e in events)
    assert "10/10 100.0%" in bar.getvalue() and bar.getvalue().endswith("\n")
    text = generate_latest(metrics.registry).decode()
    assert "hanlin_eval_samples_total 6.0" in text
    assert "hanlin_eval_samples_planned 10.0" in text
