"""Logits processors (min_tokens, logit_bias, repetition/frequency/presence penalties).

Each is checked against an independent reference: HF transformers' own processors
where it has them (repetition_penalty, min_new_tokens), else a greedy loop over the
HF model applying OpenAI's documented formula.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from hanlin.serve.errors import RequestError
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

GREEDY = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(model_dir: Path) -> LLM:
    return LLM(model_dir, max_model_len=256, max_batch_tokens=256)


def test_repetition_penalty_equals_hf(llm: LLM, hf_generate: Any, prompts: list[str]) -> None:
    # All prompts at once: rows with and without the penalty share batches.
    params = [replace(GREEDY, repetition_penalty=1.3) for _ in prompts] + [GREEDY]
    results = llm.generate([*prompts, prompts[2]], params)
    for prompt, res in zip(prompts, results, strict=False):
        want = hf_generate(
            prompt, max_new_tokens=20, repetition_penalty=1.3, eos_token_id=None, pad_token_id=0
        )
        assert res.outputs[0].token_ids == want, prompt
    # The unpenalized row in the same batch is untouched: it repeats the count as before.
    plain = hf_generate(prompts[2], max_new_tokens=20, eos_token_id=None, pad_token_id=0)
    assert results[-1].outputs[0].token_ids == plain
    assert results[2].outputs[0].token_ids != plain


def _openai_penalty_reference(
    hf_model: Any, tokenizer: Any, prompt: str, steps: int, frequency: float, presence: float
) -> list[int]:
    """Greedy with OpenAI's formula: mu[j] - c[j] * frequency - (c[j] > 0) * presence."""
    ids = tokenizer(prompt).input_ids
    out: list[int] = []
    for _ in range(steps):
        with torch.no_grad():
            logits = hf_model(torch.tensor([ids + out])).logits[0, -1].double()
        for token in set(out):
            count = out.count(token)
            logits[token] -= count * frequency + presence
        out.append(int(torch.argmax(logits)))
    return out


@pytest.mark.parametrize(
    ("frequency", "presence"), [(0.8, 0.0), (0.0, 1.5), (0.4, 0.6), (-0.5, 0.0)]
)
def test_frequency_and_presence_penalties_follow_openai_formula(
    llm: LLM, hf_model: Any, tokenizer: Any, frequency: float, presence: float
) -> None:
    prompt = "1, 2, 3, 4,"
    got = (
        llm.generate(
            [prompt], replace(GREEDY, frequency_penalty=frequency, presence_penalty=presence)
        )[0]
        .outputs[0]
        .token_ids
    )
    want = _openai_penalty_reference(hf_model, tokenizer, prompt, 20, frequency, presence)
    assert got == want


def test_presence_penalty_changes_a_repetitive_greedy_run(llm: LLM) -> None:
    plain = llm.generate(["1, 2, 3, 4,"], GREEDY)[0].outputs[0].token_ids
    penalized = llm.generate(["1, 2, 3, 4,"], replace(GREEDY, presence_penalty=2.0))[0]
    ids = penalized.outputs[0].token_ids
    # The count repeats ", " forever unpenalized; a strong presence penalty breaks that.
    assert ids != plain
    assert len(set(ids)) > len(set(plain))


def test_logit_bias_forces_and_bans_tokens(llm: LLM, hf_model: Any, tokenizer: Any) -> None:
    prompt = "The capital of France is"
    forced = tokenizer(" Berlin", add_special_tokens=False).input_ids[0]
    out = llm.generate([prompt], replace(GREEDY, max_tokens=5, logit_bias={forced: 100.0}))
    assert out[0].outputs[0].token_ids == [forced] * 5

    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = hf_model(ids).logits[0, -1]
    first, second = torch.topk(logits, 2).indices.tolist()
    banned = llm.generate(
        [prompt], replace(GREEDY, max_tokens=1, logit_bias={first: -100.0}, logprobs=1)
    )[0].outputs[0]
    assert banned.token_ids == [second]
    # Logprobs stay the model's own distribution, as vLLM reports them by default.
    chosen_lp, _ = banned.logprobs[0]
    assert chosen_lp == pytest.approx(float(torch.log_softmax(logits, -1)[second]), abs=1e-4)


def test_min_tokens_equals_hf_min_new_tokens(llm: LLM, hf_model: Any, tokenizer: Any) -> None:
    chat = [{"role": "user", "content": "Say hello."}]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt).input_ids
    free = llm.generate([ids], SamplingParams(max_tokens=60, temperature=0))[0].outputs[0]
    assert free.finish_reason == "stop", "the reply should end by itself"
    natural = len(free.token_ids)
    minimum = natural + 6
    held = llm.generate([ids], SamplingParams(max_tokens=60, temperature=0, min_tokens=minimum))[
        0
    ].outputs[0]
    assert len(held.token_ids) >= minimum
    with torch.no_grad():
        ref = hf_model.generate(
            torch.tensor([ids]), do_sample=False, max_new_tokens=60, min_new_tokens=minimum
        )[0, len(ids) :].tolist()
    assert held.token_ids == ref[: len(held.token_ids)]
    assert len(held.token_ids) == len(ref) or held.finish_reason == "length"


def test_min_tokens_bars_stop_token_ids(llm: LLM, tokenizer: Any) -> None:
    comma = tokenizer(",").input_ids[-1]
    cut = llm.generate(["1, 2, 3, 4,"], replace(GREEDY, stop_token_ids=[comma]))[0].outputs[0]
    assert cut.token_ids.index(comma) == len(cut.token_ids) - 1 < 5
    held = llm.generate(["1, 2, 3, 4,"], replace(GREEDY, stop_token_ids=[comma], min_tokens=5))[
        0
    ].outputs[0]
    assert comma not in held.token_ids[:5]
    assert len(held.token_ids) >= 5


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"logit_bias": {10**7: 1.0}}, "logit_bias"),
        ({"logit_bias": {5: 101.0}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"stop_token_ids": [10**7]}, "stop_token_ids"),
        ({"min_tokens": 50}, "min_tokens"),
        ({"min_tokens": -1}, "min_tokens"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3.0}, "frequency_penalty"),
    ],
)
def test_bad_processor_params_name_the_field(llm: LLM, change: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as err:
        llm.generate(["hello"], replace(GREEDY, **change))
    assert err.value.param == param
    assert param in str(err.value)


def test_min_p_keeps_only_tokens_near_the_likeliest(llm: LLM) -> None:
    import math

    prompt = "Once upon a time"
    greedy = llm.generate([prompt], GREEDY)[0].outputs[0].token_ids
    only_top = llm.generate([prompt], replace(GREEDY, temperature=1.5, min_p=1.0, seed=4))
    assert only_top[0].outputs[0].token_ids == greedy
    sampled = llm.generate(
        [prompt] * 4,
        [replace(GREEDY, temperature=1.0, min_p=0.3, seed=s, logprobs=1) for s in range(4)],
    )
    outs = [r.outputs[0] for r in sampled]
    assert len({tuple(o.token_ids) for o in outs}) > 1  # still sampling
    for out in outs:
        for chosen, top in out.logprobs:
            assert chosen >= max(top.values()) + math.log(0.3) - 1e-4


def test_skip_special_tokens_can_be_turned_off(llm: LLM, tokenizer: Any) -> None:
    chat = [{"role": "user", "content": "Say hello."}]
    ids = tokenizer.apply_chat_template(
        chat, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    params = SamplingParams(max_tokens=48, temperature=0, ignore_eos=True)
    shown = llm.generate([ids], replace(params, skip_special_tokens=False))[0].outputs[0]
    hidden = llm.generate([ids], params)[0].outputs[0]
    assert shown.token_ids == hidden.token_ids and tokenizer.eos_token_id in shown.token_ids
    assert tokenizer.eos_token in shown.text and tokenizer.eos_token not in hidden.text
