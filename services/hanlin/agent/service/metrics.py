"""Prometheus metrics of one agent service (its own registry, so apps do not collide)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from hanlin.agent.strategies import RunResult
from hanlin.agent.tooling import ToolResult


@dataclass
class AgentMetrics:
    """Runs, steps per run, tool calls by tool and outcome, tool latency, LLM tokens."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.runs = Counter(
            "hanlin_agent_runs_total", "Agent runs by final status.", ["status"], registry=r
        )
        self.steps = Histogram(
            "hanlin_agent_steps_per_run",
            "Tool steps one run took.",
            buckets=(0, 1, 2, 3, 4, 6, 8, 12, 16, 32),
            registry=r,
        )
        self.duration = Histogram(
            "hanlin_agent_run_duration_seconds", "Wall time of one run.", registry=r
        )
        self.tool_calls = Counter(
            "hanlin_agent_tool_calls_total",
            "Tool calls by tool and outcome.",
            ["tool", "outcome"],
            registry=r,
        )
        self.tool_latency = Histogram(
            "hanlin_agent_tool_latency_seconds", "Latency of one tool call.", ["tool"], registry=r
        )
        self.tokens = Counter(
            "hanlin_agent_llm_tokens_total",
            "LLM tokens by kind (prompt, completion).",
            ["kind"],
            registry=r,
        )

    def observe_tool(self, name: str, result: ToolResult) -> None:
        """Count one tool call."""
        self.tool_calls.labels(tool=name, outcome="ok" if result.ok else "error").inc()
        self.tool_latency.labels(tool=name).observe(result.latency_s)

    def observe_run(self, result: RunResult) -> None:
        """Count one finished run."""
        self.runs.labels(status=result.status).inc()
        self.steps.observe(result.tool_steps)
        self.duration.observe(result.duration_s)
        self.tokens.labels(kind="prompt").inc(result.prompt_tokens)
        self.tokens.labels(kind="completion").inc(result.completion_tokens)
