"""ReWOO: a planner writes every tool call up front with evidence variables #E1..;
workers run them, substituting earlier evidence; a solver writes the answer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hanlin.agent.llm import ChatReply
from hanlin.agent.strategies.base import (
    AgentFailure,
    MalformedOutput,
    RunContext,
    Step,
    Strategy,
    parse_json_arguments,
)

PLANNER = """You can use these tools:
{tools}

Make a plan to answer the question. For each step write one "Plan:" line saying why,
then one evidence line that calls exactly one tool:
Plan: <reason>
#E1 = <tool name>[<arguments as a JSON object>]
Later steps may use earlier evidence inside their arguments, e.g. "#E1".
Use at most {max_steps} evidence lines and only the tools [{names}]. Do not answer yet.

Question: {task}"""

SOLVER = """Solve the question using the plan and the evidence gathered for it.

{evidence}

Question: {task}
Reply with the answer only."""

_EVIDENCE = re.compile(r"^\s*#E(\d+)\s*=\s*([\w.-]+)\s*\[(.*)\]\s*$", re.M)
_PLAN = re.compile(r"^\s*Plan\s*:\s*(.*)$", re.M | re.I)
_REF = re.compile(r"#E(\d+)")


@dataclass
class PlannedCall:
    """One evidence line: `#E{n} = tool[args]`, with the plan text before it."""

    var: int
    tool: str
    arguments: Any
    reason: str


def parse_plan(text: str, ctx: RunContext) -> list[PlannedCall]:
    """Evidence lines in order; every #E reference must point to an earlier line."""
    calls: list[PlannedCall] = []
    reasons = [m.group(1).strip() for m in _PLAN.finditer(text)]
    for i, m in enumerate(_EVIDENCE.finditer(text)):
        var, tool, raw = int(m.group(1)), m.group(2), m.group(3)
        if var != len(calls) + 1:
            raise MalformedOutput(
                f"evidence variables must be numbered #E1, #E2, ... in order; got #E{var}"
            )
        for ref in _REF.findall(raw):
            if int(ref) >= var:
                raise MalformedOutput(f"#E{var} uses #E{ref}, which is not computed before it")
        arguments = parse_json_arguments(raw, ctx.toolbox, tool)
        calls.append(PlannedCall(var, tool, arguments, reasons[i] if i < len(reasons) else ""))
    if not calls:
        raise MalformedOutput("no evidence line of the form '#E1 = tool[{...}]'")
    return calls


def substitute(value: Any, evidence: dict[int, str]) -> Any:
    """Replace #E references in string values with the evidence text."""
    if isinstance(value, str):
        return _REF.sub(lambda m: evidence.get(int(m.group(1)), m.group(0)), value)
    if isinstance(value, dict):
        return {k: substitute(v, evidence) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, evidence) for v in value]
    return value


class ReWOO(Strategy):
    """Planner, workers, solver; each planned tool call is one step of maxSteps."""

    name = "rewoo"

    def solve(self, ctx: RunContext, task: str) -> str:
        """Plan once, execute every call, then solve."""
        messages = ctx.base_messages()
        messages.append(
            {
                "role": "user",
                "content": PLANNER.format(
                    tools=ctx.toolbox.describe(),
                    names=", ".join(ctx.toolbox.names()),
                    max_steps=ctx.budget.max_steps,
                    task=task,
                ),
            }
        )

        def parse(reply: ChatReply) -> list[PlannedCall]:
            return parse_plan(reply.content, ctx)

        reply, plan = ctx.ask(messages, parse)
        ctx.record(Step("plan", reply.content.strip()))
        if len(plan) > ctx.budget.max_steps:
            raise AgentFailure(
                f"maxSteps ({ctx.budget.max_steps}) is smaller than the plan's {len(plan)} tool calls"
            )
        evidence: dict[int, str] = {}
        lines: list[str] = []
        for call in plan:
            arguments = substitute(call.arguments, evidence)
            result = ctx.run_tool(call.tool, arguments)
            evidence[call.var] = result.observation()
            lines.append(
                f"Plan: {call.reason}\n#E{call.var} = {call.tool}[{json.dumps(arguments)}]\n"
                f"Evidence #E{call.var}: {evidence[call.var]}"
            )
        solver = ctx.base_messages()
        solver.append(
            {"role": "user", "content": SOLVER.format(evidence="\n\n".join(lines), task=task)}
        )

        def parse_answer(reply: ChatReply) -> str:
            answer = re.sub(
                r"^\s*(Final Answer|Answer)\s*:\s*", "", reply.content.strip(), flags=re.I
            )
            if not answer:
                raise MalformedOutput("the answer is empty")
            return answer

        _, answer = ctx.ask(solver, parse_answer)
        return answer
