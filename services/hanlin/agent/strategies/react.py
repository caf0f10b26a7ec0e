"""ReAct: thought, action, observation, repeated until a final answer."""

from __future__ import annotations

import re

from hanlin.agent.llm import ChatReply
from hanlin.agent.strategies.base import (
    MalformedOutput,
    RunContext,
    Step,
    Strategy,
    parse_json_arguments,
)

PROMPT = """You can use these tools:
{tools}

Answer the question by repeating this format:
Thought: what to do next
Action: one tool name from [{names}]
Action Input: the tool's arguments as a JSON object

After each Action Input you will be given an Observation with the tool's result.
When you know the answer, reply:
Thought: I know the answer
Final Answer: the answer

Question: {task}"""

_FINAL = re.compile(r"Final Answer\s*:\s*(.*)", re.S | re.I)
_ACTION = re.compile(r"Action\s*:\s*(.+?)\s*\n+\s*Action Input\s*:\s*(.*)", re.S | re.I)
_THOUGHT = re.compile(r"Thought\s*:\s*(.*?)(?=\n\s*(Action|Final Answer)\s*:|\Z)", re.S | re.I)


def parse_react(text: str) -> tuple[str, str | None, str]:
    """(thought, tool or None for a final answer, action input or answer text)."""
    thought_match = _THOUGHT.search(text)
    thought = thought_match.group(1).strip() if thought_match else ""
    action = _ACTION.search(text)
    final = _FINAL.search(text)
    if action and (not final or action.start() < final.start()):
        tool = action.group(1).strip().strip("`'\"")
        # Only the first action counts; cut anything the model invented after it.
        raw = re.split(r"\n\s*(Observation|Thought|Action)\s*:", action.group(2), maxsplit=1)[0]
        return thought, tool, raw.strip()
    if final:
        answer = final.group(1).strip()
        if not answer:
            raise MalformedOutput("'Final Answer:' is empty")
        return thought, None, answer
    raise MalformedOutput("expected 'Action:' followed by 'Action Input:', or 'Final Answer:'")


class ReAct(Strategy):
    """The ReAct loop; each action is one step of maxSteps."""

    name = "react"

    def solve(self, ctx: RunContext, task: str) -> str:
        """Loop until a final answer; raises AgentFailure on budget or format failure."""
        messages = ctx.base_messages()
        messages.append(
            {
                "role": "user",
                "content": PROMPT.format(
                    tools=ctx.toolbox.describe(), names=", ".join(ctx.toolbox.names()), task=task
                ),
            }
        )

        def parse(reply: ChatReply) -> tuple[str, str | None, str, object]:
            thought, tool, text = parse_react(reply.content)
            args = parse_json_arguments(text, ctx.toolbox, tool) if tool is not None else None
            return thought, tool, text, args

        while True:
            # Budget first: a model that never answers still stops at maxSteps.
            ctx.budget.ensure_step_left()
            reply, (thought, tool, text, args) = ctx.ask(messages, parse, stop=["\nObservation:"])
            if thought:
                ctx.record(Step("thought", thought))
            if tool is None:
                return text
            result = ctx.run_tool(tool, args)
            messages.append(
                {
                    "role": "assistant",
                    "content": f"Thought: {thought}\nAction: {tool}\nAction Input: {text}",
                }
            )
            messages.append({"role": "user", "content": f"Observation: {result.observation()}"})
