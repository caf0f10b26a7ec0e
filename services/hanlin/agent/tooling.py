"""Tools: typed Python functions whose JSON schema comes from their signature.

A tool raises `ToolError` for failures the model should see and recover from
(bad input, a refused host, a timeout); anything else is a bug and propagates.
Arguments that do not match the signature are also the model's mistake, so they
come back as data too.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

JSONDict = dict[str, Any]


class ToolError(Exception):
    """An expected tool failure; its message is shown to the model as the observation."""


@dataclass
class ToolResult:
    """What a tool call returns to the agent loop: output on success, an error otherwise."""

    ok: bool
    output: str = ""
    error: str = ""
    latency_s: float = 0.0

    def observation(self) -> str:
        """The text the model sees for this call."""
        return self.output if self.ok else f"Error: {self.error}"


@dataclass
class Tool:
    """A callable tool with a name, a description and a JSON schema for its arguments."""

    name: str
    description: str
    parameters: JSONDict
    call: Callable[[JSONDict], str]
    # "builtin", "remote" or "function": shown by GET /v1/tools.
    source: str = "function"

    def openai_spec(self) -> JSONDict:
        """The tool in OpenAI `tools` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_ARG_LINE = re.compile(r"^(\s*)(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (summary, {argument: description})."""
    if not doc:
        return "", {}
    summary: list[str] = []
    args: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    arg_indent: int | None = None
    for line in inspect.cleandoc(doc).splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current, arg_indent = "args", None, None
            continue
        if stripped.endswith(":") and stripped[:-1] in ("Returns", "Raises", "Examples", "Example"):
            section = "other"
            continue
        if section == "summary":
            if not stripped and summary:
                section = "body"
            elif stripped:
                summary.append(stripped)
        elif section == "args" and stripped:
            match = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(2)
                args[current] = match.group(3).strip()
            elif current:
                args[current] = f"{args[current]} {stripped}"
    return " ".join(summary), args


def _strip_titles(schema: Any) -> Any:
    # pydantic adds "title" everywhere; models read the description instead.
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, source: str = "function"
) -> Any:
    """Make a `Tool` from a typed function; usable as `@tool` or `tool(fn, name=...)`."""

    def build(func: Callable[..., Any]) -> Tool:
        return function_tool(func, name=name, source=source)

    return build(fn) if fn is not None else build


def function_tool(
    func: Callable[..., Any], *, name: str | None = None, source: str = "function"
) -> Tool:
    """Build a `Tool` whose schema comes from `func`'s type hints and docstring."""
    summary, arg_docs = parse_docstring(func.__doc__)
    hints = get_type_hints(func)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {func.__name__}: *args/**kwargs cannot be described")
        if pname not in hints:
            raise TypeError(f"tool {func.__name__}: parameter {pname!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[pname] = (hints[pname], Field(default, description=arg_docs.get(pname)))
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{func.__name__}_args", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = _strip_titles(model.model_json_schema())
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    tool_name = name or func.__name__

    def call(arguments: JSONDict) -> str:
        try:
            parsed = model.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {tool_name}: {problems}") from None
        result = func(**{k: getattr(parsed, k) for k in fields})
        return result if isinstance(result, str) else json.dumps(result, default=str)

    return Tool(
        name=tool_name,
        description=summary or tool_name,
        parameters=schema,
        call=call,
        source=source,
    )


@dataclass
class Toolbox:
    """The tools one agent may call, by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> Toolbox:
        """A toolbox holding `tools`; names must be unique."""
        box = cls()
        for t in tools:
            box.add(t)
        return box

    def add(self, t: Tool) -> None:
        """Add a tool; a second tool with the same name is a configuration error."""
        if t.name in self.tools:
            raise ValueError(f"tools: duplicate tool name {t.name!r}")
        self.tools[t.name] = t

    def names(self) -> list[str]:
        """Tool names in insertion order."""
        return list(self.tools)

    def describe(self) -> str:
        """One line per tool, for text prompts: name, description, argument schema."""
        return "\n".join(
            f"- {t.name}: {t.description} Arguments (JSON schema): "
            f"{json.dumps(t.parameters['properties'])}"
            for t in self.tools.values()
        )

    def invoke(self, name: str, arguments: Any) -> ToolResult:
        """Call a tool; expected failures come back as `ToolResult(ok=False)`, bugs raise."""
        start = time.perf_counter()
        t = self.tools.get(name)
        if t is None:
            known = ", ".join(self.tools) or "none"
            return ToolResult(ok=False, error=f"unknown tool {name!r} (available: {known})")
        if not isinstance(arguments, dict):
            return ToolResult(
                ok=False, error=f"arguments for {name} must be a JSON object, got {arguments!r}"
            )
        try:
            output = t.call(arguments)
        except ToolError as exc:
            return ToolResult(ok=False, error=str(exc), latency_s=time.perf_counter() - start)
        return ToolResult(ok=True, output=output, latency_s=time.perf_counter() - start)
