"""Agent strategies by name: react, rewoo, plan-execute, function-calling."""

from __future__ import annotations

from hanlin.agent.strategies.base import RunContext, RunResult, Step, Strategy, run_strategy
from hanlin.agent.strategies.function_calling import FunctionCalling
from hanlin.agent.strategies.plan_execute import PlanExecute
from hanlin.agent.strategies.react import ReAct
from hanlin.agent.strategies.rewoo import ReWOO

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (ReAct, ReWOO, PlanExecute, FunctionCalling)
}


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; an unknown name is an error that lists the known ones."""
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"strategy: unknown {name!r} (known: {', '.join(STRATEGIES)})") from None


__all__ = [
    "STRATEGIES",
    "RunContext",
    "RunResult",
    "Step",
    "Strategy",
    "get_strategy",
    "run_strategy",
]
