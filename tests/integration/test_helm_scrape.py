"""Every series the dashboards and alerts use is exposed by the running workloads.

`test_helm_promql` checks that every expression names only contract series; this
scrapes a real `hanlin serve` and a real `hanlin agent` (after one request each),
a real `hanlin train` (a tiny Llama from a config) and a real `hanlin eval` (the
small model on MMLU) while they work, and requires every series of theirs that
the chart queries to be in their /metrics. The operator's are scraped in
test_helm_rbac. Train and eval get a step budget they never reach: each is
scraped after it has reported progress (its metrics are set before the line is
printed), then stopped, so no timing decides what the scrape sees.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_helm_promql import promql_expressions, series_names

from hanlin.dev.fixtures import hanlin_server
from hanlin.dev.processes import free_port
from hanlin.telemetry.contract import METRICS

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)


def exposed_series(text: str) -> set[str]:
    """Series names a Prometheus scrape of `text` yields (families with no samples count)."""
    out: set[str] = set()
    for name, kind in _TYPE.findall(text):
        if kind == "counter":  # the text format names the family with its _total suffix
            base = name.removesuffix("_total")
            out |= {f"{base}_total", f"{base}_created"}
        elif kind == "histogram":
            out |= {f"{name}{s}" for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            out.add(name)
    out |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}
    return out


def samples(text: str) -> dict[str, float]:
    """Unlabelled samples of a scrape: series name -> value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line[:1].isalpha() and "{" not in name:
            out[name] = float(value)
    return out


def queried_by_module(prefix: str) -> set[str]:
    """The series of `prefix` modules' metrics that some alert or dashboard names."""
    named = set().union(*(series_names(e) for e in promql_expressions()))
    return {s for m in METRICS if m.module.startswith(prefix) for s in m.series() if s in named}


@pytest.fixture(scope="module")
def servers(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("scrape")
    env = {k: v for k, v in os.environ.items() if k != "HANLIN_API_KEY"}
    serve_args = ["serve", "--model", str(model_dir), "--served-model-name", "smol"]
    with hanlin_server(serve_args, logs / "serve.log", env=env) as serve:
        agent_args = [
            "agent", "--llm", f"{serve}/v1", "--model", "smol",
            "--strategy", "react", "--tool", "calculator", "--max-steps", "1",
        ]  # fmt: skip
        with hanlin_server(agent_args, logs / "agent.log", env=env) as agent:
            yield serve, agent


def test_serving_exposes_every_series_the_chart_queries(servers: tuple[str, str]) -> None:
    serve, _ = servers
    body = {"model": "smol", "prompt": "1, 2, 3,", "max_tokens": 2, "temperature": 0}
    assert httpx.post(f"{serve}/v1/completions", json=body, timeout=120).status_code == 200
    wanted = queried_by_module("hanlin.serve")
    assert "hanlin_time_to_first_token_seconds_bucket" in wanted
    missing = wanted - exposed_series(httpx.get(f"{serve}/metrics", timeout=10).text)
    assert not missing, f"queried by the chart but not exposed by hanlin serve: {sorted(missing)}"


def test_agent_exposes_every_series_the_chart_queries(servers: tuple[str, str]) -> None:
    _, agent = servers
    reply = httpx.post(f"{agent}/v1/runs", json={"task": "What is 2 + 3?"}, timeout=300)
    assert reply.status_code == 200 and reply.json()["status"] in {"succeeded", "failed"}
    wanted = queried_by_module("hanlin.agent")
    assert wanted, "the chart should chart the agents"
    missing = wanted - exposed_series(httpx.get(f"{agent}/metrics", timeout=10).text)
    assert not missing, f"queried by the chart but not exposed by hanlin agent: {sorted(missing)}"


def _scrape_while_running(
    args: list[str], log: Path, ready: Any, timeout: float = 120
) -> tuple[str, list[dict[str, Any]]]:
    """Start `hanlin ARGS` serving /metrics, read its JSON lines until `ready(line)`, scrape, stop it."""
    port = free_port()
    env = {**os.environ, "HANLIN_METRICS_HOST": "127.0.0.1", "HANLIN_METRICS_PORT": str(port)}
    cmd = [sys.executable, "-m", "hanlin.cli", *args]
    lines: list[dict[str, Any]] = []
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            if raw.startswith("{"):
                lines.append(json.loads(raw))
                if ready(lines[-1]):
                    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text, lines
        raise AssertionError(
            f"exited ({proc.wait()}) before it was ready: {log.read_text()[-3000:]}"
        )
    finally:
        proc.kill()
        proc.wait(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()


def test_training_exposes_every_series_the_chart_queries(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": f"Count to {i}."},
                      {"role": "assistant", "content": " ".join(map(str, range(i)))}]}
        for i in range(1, 9)
    ]  # fmt: skip
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "scrape"},
        "spec": {
            "method": "pretrain",
            "model": {"config": {
                "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 259,
            }},
            "data": [{"uri": f"file://{data}", "format": "messages"}],
            "hyperparameters": {"maxSteps": 100_000, "batchSize": 2, "seqLen": 32},
            "checkpoint": {"everySteps": 2},
            "output": {"uri": f"file://{tmp_path}/out"},
        },
    }  # fmt: skip
    (tmp_path / "job.yaml").write_text(json.dumps(spec))
    body, lines = _scrape_while_running(
        ["train", "--spec", str(tmp_path / "job.yaml")],
        tmp_path / "train.log",
        lambda line: line.get("step", 0) >= 3,
    )
    wanted = queried_by_module("hanlin.train")
    assert {"hanlin_train_loss", "hanlin_train_tokens_per_second"} <= wanted
    missing = wanted - exposed_series(body)
    assert not missing, f"queried by the chart but not exposed by hanlin train: {sorted(missing)}"
    # The values are the run's, not a registry's defaults.
    got = samples(body)
    assert got["hanlin_train_total_steps"] == 100_000
    assert got["hanlin_train_step"] >= 3 and got["hanlin_train_checkpoints_total"] >= 1
    assert got["hanlin_train_tokens_total"] >= sum(1 for line in lines if "loss" in line)
    assert got["hanlin_train_loss"] > 0 and got["hanlin_train_eta_seconds"] > 0


def test_evaluation_exposes_every_series_the_chart_queries(model_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "evalrun.yaml"
    spec.write_text(
        json.dumps({
            "apiVersion": "hanlin.dev/v1alpha1",
            "kind": "EvalRun",
            "metadata": {"name": "scrape"},
            "spec": {
                "model": {"uri": f"file://{model_dir}"},
                "benchmarks": [{"name": "mmlu", "limit": 40}],
                "batchSize": 1,
            },
        })
    )  # fmt: skip
    body, _ = _scrape_while_running(
        ["eval", "--spec", str(spec), "--output", str(tmp_path / "out"), "--no-bar"],
        tmp_path / "eval.log",
        lambda line: line.get("event") == "progress" and line["done"] >= 2,
    )
    wanted = queried_by_module("hanlin.eval")
    assert "hanlin_eval_samples_total" in wanted
    missing = wanted - exposed_series(body)
    assert not missing, f"queried by the chart but not exposed by hanlin eval: {sorted(missing)}"
    got = samples(body)
    assert got["hanlin_eval_samples_planned"] == 40
    assert 2 <= got["hanlin_eval_samples_total"] < 40 and got["hanlin_eval_samples_per_second"] > 0
