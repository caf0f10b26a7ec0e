"""Static-shape decode steps (what CUDA graphs replay), run eagerly on the CPU.

Rows padded to a batch bucket write a scratch slot and attend to it alone; contexts
padded to a width bucket are masked. Greedy tokens must still equal HF's, for
contexts of very different lengths decoded together, on both ops paths; the
scratch slot must be the only cache row the padding touches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hanlin.serve.graphs import StaticDecode, enabled
from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams


@pytest.mark.parametrize("ops", ["cpp", "torch"])
def test_padded_decode_steps_equal_hf(
    model_dir: Path, hf_generate: Any, ops: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANLIN_KERNELS", "on" if ops == "cpp" else "off")
    story = "The old lighthouse keeper climbed the stairs every evening to light the lamp. "
    # Three rows pad to a bucket of 4; contexts of ~6 to ~350 tokens pad to 64..512.
    prompts = ["The capital of France is", story * 3, story * 20]
    expected = [hf_generate(p, max_new_tokens=12) for p in prompts]

    llm = LLM(model_dir, max_batch_tokens=1024, num_blocks=64)
    runner = llm.engine.runner
    assert runner.static is None  # CUDA only by default
    static = StaticDecode(
        runner.model, runner.caches, runner.scratch_slot, runner.scratch_slot, capture=False
    )
    runner.static = static
    used: list[tuple[int, int]] = []
    run = static.run

    def recording(s: Any) -> Any:
        used.append((s.input_ids.numel(), max(slots.shape[1] for slots, _ in s.decode_groups)))
        return run(s)

    static.run = recording  # type: ignore[method-assign]
    before = [k[runner.scratch_slot + 1 :].clone() for k, _ in runner.caches]
    results = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    assert [r.outputs[0].token_ids for r in results] == expected
    assert any(rows == 3 for rows, _ in used), used  # the three decoded together, padded
    # Three rows pad to 4; the longest context (~300) pads to 512.
    assert (4, 512) in static.buckets, list(static.buckets)
    # Padding wrote only the scratch slot: the rest of the scratch block is untouched.
    for (k, _), old in zip(runner.caches, before, strict=True):
        assert torch.equal(k[runner.scratch_slot + 1 :], old)


def test_steps_that_cannot_be_static_run_as_before(model_dir: Path) -> None:
    llm = LLM(model_dir, max_batch_tokens=64, num_blocks=64)
    runner = llm.engine.runner
    runner.static = StaticDecode(
        runner.model, runner.caches, runner.scratch_slot, 128, capture=False
    )
    # A long prompt: prefill chunks are never static, and contexts past 128 run eagerly.
    long = "word " * 150
    out = llm.generate([long, "Hi"], SamplingParams(max_tokens=4, temperature=0))
    ref = LLM(model_dir, max_batch_tokens=64, num_blocks=64).generate(
        [long, "Hi"], SamplingParams(max_tokens=4, temperature=0)
    )
    assert [r.outputs[0].token_ids for r in out] == [r.outputs[0].token_ids for r in ref]


def test_graphs_are_opt_in_and_for_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HANLIN_CUDA_GRAPHS", raising=False)
    assert not enabled(torch.device("cuda"))
    monkeypatch.setenv("HANLIN_CUDA_GRAPHS", "1")
    assert enabled(torch.device("cuda"))
    assert not enabled(torch.device("cpu"))
