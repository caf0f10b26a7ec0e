"""The python tool: run a snippet in the sandbox and return what it printed."""

from __future__ import annotations

from typing import Any

from hanlin.agent.sandbox import Sandbox, SandboxLimits
from hanlin.agent.tooling import Tool, ToolError, function_tool

_LIMIT_FIELDS = {
    "cpuSeconds": "cpu_seconds",
    "memoryBytes": "memory_bytes",
    "fileBytes": "file_bytes",
    "processes": "processes",
    "wallSeconds": "wall_seconds",
    "timeoutSeconds": "wall_seconds",
    "outputBytes": "output_bytes",
}


def limits_from_config(config: dict[str, Any]) -> SandboxLimits:
    """SandboxLimits from a tool config (camelCase keys, as in an AgentService spec)."""
    unknown = sorted(set(config) - set(_LIMIT_FIELDS))
    if unknown:
        raise ValueError(
            f"tools[python].config: unknown fields {unknown} (known: {sorted(_LIMIT_FIELDS)})"
        )
    kwargs: dict[str, Any] = {}
    for key, attr in _LIMIT_FIELDS.items():
        if key in config:
            value = config[key]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"tools[python].config.{key}: must be a positive number")
            kwargs[attr] = value if attr == "wall_seconds" else int(value)
    return SandboxLimits(**kwargs)


def python_tool(config: dict[str, Any] | None = None, sandbox: Sandbox | None = None) -> Tool:
    """The sandboxed python tool; `config` sets the limits."""
    box = sandbox or Sandbox(limits_from_config(config or {}))

    def python(code: str) -> str:
        """Run Python 3 code in a fresh sandboxed process and return what it printed.

        Args:
            code: A complete Python program; use print() to show results. No network,
                no access to files outside its own empty working directory.
        """
        result = box.run(code)
        if result.killed:
            raise ToolError(
                f"killed: {result.killed}"
                + (f"; output so far: {result.stdout[-2000:]}" if result.stdout else "")
            )
        if result.exit_code != 0:
            tail = result.stderr.strip().splitlines()[-3:]
            raise ToolError(f"exit status {result.exit_code}: " + " | ".join(tail))
        return result.stdout if result.stdout else "(no output)"

    return function_tool(python, source="builtin")
