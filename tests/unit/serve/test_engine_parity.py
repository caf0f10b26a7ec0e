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
@pytest.mark.parametrize("ops", ["cpp", "torch"])
def test_greedy_matches_hf_generate(
    model_dir: Path,
    hf_greedy: dict[str, list[int]],
    tokenizer: Any,
    prompts: list[str],
    options: dict[str, int],
    expect_preemption: bool,
    ops: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both paths of the layer's small ops: the fused C++ kernels and plain torch.
    monkeypatch.setenv("HANLIN_KERNELS", "on" if ops == "cpp" else "off")
    llm = LLM(model_dir, **options)
    assert llm.engine.runner.model.ops.name == ops
    results = llm.generate(prompts, SamplingParams(max_tokens=16, temperature=0, ignore_eos=True))
    for prompt, result in zip(prompts, results, strict=True):
        tokens = result.outputs[0].token_ids
        assert tokens == hf_greedy[prompt], prompt
        # Incremental detokenization agrees with a one-shot decode.
        assert result.outputs[0].text == tokenizer.decode(tokens, skip_special_tokens=True)
        assert result.outputs[0].finish_reason == "length"
    assert (llm.engine.scheduler.num_preemptions > 0) == expect_preemption
    assert llm.engine.blocks.usage == 0.0


@pytest.mark.parametrize("ops", ["cpp", "torch"])
def test_decode_groups_of_very_different_lengths_match_hf(
    model_dir: Path, hf_generate: Any, ops: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contexts of 6 to ~700 tokens decode together; every row still equals HF.

    The torch path splits them into length groups; the C++ kernel reads each
    context at its own length, so one group holds them all.
    """
    monkeypatch.setenv("HANLIN_KERNELS", "on" if ops == "cpp" else "off")

    story = "The old lighthouse keeper climbed the stairs every evening to light the lamp. "
    prompts = ["The capital of France is", story * 3, story * 20, story * 45]
    expected = [hf_generate(p, max_new_tokens=12) for p in prompts]

    llm = LLM(model_dir, max_batch_tokens=2048)
    seen_groups: list[list[int]] = []
    execute = llm.engine.runner.execute

    def recording(inputs: Any) -> Any:
        seen_groups.append([slots.shape[0] for slots, _ in inputs.decode_groups])
        return execute(inputs)

    llm.engine.runner.execute = recording  # type: ignore[method-assign]
    results = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    assert [r.outputs[0].token_ids for r in results] == expected
    if ops == "torch":
        # All four decoded together, split by length: the short pair apart from the long pair.
        assert [2, 2] in seen_groups or [1, 1, 2] in seen_groups, seen_groups
    else:
        assert [4] in seen_groups, seen_groups


def test_length_groups_bound_padding() -> None:
    from hanlin.serve.engine import GROUP_SAVING_SLOTS, _length_groups

    assert _length_groups([]) == []
    assert _length_groups([7]) == [(0, 1)]
    # Close lengths stay one group (one kernel call beats a little padding).
    assert _length_groups([100, 110, 120, 130]) == [(0, 4)]
    lens = [5, 6, 8, 300, 310, 900]
    groups = _length_groups(lens)
    assert groups[0] == (0, 3) and groups[-1][1] == len(lens)
    for lo, hi in groups:  # no group pads more than the bound per added row
        padding = sum(lens[hi - 1] - n for n in lens[lo:hi])
        assert padding <= GROUP_SAVING_SLOTS * (hi - lo)
