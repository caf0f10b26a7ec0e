"""OpenAI function calling over any chat model: `tools` in, `tool_calls` out.

The wire protocol is OpenAI's; the model-side protocol is the Hermes one that
Qwen2.5 and many fine-tunes are trained on: the model answers with
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks. A chat
template that renders `tools` itself (Qwen2.5, Llama 3.1, ...) gets the tools
and earlier calls in its own format; for one that ignores them (SmolLM2, plain
ChatML) the tools are described in a system message and earlier calls and
results are written in the same Hermes tags.

`tool_choice`: "auto" (the default with tools) lets the model choose; "none"
hides the tools; "required" and a named function prefill the assistant turn
with the start of a call, so the model can only complete one. Arguments are
read with a JSON decoder that stops at the end of the first object, so trailing
tokens after it do not spoil a call. Output that holds no valid call of a
declared tool is returned as plain content.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.guided import Guide
from hanlin.serve.protocol import ChatResponseMessage, ToolCall

OPEN, CLOSE = "<tool_call>", "</tool_call>"
log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ToolPlan:
    """How one request uses tools."""

    functions: tuple[dict[str, Any], ...]
    """The declared functions (`tools[i].function`)."""
    prefix: str
    """Assistant text prefilled before generation (a forced call's start), else ""."""
    in_template: bool
    """The chat template renders tools itself."""
    parallel: bool = True

    @property
    def names(self) -> set[str]:
        """Names of the declared functions."""
        return {f["name"] for f in self.functions}

    @property
    def forced(self) -> bool:
        """A call is required (by name or not)."""
        return bool(self.prefix)

    def guide(self) -> Guide | None:
        """For a forced call, the grammar of what follows the prefix: the rest of one call
        whose arguments follow the function's parameters schema, so it always parses."""
        if not self.forced:
            return None
        named = [f for f in self.functions if self.prefix == _named_prefix(f["name"])]
        rules, calls = [], []
        for i, fn in enumerate(named or self.functions):
            # "required" leaves the name open: each alternative writes its own.
            head = "" if named else json.dumps(fn["name"] + '", "arguments": ') + " "
            calls.append(f"call_{i}")
            rules.append(f'call_{i}: {head}args_{i} "}}"')
            rules.append(f"args_{i}: %json {json.dumps(_arguments_schema(fn))}")
        return Guide("grammar", "\n".join([f"start: {' | '.join(calls)}", *rules]), "tools")


def _named_prefix(name: str) -> str:
    """The prefill of a call to the function `name`, up to its arguments."""
    return OPEN + "\n" + json.dumps({"name": name})[:-1] + ', "arguments": '


def plan_tools(
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
    parallel: bool,
    in_template: bool,
) -> ToolPlan | None:
    """Validate `tools` and `tool_choice`; None when the request uses no tools."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise RequestError(
                ErrorCode.INVALID_REQUEST, "tool_choice needs a non-empty tools list", "tool_choice"
            )
        return None
    functions = tuple(_function(i, tool) for i, tool in enumerate(tools))
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        raise RequestError(ErrorCode.INVALID_REQUEST, "tools: function names repeat", "tools")
    choice = "auto" if tool_choice is None else tool_choice
    if choice == "none":
        return None
    if choice == "auto":
        prefix = ""
    elif choice == "required":
        prefix = OPEN + '\n{"name": "'
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"tool_choice names function {name!r}, which is not in tools ({', '.join(names)})",
                "tool_choice",
            )
        prefix = _named_prefix(str(name))
    else:
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            "tool_choice",
        )
    return ToolPlan(functions, prefix, in_template, parallel)


def _arguments_schema(fn: dict[str, Any]) -> dict[str, Any]:
    """The grammar of a forced call's arguments: the function's parameters, closed.

    Objects that list their properties admit no others unless the schema says so
    (OpenAI's strict mode): a keyword the function does not take breaks the call
    that a Python tool makes with them. Whitespace is compact, as the arguments are
    re-serialized anyway, so a small model cannot pad a call with newlines until
    max_tokens. A schema the grammar engine refuses holds them to any JSON object.
    """
    schema: dict[str, Any] = _closed(fn["parameters"])
    schema["x-guidance"] = {"whitespace_flexible": False}
    try:
        Guide("json", json.dumps(schema), "tools").validate()
    except RequestError as exc:
        log.warning("tool %s: arguments held to any JSON object: %s", fn["name"], exc.message)
        return {"type": "object", "x-guidance": {"whitespace_flexible": False}}
    return schema


def _closed(schema: Any) -> Any:
    """A copy of `schema` whose objects with `properties` default to no others."""
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def _function(i: int, tool: Any) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise RequestError(
            ErrorCode.INVALID_REQUEST, f'{where}.type must be "function"', f"{where}.type"
        )
    fn = tool.get("function")
    if not isinstance(fn, dict) or not _NAME.match(str(fn.get("name") or "")):
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"{where}.function.name must be 1-64 letters, digits, '_', '.' or '-'",
            f"{where}.function.name",
        )
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise RequestError(
            ErrorCode.INVALID_REQUEST,
            f"{where}.function.parameters must be a JSON schema object",
            f"{where}.function.parameters",
        )
    out = {"name": fn["name"], "parameters": params}
    if fn.get("description"):
        out["description"] = str(fn["description"])
    return out


def system_prompt(functions: tuple[dict[str, Any], ...]) -> str:
    """The tool instructions for a template that does not render tools."""
    listing = "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)
    return (
        "You may call functions to help with the user's request. "
        "The functions, as JSON schemas:\n"
        f"<tools>\n{listing}\n</tools>\n"
        "To call a function, reply with one block per call and nothing else:\n"
        f'{OPEN}{{"name": <function name>, "arguments": <JSON object>}}{CLOSE}\n'
        "When you have what you need, answer the user directly."
    )


def render_messages(messages: list[dict[str, Any]], plan: ToolPlan | None) -> list[dict[str, Any]]:
    """Messages for the chat template: earlier calls and results in a form it can render.

    Each message is `{"role", "content"}` plus, as the client sent them,
    `tool_calls` (assistant) and `tool_call_id` (tool).
    """
    in_template = plan is not None and plan.in_template
    out: list[dict[str, Any]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        calls = m.get("tool_calls") or []
        if role == "assistant" and calls:
            parsed = [_call_of_message(c) for c in calls]
            if in_template:
                out.append(
                    {
                        "role": "assistant",
                        "content": content,
                        "tool_calls": [
                            {"type": "function", "function": {"name": n, "arguments": a}}
                            for n, a in parsed
                        ],
                    }
                )
            else:
                blocks = "\n".join(
                    OPEN + json.dumps({"name": n, "arguments": a}, ensure_ascii=False) + CLOSE
                    for n, a in parsed
                )
                out.append({"role": "assistant", "content": f"{content}\n{blocks}".strip()})
        elif role == "tool" and not in_template:
            # Templates without tool support often refuse a "tool" role: a user turn, tagged.
            out.append({"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"})
        else:
            msg = {"role": role, "content": content}
            if role == "tool" and m.get("tool_call_id"):
                msg["tool_call_id"] = m["tool_call_id"]
            out.append(msg)
    if plan is not None and not plan.in_template:
        instructions = system_prompt(plan.functions)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instructions}"}
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def _call_of_message(call: Any) -> tuple[str, Any]:
    fn = (call or {}).get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"messages: the arguments of tool call {fn.get('name')!r} are not valid JSON",
                "messages",
            ) from None
    return str(fn.get("name") or ""), args if args is not None else {}


def parse_tool_calls(text: str, plan: ToolPlan) -> tuple[str | None, list[dict[str, Any]]]:
    """(content, tool_calls) of the generated `text` (the prefix included)."""
    start = text.find(OPEN)
    if start < 0:
        return text, []
    decoder = json.JSONDecoder()
    calls: list[dict[str, Any]] = []
    for block in text[start:].split(OPEN)[1:]:
        body = block.split(CLOSE, 1)[0]
        brace = body.find("{")
        if brace < 0:
            continue
        try:
            obj, _ = decoder.raw_decode(body[brace:])
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("name") not in plan.names:
            continue
        args = obj.get("arguments", obj.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                continue
        if not isinstance(args, dict):
            continue
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": obj["name"],
                    "arguments": json.dumps(args, ensure_ascii=False),
                },
            }
        )
        if not plan.parallel:
            break
    if not calls:
        return (text[len(plan.prefix) :] if plan.forced else text), []
    content = text[:start].strip()
    return content or None, calls


class ContentFilter:
    """Streams the content that precedes any call; holds back what may start one."""

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.text = plan.prefix
        self._sent = 0
        self._held = plan.forced

    def feed(self, piece: str) -> str:
        """Add generated text; return the content that is safe to stream now."""
        self.text += piece
        if self._held:
            return ""
        marker = self.text.find(OPEN, self._sent)
        if marker >= 0:
            self._held = True
            out, self._sent = self.text[self._sent : marker], marker
            return out
        # Keep back a tail that could be the start of the marker.
        keep = next(
            (k for k in range(len(OPEN) - 1, 0, -1) if self.text.endswith(OPEN[:k])),
            0,
        )
        end = len(self.text) - keep
        out, self._sent = self.text[self._sent : end], max(self._sent, end)
        return out

    def finish(self) -> tuple[str, list[dict[str, Any]]]:
        """At the end: (content not yet streamed, tool calls)."""
        content, calls = parse_tool_calls(self.text, self.plan)
        if calls:
            return "", calls  # the content before the first call has been streamed
        if self.plan.forced:
            return content or "", []  # nothing was streamed: all of it, without the prefix
        return self.text[self._sent :], []


def assistant_message(
    text: str, finish_reason: str | None, plan: ToolPlan | None
) -> tuple[ChatResponseMessage, str | None]:
    """The assistant message of a finished choice (its calls parsed out) and its finish reason."""
    if plan is None:
        return ChatResponseMessage(content=text), finish_reason
    content, calls = parse_tool_calls(plan.prefix + text, plan)
    if not calls:
        return ChatResponseMessage(content=content), finish_reason
    return ChatResponseMessage(
        content=content, tool_calls=[ToolCall(**call) for call in calls]
    ), "tool_calls"
