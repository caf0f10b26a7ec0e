"""Sampler, stop conditions, logprobs, prefix sharing, cancellation and limits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

GREEDY = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def llm(model_dir: Path) -> LLM:
    return LLM(model_dir, max_model_len=128, max_batch_tokens=256)


def _gen(llm: LLM, prompt: str, params: SamplingParams) -> Any:
    return llm.generate([prompt], params)[0]


def test_seeded_sampling_is_reproducible_and_n_differs(llm: LLM) -> None:
    params = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.95, seed=3, n=3)
    a = _gen(llm, "Once upon a time", params)
    b = _gen(llm, "Once upon a time", params)
    assert [c.token_ids for c in a.outputs] == [c.token_ids for c in b.outputs]
    assert len({tuple(c.token_ids) for c in a.outputs}) > 1


def test_top_k_one_is_greedy(llm: LLM) -> None:
    greedy = _gen(llm, "The capital of France is", GREEDY).outputs[0].token_ids
    sampled = _gen(
        llm, "The capital of France is", replace(GREEDY, temperature=1.3, top_k=1, seed=0)
    )
    assert sampled.outputs[0].token_ids == greedy


def test_stop_string_and_stop_token(llm: LLM, tokenizer: Any) -> None:
    full = _gen(llm, "1, 2, 3, 4,", GREEDY).outputs[0]
    assert full.text.startswith(" 5, 6")
    cut = _gen(llm, "1, 2, 3, 4,", replace(GREEDY, stop=[" 6"])).outputs[0]
    assert cut.text == " 5," and cut.finish_reason == "stop"
    comma = tokenizer(",").input_ids[-1]
    by_id = _gen(llm, "1, 2, 3, 4,", replace(GREEDY, stop_token_ids=[comma])).outputs[0]
    assert by_id.token_ids[-1] == comma and by_id.finish_reason == "stop"


def test_logprobs_match_hf(llm: LLM, hf_model: Any, tokenizer: Any) -> None:
    prompt = "Water boils at 100 degrees"
    ids = tokenizer(prompt).input_ids
    res = _gen(llm, prompt, replace(GREEDY, max_tokens=3, logprobs=2, prompt_logprobs=1))
    out = res.outputs[0]
    seq = ids + out.token_ids
    with torch.no_grad():
        ref = torch.log_softmax(hf_model(torch.tensor([seq])).logits[0], -1)
    assert res.prompt_logprobs is not None and res.prompt_logprobs[0] is None
    for i in range(1, len(ids)):
        assert res.prompt_logprobs[i][0] == pytest.approx(float(ref[i - 1, ids[i]]), abs=1e-3)
    for j, (value, top) in enumerate(out.logprobs):
        row = len(ids) - 1 + j
        assert value == pytest.approx(float(ref[row, seq[row + 1]]), abs=1e-3)
        assert len(top) == 2 and max(top.values()) == pytest.approx(value, abs=1e-4)


def test_max_tokens_zero_scores_the_prompt_only(llm: LLM) -> None:
    res = _gen(llm, "Hello there, friend", SamplingParams(max_tokens=0, prompt_logprobs=0))
    assert res.outputs[0].token_ids == [] and res.outputs[0].finish_reason == "length"
    assert res.prompt_logprobs is not None and len(res.prompt_logprobs) == 4


def test_prefix_blocks_are_shared(llm: LLM) -> None:
    prefix = "You are a careful assistant. Answer briefly and truthfully. " * 3
    first = _gen(llm, prefix + "What is two plus two?", GREEDY)
    hits_before = llm.engine.blocks.prefix_hits
    again = _gen(llm, prefix + "What is two plus two?", GREEDY)
    assert llm.engine.blocks.prefix_hits > hits_before
    assert again.outputs[0].token_ids == first.outputs[0].token_ids


def _metric(llm: LLM, name: str) -> float:
    for line in llm.engine.metrics.render().decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing")


def test_prefix_cache_hits_are_reported_and_counted(llm: LLM, tokenizer: Any) -> None:
    ids = tokenizer("Cached tokens are counted, as OpenAI reports them. " * 4).input_ids
    queries = _metric(llm, "hanlin_prefix_cache_queries_total")
    hits = _metric(llm, "hanlin_prefix_cache_hits_total")
    cached = {}
    for rid in ("first", "second"):
        llm.engine.add_request(rid, ids, GREEDY)
        while llm.engine.has_work():
            for out in llm.engine.step():
                cached[out.request_id] = out.cached_tokens
    block = llm.engine.blocks.block_size
    # The second finds every full prompt block but the one holding the last token.
    assert cached == {"first": 0, "second": (len(ids) - 1) // block * block}
    assert _metric(llm, "hanlin_prefix_cache_queries_total") - queries == 2 * len(ids)
    assert _metric(llm, "hanlin_prefix_cache_hits_total") - hits == cached["second"]


def test_abort_frees_blocks(llm: LLM, tokenizer: Any) -> None:
    engine = llm.engine
    engine.add_request("to-abort", tokenizer("A long story:").input_ids, GREEDY)
    engine.step()
    assert engine.blocks.usage > 0
    engine.abort("to-abort")
    assert engine.blocks.usage == 0 and not engine.has_work()


def test_limits_and_bad_params_are_request_errors(llm: LLM) -> None:
    with pytest.raises(RequestError) as err:
        _gen(llm, "word " * 200, GREEDY)
    assert err.value.code is ErrorCode.CONTEXT_TOO_LONG and "128" in err.value.message
    with pytest.raises(RequestError, match="top_p") as err:
        _gen(llm, "hi", SamplingParams(top_p=0))
    assert err.value.param == "top_p"
