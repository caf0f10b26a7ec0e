"""`hanlin serve` as a real process, driven by the official `openai` client and httpx."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch

from hanlin.dev.fixtures import hanlin_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

API_KEY = "test-key-123"
MODEL = "smol"


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = [
        "serve", "--model", str(model_dir), "--served-model-name", MODEL,
        "--max-model-len", "256", "--max-seqs", "4", "--max-queue", "4", "--kv-cache-mib", "64",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with hanlin_server(args, log, env=dict(os.environ, HANLIN_API_KEY=API_KEY)) as url:
        yield url


@pytest.fixture(scope="module")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)


def _metric(server: str, name: str) -> float:
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_model_retrieve(client: openai.OpenAI) -> None:
    card = client.models.retrieve(MODEL)
    assert card.id == MODEL and card.owned_by == "hanlin"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-nope")


def test_logit_bias_penalties_and_min_tokens(client: openai.OpenAI, tokenizer: Any) -> None:
    forced = tokenizer(" Paris", add_special_tokens=False).input_ids[0]
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 4, "temperature": 0}
    out = client.completions.create(
        **kwargs, prompt="Once upon a time", logit_bias={str(forced): 100}
    )
    assert out.choices[0].text == " Paris" * 4
    chat = client.chat.completions.create(
        **kwargs, messages=[{"role": "user", "content": "Hi"}], logit_bias={str(forced): 100}
    )
    assert chat.choices[0].message.content == " Paris" * 4
    count = {"model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0}
    plain = client.completions.create(**count).choices[0].text
    penalized = client.completions.create(**count, presence_penalty=2.0, frequency_penalty=1.0)
    assert penalized.choices[0].text != plain
    # vLLM's extensions ride in the body, as the client sends them.
    held = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], temperature=0,
        max_tokens=40, extra_body={"min_tokens": 30, "repetition_penalty": 1.1, "min_p": 0.05},
    )  # fmt: skip
    assert held.usage is not None and held.usage.completion_tokens >= 30


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"logit_bias": {"99999999": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 500}}, "logit_bias"),
        ({"best_of": 3}, "best_of"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"type": "nope"}},
                }
            },
            "response_format",
        ),
        ({"guided_regex": "[a-z"}, "guided_regex"),
        ({"guided_choice": []}, "guided_choice"),
        ({"structured_outputs": {"choice": ["a"]}, "guided_regex": "a"}, "guided_regex"),
        ({"min_tokens": 9}, "min_tokens"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"min_p": 1.5}, "min_p"),
    ],
)
def test_unsupported_or_bad_options_are_400s_naming_the_field(
    server: str, extra: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 4} | extra
    r = httpx.post(
        f"{server}/v1/completions", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_structured_output(client: openai.OpenAI) -> None:
    import jsonschema

    ask = [{"role": "user", "content": "Describe Ada Lovelace as JSON."}]
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }
    r = client.chat.completions.create(
        model=MODEL,
        messages=ask,
        max_tokens=60,
        temperature=0,
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert r.choices[0].finish_reason == "stop"
    text = r.choices[0].message.content or ""
    jsonschema.validate(json.loads(text), PERSON)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model=MODEL, messages=ask, max_tokens=60, temperature=0, response_format=fmt,  # type: ignore[arg-type]
            stream=True,
        )
        if c.choices
    )  # fmt: skip
    assert streamed == text
    anything = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name two colors, in JSON."}],
        max_tokens=80, temperature=0, response_format={"type": "json_object"},
    )  # fmt: skip
    assert isinstance(json.loads(anything.choices[0].message.content or ""), dict)
    # vLLM's ways of asking, through extra_body, on completions too.
    picked = client.completions.create(
        model=MODEL, prompt="The capital of Italy is", max_tokens=8, temperature=0,
        extra_body={"structured_outputs": {"choice": ["Rome", "Milan", "Turin"]}},
    )  # fmt: skip
    assert picked.choices[0].text in ("Rome", "Milan", "Turin")
    date = client.completions.create(
        model=MODEL, prompt="Today's date:", max_tokens=12, temperature=0,
        extra_body={"guided_regex": "[0-9]{4}-[0-9]{2}-[0-9]{2}"},
    )  # fmt: skip
    assert re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", date.choices[0].text)


def test_cached_prompt_tokens_are_reported(client: openai.OpenAI, server: str) -> None:
    prompt = "A prompt long enough to fill a few cache blocks, sent twice. " * 4
    first = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    second = client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, temperature=0)
    assert first.usage is not None and second.usage is not None
    details = second.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens is not None
    assert 16 <= details.cached_tokens < second.usage.prompt_tokens
    assert details.cached_tokens % 16 == 0
    assert _metric(server, "hanlin_prefix_cache_hits_total") >= details.cached_tokens


def test_tokenize_and_detokenize(server: str, client: openai.OpenAI, tokenizer: Any) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    text = "Water boils at 100 degrees."
    r = httpx.post(f"{server}/tokenize", json={"model": MODEL, "prompt": text}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == tokenizer(text).input_ids and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == 256
    back = httpx.post(f"{server}/detokenize", json={"tokens": body["tokens"]}, headers=auth)
    assert back.json() == {"prompt": text}
    # Chat messages count as chat completions see them: the usage of a 1-token reply.
    messages = [{"role": "user", "content": "Hi there"}]
    chat = httpx.post(f"{server}/tokenize", json={"messages": messages}, headers=auth).json()
    done = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1)  # type: ignore[arg-type]
    assert done.usage is not None and chat["count"] == done.usage.prompt_tokens
    for bad, param in (
        ({"tokens": [10**9]}, "tokens"),
        ({"prompt": "a", "messages": messages}, "prompt"),
        ({"model": "nope", "prompt": "a"}, "model"),
    ):
        path = "/detokenize" if "tokens" in bad else "/tokenize"
        r = httpx.post(f"{server}{path}", json=bad, headers=auth)
        assert r.status_code in (400, 404) and r.json()["error"]["param"] == param, r.text
    assert httpx.post(f"{server}/tokenize", json={"prompt": "a"}).status_code == 401


def test_completion_greedy_is_deterministic(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "prompt": "The capital of France is"}
    a = client.completions.create(**kwargs, max_tokens=12, temperature=0)
    b = client.completions.create(**kwargs, max_tokens=12, temperature=0)
    assert a.choices[0].text == b.choices[0].text and a.choices[0].text
    assert a.choices[0].finish_reason in ("length", "stop")
    assert a.usage is not None and a.usage.prompt_tokens == 5
    assert a.usage.total_tokens == a.usage.prompt_tokens + a.usage.completion_tokens


def test_echo_prompt_logprobs_match_hf(
    client: openai.OpenAI, model_dir: Path, tokenizer: Any, hf_model: Any
) -> None:
    text = "Water boils at 100 degrees Celsius at sea level."
    ids = tokenizer(text).input_ids
    res = client.completions.create(
        model=MODEL, prompt=ids, max_tokens=0, echo=True, logprobs=1, temperature=0
    )
    lp = res.choices[0].logprobs
    assert lp is not None and res.choices[0].text == text
    assert len(lp.token_logprobs) == len(ids) and lp.token_logprobs[0] is None
    with torch.no_grad():
        ref = torch.log_softmax(hf_model(torch.tensor([ids])).logits[0].float(), -1)
    expected = [float(ref[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=1e-3)
    assert "".join(lp.tokens) == text and lp.text_offset[0] == 0


def test_chat_and_stream_agree(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Name a color."}]
    whole = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=16, temperature=0, logprobs=True, top_logprobs=2
    )
    choice = whole.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.logprobs is not None and choice.logprobs.content
    assert len(choice.logprobs.content[0].top_logprobs) == 2
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, reasons, usage = [], [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    assert "".join(pieces) == choice.message.content
    assert reasons[-1] == choice.finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_sampling_seed_n_and_stop(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 1.0,
    }  # fmt: skip
    a = client.completions.create(**kwargs, seed=7, n=2)
    b = client.completions.create(**kwargs, seed=7, n=2)
    assert [c.text for c in a.choices] == [c.text for c in b.choices]
    assert len(a.choices) == 2 and [c.index for c in a.choices] == [0, 1]
    greedy = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0
    )
    stop = greedy.choices[0].text.strip()[:2]
    cut = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=[stop]
    )
    assert stop not in cut.choices[0].text and cut.choices[0].finish_reason == "stop"


def test_errors(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="hi", max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256"):
        client.completions.create(model=MODEL, prompt="word " * 300, max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model=MODEL, prompt="hi", temperature=5)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong").models.list()
    bad = httpx.post(
        f"{server}/v1/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_overload_gives_429_and_server_survives(server: str) -> None:
    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        body = {"model": MODEL, "prompt": "Tell me a story", "max_tokens": 8, "temperature": 0}
        async with httpx.AsyncClient(base_url=server, headers=headers, timeout=300) as c:
            return await asyncio.gather(*(c.post("/v1/completions", json=body) for _ in range(24)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429} and 429 in codes and 200 in codes
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.headers["Retry-After"] and refused.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(f"{server}/health").status_code == 200


def test_aborted_streams_free_the_cache(server: str) -> None:
    async def one(c: httpx.AsyncClient) -> None:
        body = {
            "model": MODEL, "prompt": "Count to one hundred: 1, 2, 3,", "max_tokens": 200,
            "temperature": 0, "stream": True,
        }  # fmt: skip
        async with c.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code == 429:
                return
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    break  # first generated text: blocks are held; now hang up

    async def run() -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=server, headers=headers, timeout=300) as c:
            for _ in range(50):
                await asyncio.gather(*(one(c) for _ in range(4)))

    asyncio.run(run())
    deadline = time.monotonic() + 30
    while _metric(server, "hanlin_kv_cache_usage_ratio") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _metric(server, "hanlin_kv_cache_usage_ratio") == 0
    assert _metric(server, "hanlin_num_requests_running") == 0
    assert _metric(server, "hanlin_requests_aborted_total") > 0
