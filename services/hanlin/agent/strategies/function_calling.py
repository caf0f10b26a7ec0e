"""Function calling: the endpoint's own OpenAI `tools` / `tool_calls` protocol."""

from __future__ import annotations

import json
from typing import Any

from hanlin.agent.llm import ChatReply
from hanlin.agent.strategies.base import MalformedOutput, RunContext, Step, Strategy


def _parse(reply: ChatReply) -> list[tuple[str, str, Any]]:
    calls = []
    for call in reply.tool_calls:
        if not call.name:
            raise MalformedOutput("a tool call has no function name")
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise MalformedOutput(
                f"the arguments of {call.name} are not valid JSON ({exc.msg})"
            ) from None
        calls.append((call.id, call.name, arguments))
    if not calls and not reply.content.strip():
        raise MalformedOutput("the reply has neither content nor tool calls")
    return calls


class FunctionCalling(Strategy):
    """Send the tools with every request; run the calls the model returns until it answers."""

    name = "function-calling"

    def solve(self, ctx: RunContext, task: str) -> str:
        """Loop over tool calls until a plain answer."""
        specs = [t.openai_spec() for t in ctx.toolbox.tools.values()]
        messages = ctx.base_messages()
        messages.append({"role": "user", "content": task})
        while True:
            ctx.budget.ensure_step_left()
            reply, calls = ctx.ask(messages, _parse, tools=specs)
            if not calls:
                return reply.content.strip()
            if reply.content.strip():
                ctx.record(Step("thought", reply.content.strip()))
            messages.append(
                {
                    "role": "assistant",
                    "content": reply.content or None,
                    "tool_calls": [
                        {
                            "id": cid,
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(args)},
                        }
                        for cid, name, args in calls
                    ],
                }
            )
            for cid, name, args in calls:
                result = ctx.run_tool(name, args)
                messages.append(
                    {"role": "tool", "tool_call_id": cid, "content": result.observation()}
                )
