"""Plan-and-execute (AutoGPT-like): state the goal, plan numbered steps, execute each
step (with at most one tool call), then self-check; a failed check revises the plan."""

from __future__ import annotations

import re

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

Goal: {task}

Write a short numbered plan (at most {max_steps} steps) to reach the goal:
1. <first step>
2. <next step>
Reply with the numbered plan only."""

EXECUTOR = """You can use these tools:
{tools}

Goal: {task}
Plan:
{plan}
Done so far:
{done}

Current step: {step}
Either call one tool:
Action: <tool name from [{names}]>
Action Input: <arguments as a JSON object>
or, if no tool is needed, reply:
Result: <the result of this step>"""

CHECK = """Goal: {task}
Results of the executed steps:
{done}

Does this reach the goal? If yes reply:
Final Answer: <the answer>
If not, reply with a revised numbered plan of the remaining steps:
Revise:
1. <step>"""

_ITEM = re.compile(r"^\s*(\d+)[.)]\s+(.+)$", re.M)
_ACTION = re.compile(r"Action\s*:\s*(.+?)\s*\n+\s*Action Input\s*:\s*(.*)", re.S | re.I)
_RESULT = re.compile(r"Result\s*:\s*(.*)", re.S | re.I)
_FINAL = re.compile(r"Final Answer\s*:\s*(.*)", re.S | re.I)


def parse_numbered(text: str) -> list[str]:
    """The items of a numbered list."""
    items = [m.group(2).strip() for m in _ITEM.finditer(text)]
    if not items:
        raise MalformedOutput("expected a numbered plan: '1. <step>'")
    return items


class PlanExecute(Strategy):
    """Plan, execute step by step, self-check; every executed plan step (with or without a
    tool) is one step of maxSteps, and the self-check may revise the plan at most twice."""

    name = "plan-execute"
    max_revisions = 2

    def solve(self, ctx: RunContext, task: str) -> str:
        """Run plan → execute → check until the check gives a final answer."""
        tools, names = ctx.toolbox.describe(), ", ".join(ctx.toolbox.names())
        planner = ctx.base_messages()
        planner.append(
            {
                "role": "user",
                "content": PLANNER.format(tools=tools, task=task, max_steps=ctx.budget.max_steps),
            }
        )
        _, plan = ctx.ask(planner, lambda r: parse_numbered(r.content))
        ctx.record(Step("plan", "\n".join(f"{i + 1}. {s}" for i, s in enumerate(plan))))
        done: list[str] = []
        revisions = 0
        while True:
            left = ctx.budget.max_steps - ctx.budget.steps_used
            if len(plan) > left:
                raise AgentFailure(
                    f"maxSteps ({ctx.budget.max_steps}) leaves {left} steps for a plan of {len(plan)}"
                )
            for step in plan:
                done.append(f"- {step}: {self._execute(ctx, task, plan, done, step, tools, names)}")
            check = ctx.base_messages()
            check.append({"role": "user", "content": CHECK.format(task=task, done="\n".join(done))})

            def parse_check(reply: ChatReply) -> tuple[str | None, list[str]]:
                final = _FINAL.search(reply.content)
                if final and final.group(1).strip():
                    return final.group(1).strip(), []
                if "revise" in reply.content.lower():
                    return None, parse_numbered(reply.content)
                raise MalformedOutput(
                    "expected 'Final Answer: ...' or 'Revise:' and a numbered plan"
                )

            reply, (answer, revised) = ctx.ask(check, parse_check)
            if answer is not None:
                return answer
            revisions += 1
            ctx.record(
                Step(
                    "plan", "revised:\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(revised))
                )
            )
            if revisions > self.max_revisions:
                raise AgentFailure(
                    f"the self-check revised the plan more than {self.max_revisions} times"
                )
            plan = revised

    def _execute(
        self,
        ctx: RunContext,
        task: str,
        plan: list[str],
        done: list[str],
        step: str,
        tools: str,
        names: str,
    ) -> str:
        messages = ctx.base_messages()
        messages.append(
            {
                "role": "user",
                "content": EXECUTOR.format(
                    tools=tools,
                    task=task,
                    plan="\n".join(f"{i + 1}. {s}" for i, s in enumerate(plan)),
                    done="\n".join(done) or "(nothing yet)",
                    step=step,
                    names=names,
                ),
            }
        )

        def parse(reply: ChatReply) -> tuple[str | None, object]:
            action = _ACTION.search(reply.content)
            if action:
                tool = action.group(1).strip().strip("`'\"")
                raw = re.split(
                    r"\n\s*(Observation|Result|Action)\s*:", action.group(2), maxsplit=1
                )[0]
                return tool, parse_json_arguments(raw, ctx.toolbox, tool)
            result = _RESULT.search(reply.content)
            if result and result.group(1).strip():
                return None, result.group(1).strip()
            raise MalformedOutput("expected 'Action:' with 'Action Input:', or 'Result:'")

        ctx.budget.take_step()
        _, (tool, value) = ctx.ask(messages, parse, stop=["\nObservation:"])
        if tool is None:
            ctx.record(Step("thought", f"{step}: {value}"))
            return str(value)
        return ctx.run_tool(tool, value, counted=False).observation()
