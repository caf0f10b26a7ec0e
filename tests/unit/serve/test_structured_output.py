"""Structured output: JSON schemas, regexes, choices and grammars hold the output.

Validity is checked with independent tools (json + jsonschema, Python's re); that
the engine applies the grammar's mask rightly is checked against a greedy loop over
the HF model whose allowed tokens are found by brute force over the vocabulary.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from hanlin.serve.errors import RequestError
from hanlin.serve.guided import Guide
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
GREEDY = SamplingParams(max_tokens=80, temperature=0)


@pytest.fixture(scope="module")
def llm(model_dir: Path) -> LLM:
    return LLM(model_dir, max_model_len=512, max_batch_tokens=256)


def _chat(tokenizer: Any, text: str) -> list[int]:
    return list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
            return_dict=False,
        )
    )  # fmt: skip


def test_json_schema_holds_greedy_and_sampled_output(llm: LLM, tokenizer: Any) -> None:
    asks = [
        "Describe Alice, a 30 year old engineer, as JSON.",
        "Who wrote Hamlet? Answer in JSON.",
        "Tell me a joke.",
    ]
    guide = Guide.of("json", PERSON, "response_format")
    # Guided and free rows share batches; sampling must stay inside the schema too.
    prompts = [_chat(tokenizer, a) for a in asks] * 2 + [_chat(tokenizer, asks[0])]
    params = [replace(GREEDY, guide=guide)] * 3
    params += [replace(GREEDY, guide=guide, temperature=1.0, seed=s) for s in range(3)]
    params += [GREEDY]
    results = llm.generate(prompts, params)
    for res in results[:6]:
        out = res.outputs[0]
        assert out.finish_reason == "stop", out.text
        jsonschema.validate(json.loads(out.text), PERSON)
    assert not results[-1].outputs[0].text.lstrip().startswith("{")


def test_json_object_is_any_object(llm: LLM, tokenizer: Any) -> None:
    guide = Guide.of("json", {"type": "object"}, "response_format")
    out = llm.generate(
        [_chat(tokenizer, "List three fruits and their colors.")],
        replace(GREEDY, max_tokens=150, guide=guide),
    )[0].outputs[0]
    assert out.finish_reason == "stop", out.text
    assert isinstance(json.loads(out.text), dict)


@pytest.mark.parametrize(
    ("kind", "spec", "check"),
    [
        ("regex", r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")),
        (
            "regex",
            r"(yes|no), because [a-z ]{5,30}\.",
            re.compile(r"(yes|no), because [a-z ]{5,30}\."),
        ),
        ("grammar", 'root ::= "red" | "green" | "blue"', re.compile("red|green|blue")),
        (
            "grammar",
            'start: NUMBER " + " NUMBER\nNUMBER: /[1-9][0-9]?/',
            re.compile(r"[1-9][0-9]? \+ [1-9][0-9]?"),
        ),
    ],
)
def test_regex_and_grammar_hold(
    llm: LLM, tokenizer: Any, kind: str, spec: str, check: re.Pattern[str]
) -> None:
    asks = ["What is the date today?", "Is the sky blue?", "Write a sum."]
    out = llm.generate(
        [_chat(tokenizer, a) for a in asks], replace(GREEDY, guide=Guide.of(kind, spec, kind))
    )
    for res in out:
        assert res.outputs[0].finish_reason == "stop"
        assert check.fullmatch(res.outputs[0].text), res.outputs[0].text


def _reference_choice(
    hf_model: Any, tokenizer: Any, prompt: list[int], choices: list[str]
) -> list[int]:
    """Greedy over HF logits, each step allowing only tokens that keep the text a prefix
    of some choice (found by decoding the whole vocabulary), until a choice is complete.

    Once a single choice remains the rest is forced, and llguidance writes forced text in
    its canonical tokenization (the model sees the tokens it was trained on); so does
    this reference.
    """
    pieces = [tokenizer.decode([t]) for t in range(hf_model.config.vocab_size)]
    out: list[int] = []
    text = ""
    while text not in choices:
        left = [c for c in choices if c.startswith(text)]
        if len(left) == 1:
            allowed = tokenizer.encode(left[0][len(text) :], add_special_tokens=False)[:1]
        else:
            allowed = [
                t for t, p in enumerate(pieces) if p and any(c.startswith(text + p) for c in left)
            ]
        with torch.no_grad():
            logits = hf_model(torch.tensor([prompt + out])).logits[0, -1]
        token = max(allowed, key=lambda t: float(logits[t]))
        out.append(token)
        text += pieces[token]
    return out


def test_choice_mask_equals_a_brute_force_reference(
    llm: LLM, hf_model: Any, tokenizer: Any
) -> None:
    choices = ["Paris", "London", "Berlin", "Madrid", "Rome"]
    asks = ["What is the capital of Spain?", "Name a city in England.", "Where is the Colosseum?"]
    prompts = [_chat(tokenizer, a) for a in asks]
    got = llm.generate(prompts, replace(GREEDY, guide=Guide.of("choice", choices, "choice")))
    for prompt, res in zip(prompts, got, strict=True):
        out = res.outputs[0]
        assert out.text in choices and out.finish_reason == "stop"
        want = _reference_choice(hf_model, tokenizer, prompt, choices)
        assert out.token_ids[: len(want)] == want
        # After a full choice only the end may follow.
        assert len(out.token_ids) - len(want) <= 1


def test_guided_output_survives_preemption(model_dir: Path, llm: LLM, tokenizer: Any) -> None:
    # Twelve blocks of 16 tokens cannot hold six ~100-token sequences: recompute.
    tiny = LLM(model_dir, num_blocks=12, block_size=16, max_batch_tokens=64)
    guide = Guide.of("json", PERSON, "response_format")
    asks = [f"Describe person number {i} as JSON, with the languages they speak." for i in range(6)]
    params = replace(GREEDY, max_tokens=60, guide=guide)
    prompts = [_chat(tokenizer, a) for a in asks]
    squeezed = tiny.generate(prompts, params)
    assert tiny.engine.scheduler.num_preemptions > 0
    roomy = llm.generate(prompts, params)
    for a, b in zip(squeezed, roomy, strict=True):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids


def test_min_tokens_cannot_push_past_a_finished_grammar(llm: LLM, tokenizer: Any) -> None:
    guide = Guide.of("choice", ["yes", "no"], "choice")
    out = llm.generate(
        [_chat(tokenizer, "Is water wet?")], replace(GREEDY, min_tokens=10, guide=guide)
    )[0].outputs[0]
    assert out.text in ("yes", "no")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("regex", "[a-z"),
        ("json", {"type": "objectx"}),
        ("json", "{not json"),
        ("choice", []),
        ("choice", ["a", ""]),
        ("grammar", "start: undefined_rule"),
    ],
)
def test_bad_guides_are_request_errors_naming_the_field(llm: LLM, kind: str, value: Any) -> None:
    with pytest.raises(RequestError) as err:
        llm.generate(["hi"], replace(GREEDY, guide=Guide.of(kind, value, "response_format")))
    assert err.value.param == "response_format"
    assert not llm.engine.has_work()
