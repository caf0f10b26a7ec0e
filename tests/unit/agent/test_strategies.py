"""Each strategy against a scripted LLM server over real HTTP."""

from __future__ import annotations

import json

import pytest

from hanlin.agent.builtins.calculator import calculator_tool
from hanlin.agent.runtime import Agent, AgentSettings
from hanlin.agent.tooling import ToolError, function_tool


def failing_lookup(key: str) -> str:
    """Look up a key in the registry.

    Args:
        key: the key to look up.
    """
    raise ToolError(f"no entry for {key!r}")


def make_agent(llm, strategy: str, max_steps: int = 4, extra=()) -> Agent:
    settings = AgentSettings(
        llm_url=llm.url, model="scripted", strategy=strategy, max_steps=max_steps
    )
    return Agent(settings, [calculator_tool(), *extra])


def test_react_calls_the_tool_and_answers(llm) -> None:
    llm.script(
        'Thought: I should compute it.\nAction: calculator\nAction Input: {"expression": "17 * 23"}',
        "Thought: I know the answer\nFinal Answer: 391",
    )
    result = make_agent(llm, "react").run("What is 17 times 23?")
    assert result.status == "succeeded" and result.answer == "391"
    actions = [s for s in result.steps if s.kind == "action"]
    assert [(a.tool, a.arguments) for a in actions] == [("calculator", {"expression": "17 * 23"})]
    assert "What is 17 times 23?" in llm.prompt(0)
    assert "Observation: 391" in llm.prompt(1)
    assert llm.requests[0]["stop"] == ["\nObservation:"]
    assert result.tool_steps == 1 and result.prompt_tokens == 20


def test_react_malformed_gets_one_reprompt_then_fails(llm) -> None:
    llm.script("I think it is big.", "Still no format.", "Final Answer: never asked")
    result = make_agent(llm, "react").run("What is 2+2?")
    assert result.status == "failed"
    assert "malformed model output after one corrective re-prompt" in (result.reason or "")
    assert len(llm.requests) == 2
    assert "not in the required format" in llm.prompt(1)
    assert [s.kind for s in result.steps] == ["reprompt", "failure"]


def test_react_recovers_after_one_reprompt(llm) -> None:
    llm.script("gibberish", "Final Answer: 4")
    result = make_agent(llm, "react").run("What is 2+2?")
    assert result.status == "succeeded" and result.answer == "4"


def test_react_max_steps_enforced(llm) -> None:
    action = 'Thought: again\nAction: calculator\nAction Input: {"expression": "1+1"}'
    llm.script(*[action] * 10)
    result = make_agent(llm, "react", max_steps=3).run("loop forever")
    assert result.status == "failed" and "maxSteps (3)" in (result.reason or "")
    assert result.tool_steps == 3 and len(llm.requests) == 3


def test_react_tool_error_becomes_observation(llm) -> None:
    lookup = function_tool(failing_lookup, name="lookup")
    llm.script(
        'Thought: look\nAction: lookup\nAction Input: {"key": "zeta"}',
        'Thought: try math\nAction: calculator\nAction Input: {"expression": "1/0"}',
        "Thought: no such tool\nAction: teleport\nAction Input: {}",
        "Final Answer: unknown",
    )
    result = make_agent(llm, "react", extra=[lookup]).run("find zeta")
    assert result.status == "succeeded" and result.answer == "unknown"
    observations = [s for s in result.steps if s.kind == "observation"]
    assert [o.ok for o in observations] == [False, False, False]
    assert "Observation: Error: no entry for 'zeta'" in llm.prompt(1)
    assert "division by zero" in llm.prompt(2)
    assert "unknown tool 'teleport'" in llm.prompt(3)


def test_react_wall_clock_budget(llm) -> None:
    settings = AgentSettings(llm_url=llm.url, model="m", strategy="react", wall_seconds=1e-9)
    llm.script("Final Answer: too late")
    result = Agent(settings, [calculator_tool()]).run("hurry")
    assert result.status == "failed" and "wall-clock budget" in (result.reason or "")
    assert llm.requests == []


def test_rewoo_plans_substitutes_evidence_and_solves(llm) -> None:
    llm.script(
        "Plan: multiply first\n"
        '#E1 = calculator[{"expression": "6 * 7"}]\n'
        "Plan: then add one to the evidence\n"
        '#E2 = calculator[{"expression": "#E1 + 1"}]',
        "Answer: 43",
    )
    result = make_agent(llm, "rewoo").run("What is 6*7+1?")
    assert result.status == "succeeded" and result.answer == "43"
    actions = [s for s in result.steps if s.kind == "action"]
    assert [a.arguments for a in actions] == [{"expression": "6 * 7"}, {"expression": "42 + 1"}]
    solver_prompt = llm.prompt(1)
    assert "Evidence #E1: 42" in solver_prompt and "Evidence #E2: 43" in solver_prompt
    assert "What is 6*7+1?" in solver_prompt


def test_rewoo_malformed_plan_fails_cleanly(llm) -> None:
    llm.script("I will just answer: 43", "#E2 = calculator[{}]")
    result = make_agent(llm, "rewoo").run("What is 6*7+1?")
    assert result.status == "failed" and "malformed" in (result.reason or "")
    assert "#E2" in (result.reason or "") and len(llm.requests) == 2


def test_rewoo_plan_longer_than_max_steps_fails(llm) -> None:
    plan = "\n".join(f'Plan: p\n#E{i} = calculator[{{"expression": "{i}"}}]' for i in range(1, 5))
    llm.script(plan)
    result = make_agent(llm, "rewoo", max_steps=2).run("count")
    assert result.status == "failed" and "maxSteps (2)" in (result.reason or "")
    assert result.tool_steps == 0


def test_rewoo_tool_error_reaches_solver(llm) -> None:
    llm.script('Plan: divide\n#E1 = calculator[{"expression": "1/0"}]', "Answer: undefined")
    result = make_agent(llm, "rewoo").run("1/0?")
    assert result.answer == "undefined"
    assert "Evidence #E1: Error: cannot evaluate" in llm.prompt(1)


def test_plan_execute_runs_plan_and_self_checks(llm) -> None:
    llm.script(
        "1. Compute the area\n2. Report it",
        'Action: calculator\nAction Input: {"expression": "3 * 4"}',
        "Result: the area is 12",
        "Final Answer: 12 square meters",
    )
    result = make_agent(llm, "plan-execute").run("Area of a 3 m by 4 m room?")
    assert result.status == "succeeded" and result.answer == "12 square meters"
    actions = [s for s in result.steps if s.kind == "action"]
    assert [(a.tool, a.arguments) for a in actions] == [("calculator", {"expression": "3 * 4"})]
    assert "- Compute the area: 12" in llm.prompt(2)
    assert "- Compute the area: 12" in llm.prompt(3) and "the area is 12" in llm.prompt(3)


def test_plan_execute_revises_then_answers(llm) -> None:
    llm.script(
        "1. Guess",
        "Result: maybe 5",
        "Revise:\n1. Compute 2+3",
        'Action: calculator\nAction Input: {"expression": "2+3"}',
        "Final Answer: 5",
    )
    result = make_agent(llm, "plan-execute").run("2+3?")
    assert result.answer == "5"
    assert "- Compute 2+3: 5" in llm.prompt(4)


def test_plan_execute_malformed_and_max_steps(llm) -> None:
    llm.script("no plan here", "still none")
    result = make_agent(llm, "plan-execute").run("x")
    assert result.status == "failed" and "numbered plan" in (result.reason or "")
    act = 'Action: calculator\nAction Input: {"expression": "1"}'
    llm.script("1. a\n2. b\n3. c")
    result = make_agent(llm, "plan-execute", max_steps=2).run("x")
    assert result.status == "failed" and "maxSteps (2) leaves 2 steps for a plan of 3" in (
        result.reason or ""
    )
    assert result.tool_steps == 0 and len(llm.requests) == 1
    # Steps without a tool count too; a revision must fit in what is left.
    llm.script("1. a\n2. b", act, "Result: done", "Revise:\n1. c", act)
    result = make_agent(llm, "plan-execute", max_steps=2).run("x")
    assert result.status == "failed" and "leaves 0 steps for a plan of 1" in (result.reason or "")
    assert result.tool_steps == 2 and len(llm.requests) == 4


def call(name: str, arguments: str) -> dict:
    return {"name": name, "arguments": arguments}


def test_function_calling_runs_tool_calls(llm) -> None:
    llm.script(
        {"tool_calls": [call("calculator", json.dumps({"expression": "2**10"}))]},
        {"content": "It is 1024."},
    )
    result = make_agent(llm, "function-calling").run("2 to the 10th?")
    assert result.status == "succeeded" and result.answer == "It is 1024."
    first = llm.requests[0]
    assert first["tools"][0]["function"]["name"] == "calculator"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["expression"]
    tool_message = llm.requests[1]["messages"][-1]
    assert tool_message == {"role": "tool", "tool_call_id": "call_0", "content": "1024"}
    assert llm.requests[1]["messages"][-2]["tool_calls"][0]["function"]["name"] == "calculator"


def test_function_calling_malformed_arguments_then_failure(llm) -> None:
    llm.script(
        {"tool_calls": [call("calculator", "{not json")]},
        {"tool_calls": [call("calculator", "{still not")]},
    )
    result = make_agent(llm, "function-calling").run("x")
    assert result.status == "failed" and "not valid JSON" in (result.reason or "")
    assert len(llm.requests) == 2


def test_function_calling_max_steps_and_tool_errors(llm) -> None:
    bad = {"tool_calls": [call("calculator", json.dumps({"expression": "1/0"}))]}
    llm.script(*[bad] * 5)
    result = make_agent(llm, "function-calling", max_steps=2).run("x")
    assert result.status == "failed" and "maxSteps (2)" in (result.reason or "")
    assert "division by zero" in llm.requests[1]["messages"][-1]["content"]


def test_endpoint_down_is_a_clean_failure() -> None:
    settings = AgentSettings(llm_url="http://127.0.0.1:9", model="m", strategy="react")
    result = Agent(settings, [calculator_tool()]).run("x")
    assert result.status == "failed" and "model endpoint failed" in (result.reason or "")


def test_settings_validate_fields() -> None:
    with pytest.raises(ValueError, match="strategy: unknown 'tot'"):
        AgentSettings(llm_url="http://x", model="m", strategy="tot")
    with pytest.raises(ValueError, match="maxSteps"):
        AgentSettings(llm_url="http://x", model="m", max_steps=0)
