"""Function calling through `hanlin serve` with the official `openai` client (SmolLM2).

The 135M model rarely decides to call a tool on its own, so these tests force
calls with `tool_choice` (the prefilled call start leaves the model only the
arguments to write, held to the function's parameters schema) and check the protocol end to end: the call comes back as
`tool_calls` with JSON-object arguments, streamed or not, a tool result can be
sent back, and bad tool requests are 400s naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from hanlin.dev.fixtures import hanlin_openai

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL = "smol"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
FORCE = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    args = [
        "serve", "--model", str(model_dir), "--served-model-name", MODEL, "--dtype", "float32",
        "--max-model-len", "1024", "--max-seqs", "4", "--kv-cache-mib", "64",
    ]  # fmt: skip
    with hanlin_openai(args, tmp_path_factory.mktemp("serve") / "server.log") as c:
        yield c


def test_a_forced_call_comes_back_as_tool_calls(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=FORCE, max_tokens=48, temperature=0
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)


ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize(
    "ask",
    ["What is 2 plus 40?", "What is the weather in Rome?", "Hello!", "Add seven and five."],
)
def test_a_required_call_names_a_tool_and_its_arguments_follow_the_schema(
    client: openai.OpenAI, ask: str
) -> None:
    import jsonschema

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": ask}], tools=[WEATHER, ADD],
        tool_choice="required", max_tokens=64, temperature=0,
    )  # fmt: skip
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls or []
    jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def test_streamed_call_equals_the_unstreamed_one(client: openai.OpenAI) -> None:
    kwargs = dict(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice=FORCE, max_tokens=48, temperature=0
    )
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    names, args, finish = [], "", None
    for chunk in client.chat.completions.create(stream=True, **kwargs):  # type: ignore[call-overload]
        for c in chunk.choices:
            for call in c.delta.tool_calls or []:
                names.append(call.function.name)
                args += call.function.arguments or ""
            finish = c.finish_reason or finish
    assert finish == "tool_calls"
    assert names == ["get_weather"]
    assert args == whole.choices[0].message.tool_calls[0].function.arguments


def test_tool_choice_none_and_a_tool_result_round_trip(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=16, temperature=0
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason != "tool_calls"
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "18 degrees and sunny"},
    ]
    r = client.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], max_tokens=24, temperature=0
    )  # type: ignore[arg-type]
    assert r.choices[0].message.content or r.choices[0].message.tool_calls
    assert r.usage is not None and r.usage.prompt_tokens > 60  # the tools and the result are in


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        (
            [{"type": "function", "function": {"name": "bad name"}}],
            "auto",
            "tools[0].function.name",
        ),
        ([WEATHER], {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
    ],
)
def test_bad_tool_requests_are_400s_naming_the_field(
    client: openai.OpenAI, tools: list[dict[str, object]], choice: object, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL, messages=ASK, tools=tools, tool_choice=choice, max_tokens=4
        )  # type: ignore[arg-type]
    body = err.value.body
    assert isinstance(body, dict) and body.get("param") == param, body
