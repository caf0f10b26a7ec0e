"""Function calling: request validation, prompt rendering, call parsing and streaming."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hanlin.serve.errors import RequestError
from hanlin.serve.tool_calls import (
    CLOSE,
    OPEN,
    ContentFilter,
    parse_tool_calls,
    plan_tools,
    render_messages,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK = {"type": "function", "function": {"name": "now"}}


def _plan(choice: Any = None, parallel: bool = True, in_template: bool = False) -> Any:
    plan = plan_tools([WEATHER, CLOCK], choice, parallel, in_template)
    assert plan is not None
    return plan


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        ([{"type": "retrieval"}], None, "tools[0].type"),
        ([{"type": "function", "function": {"name": "has space"}}], None, "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], None,
         "tools[0].function.parameters"),
        ([WEATHER, WEATHER], None, "tools"),
        ([WEATHER], {"type": "function", "function": {"name": "missing"}}, "tool_choice"),
        ([WEATHER], "sometimes", "tool_choice"),
        (None, "required", "tool_choice"),
    ],
)  # fmt: skip
def test_bad_tools_or_tool_choice_name_the_field(tools: Any, choice: Any, param: str) -> None:
    with pytest.raises(RequestError) as err:
        plan_tools(tools, choice, True, False)
    assert err.value.param == param and err.value.code.http_status == 400


def test_tool_choice_none_hides_the_tools_and_forcing_prefills_a_call() -> None:
    assert plan_tools([WEATHER], "none", True, False) is None
    assert plan_tools(None, None, True, False) is None
    assert _plan().prefix == ""
    named = _plan({"type": "function", "function": {"name": "get_weather"}})
    assert named.prefix == OPEN + '\n{"name": "get_weather", "arguments": '
    assert _plan("required").prefix.startswith(OPEN)


def test_a_template_without_tools_gets_a_system_message_and_hermes_tags() -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
    ]
    out = render_messages(history, _plan())
    assert out[0]["role"] == "system" and out[0]["content"].startswith("Be brief.")
    assert '"name": "get_weather"' in out[0]["content"] and "<tools>" in out[0]["content"]
    assert out[2] == {
        "role": "assistant",
        "content": OPEN + '{"name": "get_weather", "arguments": {"city": "Paris"}}' + CLOSE,
    }
    assert out[3] == {"role": "user", "content": "<tool_response>\n18 C, sunny\n</tool_response>"}
    # A template that renders tools gets them structured instead, and no extra system text.
    native = render_messages(history, _plan(in_template=True))
    assert native[0] == {"role": "system", "content": "Be brief."}
    assert native[2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert native[3] == {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"}


def test_bad_arguments_in_the_history_are_a_400() -> None:
    bad = [{"role": "assistant", "tool_calls": [{"function": {"name": "now", "arguments": "{"}}]}]
    with pytest.raises(RequestError) as err:
        render_messages(bad, _plan())
    assert err.value.param == "messages"


def test_calls_are_parsed_with_content_before_them_and_junk_after_ignored() -> None:
    text = (
        "Let me check.\n"
        + OPEN
        + '{"name": "get_weather", "arguments": {"city": "Paris"}}}} trailing'
        + CLOSE
        + OPEN
        + '{"name": "now", "arguments": "{}"}'
        + CLOSE
    )
    content, calls = parse_tool_calls(text, _plan())
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "now"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"] != calls[1]["id"] and calls[0]["id"].startswith("call_")
    _, one = parse_tool_calls(text, _plan(parallel=False))
    assert len(one) == 1


def test_unknown_functions_and_broken_json_stay_plain_content() -> None:
    for text in (
        OPEN + '{"name": "rm_rf", "arguments": {}}' + CLOSE,
        OPEN + '{"name": "get_weather", "arguments": {"city": ' + CLOSE,
        OPEN + '{"name": "get_weather", "arguments": [1, 2]}' + CLOSE,
        "no calls at all",
    ):
        assert parse_tool_calls(text, _plan()) == (text, [])


def test_a_forced_call_that_does_not_parse_returns_the_generated_text_only() -> None:
    plan = _plan({"type": "function", "function": {"name": "get_weather"}})
    content, calls = parse_tool_calls(plan.prefix + "{broken", plan)
    assert calls == [] and content == "{broken"
    content, calls = parse_tool_calls(plan.prefix + '{"city": "Oslo"}}' + CLOSE, plan)
    assert content is None and json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}


def test_the_stream_filter_streams_content_and_holds_back_a_call() -> None:
    f = ContentFilter(_plan())
    pieces = [
        "Sure",
        ", checking",
        " <tool",
        "_call>",
        '{"name": "now", ',
        '"arguments": {}}',
        CLOSE,
    ]
    streamed = "".join(f.feed(p) for p in pieces)
    assert streamed == "Sure, checking "
    rest, calls = f.finish()
    assert rest == "" and calls[0]["function"] == {"name": "now", "arguments": "{}"}
    # A "<" that turns out not to start a call is streamed after all.
    g = ContentFilter(_plan())
    out = g.feed("a <to") + g.feed("y> b")
    rest, calls = g.finish()
    assert out + rest == "a <toy> b" and calls == []
