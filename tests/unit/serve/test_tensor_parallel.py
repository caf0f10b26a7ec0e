"""TP=2 over gloo: the same greedy tokens as HF, and logits equal TP=1 within tolerance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hanlin.serve.llm import LLM
from hanlin.serve.model import TensorParallel, load_model
from hanlin.serve.params import SamplingParams

pytestmark = pytest.mark.slow


def test_shards_split_unevenly_but_completely() -> None:
    # SmolLM2 has 3 key/value heads: two ranks hold 2 and 1.
    parts = [TensorParallel(r, 2).split(3) for r in range(2)]
    assert parts == [(0, 2), (2, 3)]
    assert [TensorParallel(r, 2).split(1536) for r in range(2)] == [(0, 768), (768, 1536)]


def test_tp2_greedy_matches_hf_and_tp1_logits(
    model_dir: Path, prompts: list[str], hf_greedy: dict[str, list[int]]
) -> None:
    llm = LLM(model_dir, tensor_parallel=2, max_batch_tokens=64)
    try:
        results = llm.generate(
            prompts, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, logprobs=0)
        )
    finally:
        llm.engine.shutdown()
    for prompt, result in zip(prompts, results, strict=True):
        assert result.outputs[0].token_ids == hf_greedy[prompt], prompt
    # The chosen tokens' logprobs agree with a TP=1 run of the same sequences.
    single = LLM(model_dir, max_batch_tokens=64).generate(
        prompts, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True, logprobs=0)
    )
    for a, b in zip(results, single, strict=True):
        tp2 = torch.tensor([v for v, _ in a.outputs[0].logprobs])
        tp1 = torch.tensor([v for v, _ in b.outputs[0].logprobs])
        assert torch.allclose(tp2, tp1, atol=1e-3)


def test_tp_larger_than_kv_heads_is_refused(model_dir: Path) -> None:
    with pytest.raises(ValueError, match="tensorParallel=4"):
        load_model(model_dir, tp=TensorParallel(0, 4))
