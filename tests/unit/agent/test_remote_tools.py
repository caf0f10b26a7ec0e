"""Remote tools: a real `hanlin tools serve` process, used by an agent over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from scripted_llm import wait_healthy

from hanlin.agent.builtins.calculator import calculator_tool
from hanlin.agent.builtins.retrieval import retrieval_tool
from hanlin.agent.remote import remote_tools
from hanlin.agent.runtime import Agent, AgentSettings
from hanlin.agent.toolspecs import tools_from_specs
from hanlin.dev.processes import free_port


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    docs = tmp_path_factory.mktemp("docs")
    (docs / "facts.txt").write_text(
        "The Hanlin academy was founded in the Tang dynasty.\n\nOther text."
    )
    uri = f"file://{docs}"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hanlin.cli",
            "tools",
            "serve",
            "--tool",
            "calculator",
            "--tool",
            f"retrieval:{json.dumps({'uri': uri})}",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, uri
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_schema_round_trips_through_openapi(tool_server: tuple[str, str]) -> None:
    url, uri = tool_server
    document = httpx.get(f"{url}/openapi.json").json()
    assert set(document["paths"]) == {"/tools/calculator", "/tools/retrieval"}
    remote = {t.name: t for t in remote_tools(url)}
    for local in (calculator_tool(), retrieval_tool({"uri": uri})):
        assert remote[local.name].parameters == local.parameters
        assert remote[local.name].description == local.description
        assert remote[local.name].source == "remote"


def test_remote_errors_are_data(tool_server: tuple[str, str]) -> None:
    url, _ = tool_server
    response = httpx.post(f"{url}/tools/calculator", json={"expression": "1/0"})
    assert response.status_code == 200 and response.json()["ok"] is False
    assert httpx.post(f"{url}/tools/nope", json={}).status_code == 404


def test_agent_uses_remote_tools(tool_server: tuple[str, str], llm) -> None:
    url, _ = tool_server
    llm.script(
        'Thought: search\nAction: retrieval\nAction Input: {"query": "Hanlin academy founded"}',
        'Thought: compute\nAction: calculator\nAction Input: {"expression": "618 + 1"}',
        "Final Answer: Tang dynasty, 619",
    )
    settings = AgentSettings(
        llm_url=llm.url, model="m", strategy="react", tools=[{"remote": {"url": url}}]
    )
    agent = Agent(settings, tools_from_specs(settings.tools))
    assert agent.toolbox.names() == ["calculator", "retrieval"]
    result = agent.run("When was the Hanlin academy founded?")
    assert result.answer == "Tang dynasty, 619"
    assert "Tang dynasty" in llm.prompt(1)
    assert "Observation: 619" in llm.prompt(2)
    # The remote schemas are in the prompt the model saw.
    assert '"expression"' in llm.prompt(0) and '"top_k"' in llm.prompt(0)


def test_unreachable_server_names_the_field() -> None:
    with pytest.raises(ValueError, match="tools.remote.url"):
        remote_tools(f"http://127.0.0.1:{free_port()}")
