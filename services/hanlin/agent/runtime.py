"""An agent: an LLM endpoint, a toolbox and a strategy, with its budgets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hanlin.agent.llm import LLMClient
from hanlin.agent.strategies import RunContext, RunResult, Step, get_strategy, run_strategy
from hanlin.agent.strategies.base import Budget
from hanlin.agent.tooling import Tool, Toolbox, ToolResult

JSONDict = dict[str, Any]


@dataclass
class AgentSettings:
    """How an agent behaves; the AgentService spec and the CLI flags both become this."""

    llm_url: str
    """Base URL of an OpenAI-compatible endpoint (with or without /v1)."""
    model: str
    """Model name sent with every request."""
    strategy: str = "react"
    """react, rewoo, plan-execute or function-calling."""
    system_prompt: str = ""
    max_steps: int = 8
    """Most tool calls one run may make."""
    wall_seconds: float = 300.0
    """Wall-clock budget of one run."""
    api_key: str | None = None
    max_tokens: int = 512
    """Most tokens per model reply."""
    temperature: float = 0.0
    """Sampling temperature of the agent's model calls."""
    tools: list[JSONDict] = field(default_factory=list)
    """Tool specs: {builtin: NAME, config: {...}} or {remote: {url: URL}}."""
    name: str = "hanlin-agent"
    """The agent's name; /v1/chat/completions answers as this model."""

    def __post_init__(self) -> None:
        get_strategy(self.strategy)  # validates the name
        if self.max_steps < 1:
            raise ValueError("maxSteps: must be at least 1")
        if self.wall_seconds <= 0:
            raise ValueError("wallSeconds: must be positive")


class Agent:
    """Runs tasks; thread-safe (each run has its own context)."""

    def __init__(self, settings: AgentSettings, tools: list[Tool]) -> None:
        self.settings = settings
        self.toolbox = Toolbox.of(tools)
        self.strategy = get_strategy(settings.strategy)
        self.llm = LLMClient(
            url=settings.llm_url,
            model=settings.model,
            api_key=settings.api_key,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
        )

    def run(
        self,
        task: str,
        *,
        history: list[JSONDict] | None = None,
        on_step: Callable[[Step], None] | None = None,
        on_tool: Callable[[str, ToolResult], None] | None = None,
    ) -> RunResult:
        """Run one task to an answer or a clean failure; never raises for model behaviour."""
        ctx = RunContext(
            llm=self.llm,
            toolbox=self.toolbox,
            budget=Budget(self.settings.max_steps, self.settings.wall_seconds),
            system_prompt=self.settings.system_prompt,
            history=list(history or []),
            on_step=on_step,
            on_tool=on_tool,
        )
        return run_strategy(self.strategy, ctx, task)

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self.llm.close()
