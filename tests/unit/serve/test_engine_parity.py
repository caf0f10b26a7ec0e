"""Greedy output equals HF transformers token for token, batched, chunked and preempted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams


@pytest.mark.parametrize(
    ("options", "expect_preemption"),
    [
        # A small step budget forces chunked prefill interleaved with decodes.
        ({"max_batch_tokens": 24}, False),
        # Seven blocks of 16 tokens cannot hold five 30-token sequences: preemption by recompute.
        ({"num_blocks": 7, "block_size": 16, "max_batch_tokens": 64}, True),
    ],
    ids=["chunked", "preempted"],
)
def test_greedy_matches_hf_generate(
    model_dir: Path,
    hf_greedy: dict[str, list[int]],
    tokenizer: Any,
    prompts: list[str],
    options: dict[str, int],
    expect_preemption: bool,
) -> None:
    llm = LLM(model_dir, **options)
    results = llm.generate(prompts, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True))
    for prompt, result in zip(prompts, results, strict=True):
        tokens = result.outputs[0].token_ids
        assert tokens == hf_greedy[prompt], prompt
        # Incremental detokenization agrees with a one-shot decode.
        assert result.outputs[0].text == tokenizer.decode(tokens, skip_special_tokens=True)
        assert result.outputs[0].finish_reason == "length"
    assert (llm.engine.scheduler.num_preemptions > 0) == expect_preemption
    assert llm.engine.blocks.usage == 0.0
