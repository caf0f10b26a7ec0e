"""Tool specs ({builtin: NAME, config} or {remote: {url}}) → Tool objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hanlin.agent.tooling import Tool

JSONDict = dict[str, Any]


def _builtin_factories() -> dict[str, Callable[[JSONDict | None], Tool]]:
    # Imported here so that `hanlin tools serve --tool calculator` does not load httpx etc.
    from hanlin.agent.builtins.calculator import calculator_tool
    from hanlin.agent.builtins.http_tool import http_tool
    from hanlin.agent.builtins.python_tool import python_tool
    from hanlin.agent.builtins.retrieval import retrieval_tool

    return {
        "calculator": calculator_tool,
        "python": python_tool,
        "http": http_tool,
        "retrieval": retrieval_tool,
    }


BUILTINS = ("calculator", "python", "http", "retrieval")


def builtin_tool(name: str, config: JSONDict | None = None, where: str = "tools") -> Tool:
    """A built-in tool by name; errors name the field."""
    factories = _builtin_factories()
    if name not in factories:
        raise ValueError(f"{where}.builtin: unknown tool {name!r} (known: {', '.join(BUILTINS)})")
    try:
        return factories[name](config)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def tools_from_specs(specs: list[JSONDict]) -> list[Tool]:
    """Every tool the specs name; a remote spec contributes every tool its server describes."""
    from hanlin.agent.remote import remote_tools

    tools: list[Tool] = []
    for i, spec in enumerate(specs):
        where = f"tools[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: must be an object with 'builtin' or 'remote'")
        if "builtin" in spec:
            extra = sorted(set(spec) - {"builtin", "config"})
            if extra:
                raise ValueError(f"{where}: unknown fields {extra}")
            tools.append(builtin_tool(str(spec["builtin"]), spec.get("config") or {}, where))
        elif "remote" in spec:
            remote = spec["remote"]
            if not isinstance(remote, dict) or not isinstance(remote.get("url"), str):
                raise ValueError(f"{where}.remote.url: required, the tool server's base URL")
            offered = remote_tools(remote["url"])
            wanted = remote.get("tools")
            if wanted:
                missing = sorted(set(wanted) - {t.name for t in offered})
                if missing:
                    raise ValueError(f"{where}.remote.tools: the server has no tools {missing}")
                offered = [t for t in offered if t.name in wanted]
            tools.extend(offered)
        else:
            raise ValueError(f"{where}: must have 'builtin' or 'remote'")
    return tools


def parse_tool_flag(value: str) -> JSONDict:
    """A CLI --tool value: NAME, NAME:{json config}, or an http(s) URL of a tool server."""
    import json

    if value.startswith(("http://", "https://")):
        return {"remote": {"url": value}}
    name, sep, raw = value.partition(":")
    if not sep:
        return {"builtin": name}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--tool {value!r}: config after ':' must be JSON ({exc.msg})") from None
    return {"builtin": name, "config": config}
