"""Quantizing the real SmolLM2: memory saved and perplexity within a stated bound."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from hanlin.quant import QuantLinear, quantize_model, quantized_bytes

TEXT = (
    "The river runs through the old town, past the mill and the church, and out into "
    "the fields where the farmers grow wheat and barley. In the spring the water rises "
    "and floods the low meadows; in summer children swim near the bridge. The town has "
    "a market every Saturday, where people sell bread, cheese, apples and honey."
)


@pytest.fixture(scope="module")
def hf_model(model_dir: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, tok(TEXT, return_tensors="pt").input_ids


def _ppl(model: torch.nn.Module, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return float(torch.exp(model(ids, labels=ids).loss))


# Bounds: int8 per-channel moves perplexity by < 5%. SmolLM2 ships as Q4_1 (group 32,
# scale + min), so int4 with group 32 lands on the same grid and must stay within 5%
# too; group 64 is coarser than the source grid and is allowed 2x.
@pytest.mark.parametrize(
    ("bits", "group", "ppl_ratio", "mem_ratio"),
    [(8, 32, 1.05, 0.45), (4, 32, 1.05, 0.36), (4, 64, 2.0, 0.34)],
)
def test_memory_and_perplexity(
    hf_model: tuple[torch.nn.Module, torch.Tensor],
    bits: int,
    group: int,
    ppl_ratio: float,
    mem_ratio: float,
) -> None:
    model, ids = hf_model
    base_ppl = _ppl(model, ids)
    base_bytes = quantized_bytes(model)
    q = quantize_model(copy.deepcopy(model), bits=bits, group_size=group)
    assert sum(isinstance(m, QuantLinear) for m in q.modules()) == 30 * 7
    q_ppl = _ppl(q, ids)
    q_bytes = quantized_bytes(q)
    assert q_ppl / base_ppl < ppl_ratio, (base_ppl, q_ppl)
    assert q_bytes / base_bytes < mem_ratio, (base_bytes, q_bytes)
