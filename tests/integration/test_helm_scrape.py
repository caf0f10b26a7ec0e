"""The serving and agent series the dashboards and alerts use are exposed by the running services.

`test_helm_promql` checks that every expression names only contract series; this
scrapes a real `hanlin serve` and a real `hanlin agent` (after one request each)
and requires every serve/agent series the chart queries to be in their /metrics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_helm_promql import promql_expressions, series_names

from hanlin.dev.fixtures import hanlin_server
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
