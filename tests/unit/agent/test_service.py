"""The agent service: a real `hanlin agent` process, real HTTP and OpenAI clients."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from scripted_llm import ScriptedLLM, serve_scripted, wait_healthy

from hanlin.dev.processes import free_port

CALC = 'Thought: compute\nAction: calculator\nAction Input: {"expression": "%s"}'


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedLLM]:
    with serve_scripted() as server:
        yield server


@pytest.fixture(scope="module")
def agent_url(scripted: ScriptedLLM) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hanlin.cli",
            "agent",
            "--llm",
            scripted.url,
            "--model",
            "scripted",
            "--strategy",
            "react",
            "--tool",
            "calculator",
            "--max-steps",
            "3",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_health_and_tools(agent_url: str) -> None:
    assert httpx.get(f"{agent_url}/health").json()["tools"] == ["calculator"]
    tools = httpx.get(f"{agent_url}/v1/tools").json()["tools"]
    assert tools[0]["name"] == "calculator" and tools[0]["source"] == "builtin"
    assert tools[0]["parameters"]["required"] == ["expression"]


def test_run_returns_answer_trace_and_metrics(agent_url: str, scripted: ScriptedLLM) -> None:
    scripted.script(
        CALC % "12*12",
        'Thought: bad\nAction: calculator\nAction Input: {"expression": "1/0"}',
        "Final Answer: 144",
    )
    body = httpx.post(f"{agent_url}/v1/runs", json={"task": "12 squared?"}, timeout=30).json()
    assert body["status"] == "succeeded" and body["answer"] == "144"
    assert [s["kind"] for s in body["steps"]] == [
        "thought",
        "action",
        "observation",
        "thought",
        "action",
        "observation",
        "answer",
    ]
    assert body["toolSteps"] == 2 and body["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 15,
    }
    metrics = httpx.get(f"{agent_url}/metrics").text
    assert 'hanlin_agent_runs_total{status="succeeded"} 1.0' in metrics
    assert 'hanlin_agent_tool_calls_total{outcome="ok",tool="calculator"} 1.0' in metrics
    assert 'hanlin_agent_tool_calls_total{outcome="error",tool="calculator"} 1.0' in metrics
    assert 'hanlin_agent_llm_tokens_total{kind="prompt"} 30.0' in metrics
    assert "hanlin_agent_steps_per_run_count 1.0" in metrics
    assert 'hanlin_agent_tool_latency_seconds_count{tool="calculator"} 2.0' in metrics


def test_run_streams_steps_as_sse(agent_url: str, scripted: ScriptedLLM) -> None:
    scripted.script(CALC % "2+2", "Final Answer: 4")
    events = []
    with httpx.stream(
        "POST", f"{agent_url}/v1/runs", json={"task": "2+2?", "stream": True}, timeout=30
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds == ["step"] * 4 + ["result"]
    assert events[2][1] == {
        "kind": "observation",
        "content": "4",
        "tool": "calculator",
        "arguments": None,
        "ok": True,
        "latencySeconds": events[2][1]["latencySeconds"],
    }
    assert events[-1][1]["answer"] == "4"


def test_max_steps_failure_is_reported(agent_url: str, scripted: ScriptedLLM) -> None:
    scripted.script(*[CALC % "1"] * 5)
    body = httpx.post(f"{agent_url}/v1/runs", json={"task": "loop"}, timeout=30).json()
    assert (
        body["status"] == "failed" and "maxSteps (3)" in body["reason"] and body["answer"] is None
    )


def test_sessions_carry_memory(agent_url: str, scripted: ScriptedLLM) -> None:
    sid = httpx.post(f"{agent_url}/v1/sessions", json={"id": "s-1"}).json()["id"]
    assert sid == "s-1"
    assert httpx.post(f"{agent_url}/v1/sessions", json={"id": "s-1"}).status_code == 409
    scripted.script("Final Answer: Your name is Ada.", "Final Answer: Ada")
    first = httpx.post(
        f"{agent_url}/v1/sessions/s-1/runs", json={"task": "My name is Ada."}, timeout=30
    )
    assert first.json()["sessionId"] == "s-1"
    second = httpx.post(
        f"{agent_url}/v1/runs", json={"task": "What is my name?", "sessionId": "s-1"}, timeout=30
    )
    assert second.json()["answer"] == "Ada"
    remembered = scripted.requests[1]["messages"]
    assert remembered[0] == {"role": "user", "content": "My name is Ada."}
    assert remembered[1] == {"role": "assistant", "content": "Your name is Ada."}
    view = httpx.get(f"{agent_url}/v1/sessions/s-1").json()
    assert [t["task"] for t in view["turns"]] == ["My name is Ada.", "What is my name?"]
    assert httpx.delete(f"{agent_url}/v1/sessions/s-1").status_code == 204
    assert httpx.get(f"{agent_url}/v1/sessions/s-1").status_code == 404
    missing = httpx.post(f"{agent_url}/v1/runs", json={"task": "x", "sessionId": "nope"})
    assert missing.status_code == 404 and "sessionId" in missing.json()["error"]["message"]


def test_bad_requests_name_the_field(agent_url: str) -> None:
    response = httpx.post(f"{agent_url}/v1/runs", json={"tsk": "x"})
    assert response.status_code == 422
    locations = [e["loc"] for e in response.json()["detail"]]
    assert ["body", "task"] in locations and ["body", "tsk"] in locations


def test_openai_client_talks_to_the_agent(agent_url: str, scripted: ScriptedLLM) -> None:
    client = openai.OpenAI(base_url=f"{agent_url}/v1", api_key="unused")
    scripted.script(CALC % "3*3", "Final Answer: 9")
    completion = client.chat.completions.create(
        model="hanlin-agent",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "3 squared?"},
        ],
    )
    assert completion.choices[0].message.content == "9"
    assert completion.usage is not None and completion.usage.prompt_tokens == 20
    history = scripted.requests[0]["messages"]
    assert history[:3] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert "3 squared?" in history[3]["content"]
    scripted.script("Final Answer: streamed")
    chunks = client.chat.completions.create(
        model="hanlin-agent", messages=[{"role": "user", "content": "go"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "streamed"
    assert [m.id for m in client.models.list()] == ["hanlin-agent"]
    client.close()


def test_cli_runs_a_task_from_a_spec(scripted: ScriptedLLM, tmp_path: Path) -> None:
    spec = tmp_path / "agent.yaml"
    spec.write_text(
        "apiVersion: hanlin.dev/v1alpha1\nkind: AgentService\nmetadata: {name: calc}\n"
        f"spec:\n  llm: {{endpoint: {{url: '{scripted.url}/v1', model: scripted}}}}\n"
        "  strategy: rewoo\n  maxSteps: 2\n  tools: [{builtin: calculator}]\n"
    )
    scripted.script('Plan: add\n#E1 = calculator[{"expression": "40+2"}]', "42")
    done = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "agent", "--spec", str(spec), "--task", "40+2?"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "42"
    assert scripted.requests[0]["model"] == "scripted"
    spec.write_text(spec.read_text().replace("maxSteps: 2", "maxSteps: 0"))
    bad = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "agent", "--spec", str(spec), "--task", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "maxSteps" in bad.stderr
