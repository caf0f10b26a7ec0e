"""What every strategy shares: the trace, the budgets, and the one corrective re-prompt."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from hanlin.agent.llm import ChatReply, LLMClient, LLMError
from hanlin.agent.tooling import Toolbox, ToolResult

JSONDict = dict[str, Any]
T = TypeVar("T")
StepKind = Literal["thought", "plan", "action", "observation", "reprompt", "answer", "failure"]


@dataclass
class Step:
    """One entry of a run's trace."""

    kind: StepKind
    content: str
    tool: str | None = None
    arguments: JSONDict | None = None
    ok: bool | None = None
    latency_s: float | None = None


@dataclass
class RunResult:
    """A finished run: an answer, or a failure with its reason; always the whole trace."""

    status: Literal["succeeded", "failed"]
    answer: str | None
    reason: str | None
    steps: list[Step]
    tool_steps: int
    prompt_tokens: int
    completion_tokens: int
    duration_s: float

    def to_json(self) -> JSONDict:
        """Plain JSON for the API."""
        return asdict(self)


class AgentFailure(Exception):
    """Ends a run cleanly with a reason (budget spent, malformed output twice, endpoint down)."""


class MalformedOutput(ValueError):
    """The model's reply does not follow the strategy's format; the message says how."""


@dataclass
class Budget:
    """maxSteps (tool calls) and a wall-clock deadline for one run."""

    max_steps: int
    wall_seconds: float
    started: float = field(default_factory=time.monotonic)
    steps_used: int = 0

    def remaining_s(self) -> float:
        """Seconds left on the wall clock."""
        return self.wall_seconds - (time.monotonic() - self.started)

    def check_time(self) -> None:
        """Fail the run when the wall-clock budget is spent."""
        if self.remaining_s() <= 0:
            raise AgentFailure(f"wall-clock budget of {self.wall_seconds:g} s exceeded")

    def ensure_step_left(self) -> None:
        """Fail the run when maxSteps is exhausted."""
        if self.steps_used >= self.max_steps:
            raise AgentFailure(f"maxSteps ({self.max_steps}) reached without a final answer")

    def take_step(self) -> None:
        """Count one tool step; fail the run when maxSteps is exhausted."""
        self.ensure_step_left()
        self.steps_used += 1


@dataclass
class RunContext:
    """Everything one run needs; strategies read from it and append to its trace."""

    llm: LLMClient
    toolbox: Toolbox
    budget: Budget
    system_prompt: str = ""
    history: list[JSONDict] = field(default_factory=list)
    on_step: Callable[[Step], None] | None = None
    on_tool: Callable[[str, ToolResult], None] | None = None
    steps: list[Step] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def record(self, step: Step) -> None:
        """Append a step to the trace and stream it to any listener."""
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def chat(
        self,
        messages: list[JSONDict],
        *,
        stop: list[str] | None = None,
        tools: list[JSONDict] | None = None,
    ) -> ChatReply:
        """One LLM call within the wall-clock budget, counting tokens."""
        self.budget.check_time()
        try:
            reply = self.llm.chat(
                messages, stop=stop, tools=tools, timeout_s=self.budget.remaining_s()
            )
        except LLMError as exc:
            if self.budget.remaining_s() <= 0:
                raise AgentFailure(
                    f"wall-clock budget of {self.budget.wall_seconds:g} s exceeded"
                ) from None
            raise AgentFailure(f"model endpoint failed: {exc}") from None
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        return reply

    def ask(
        self,
        messages: list[JSONDict],
        parse: Callable[[ChatReply], T],
        *,
        stop: list[str] | None = None,
        tools: list[JSONDict] | None = None,
    ) -> tuple[ChatReply, T]:
        """Ask the model and parse its reply; a malformed reply gets one corrective re-prompt.

        `messages` is extended with the exchange when a re-prompt happens, so the model
        sees its own mistake and the correction.
        """
        reply = self.chat(messages, stop=stop, tools=tools)
        try:
            return reply, parse(reply)
        except MalformedOutput as first:
            # Keep what the model said: a trace is how an operator debugs a prompt.
            self.record(
                Step(
                    "reprompt", f"malformed output: {first}; the reply was: {reply.content[:500]!r}"
                )
            )
            messages.append({"role": "assistant", "content": reply.content})
            messages.append(
                {
                    "role": "user",
                    "content": f"Your reply was not in the required format: {first}. Reply again, following the format exactly.",
                }
            )
        reply = self.chat(messages, stop=stop, tools=tools)
        try:
            return reply, parse(reply)
        except MalformedOutput as second:
            raise AgentFailure(
                f"malformed model output after one corrective re-prompt: {second}"
            ) from None

    def run_tool(self, name: str, arguments: Any, *, counted: bool = True) -> ToolResult:
        """Run one tool call, recording the action and its observation.

        It is one step of maxSteps unless `counted` is False (the caller already took it).
        """
        if counted:
            self.budget.take_step()
        self.budget.check_time()
        args = arguments if isinstance(arguments, dict) else None
        self.record(Step("action", json.dumps(arguments), tool=name, arguments=args))
        result = self.toolbox.invoke(name, arguments)
        if self.on_tool is not None:
            self.on_tool(name, result)
        self.record(
            Step(
                "observation",
                result.observation(),
                tool=name,
                ok=result.ok,
                latency_s=result.latency_s,
            )
        )
        return result

    def base_messages(self) -> list[JSONDict]:
        """The system prompt (if any) then the session's earlier turns."""
        messages: list[JSONDict] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        return messages + [dict(m) for m in self.history]


def parse_json_arguments(text: str, toolbox: Toolbox, tool: str) -> Any:
    """Arguments as JSON; a bare string is accepted for a tool with exactly one parameter."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    t = toolbox.tools.get(tool)
    props = list(t.parameters.get("properties", {})) if t else []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if len(props) == 1 and text:
            # Small models often write `Action Input: 2+2`; that is unambiguous here.
            return {props[0]: text.strip().strip('"')}
        raise MalformedOutput(f"Action Input is not a JSON object ({exc.msg})") from None
    if not isinstance(value, dict) and len(props) == 1:
        return {props[0]: value}
    return value


class Strategy:
    """A way of turning a task into tool calls and an answer."""

    name = "base"

    def solve(self, ctx: RunContext, task: str) -> str:
        """Return the final answer, or raise `AgentFailure`."""
        raise NotImplementedError


def run_strategy(strategy: Strategy, ctx: RunContext, task: str) -> RunResult:
    """Run `strategy` on `task`, turning every clean failure into a failed RunResult."""
    answer: str | None = None
    reason: str | None = None
    try:
        answer = strategy.solve(ctx, task)
        ctx.record(Step("answer", answer))
    except AgentFailure as exc:
        reason = str(exc)
        ctx.record(Step("failure", reason))
    return RunResult(
        status="succeeded" if reason is None else "failed",
        answer=answer,
        reason=reason,
        steps=ctx.steps,
        tool_steps=ctx.budget.steps_used,
        prompt_tokens=ctx.prompt_tokens,
        completion_tokens=ctx.completion_tokens,
        duration_s=time.monotonic() - ctx.budget.started,
    )
