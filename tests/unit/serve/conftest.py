"""Shared pieces of the serving tests: prompts of different lengths and HF references."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "1, 2, 3, 4,",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Water boils at a temperature of 100 degrees Celsius at sea level. At higher altitudes,",
]


@pytest.fixture(scope="session")
def prompts() -> list[str]:
    """Prompts of different lengths (5 to ~20 tokens)."""
    return list(PROMPTS)


@pytest.fixture(scope="session")
def hf_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def hf_generate(hf_model: Any, tokenizer: Any) -> Callable[..., list[int]]:
    """HF transformers' greedy `generate` of one prompt: its new tokens (kwargs go to
    `generate`, e.g. max_new_tokens, repetition_penalty)."""

    def run(prompt: str, **kwargs: Any) -> list[int]:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            out = hf_model.generate(ids, do_sample=False, **kwargs)
        return [int(t) for t in out[0, ids.shape[1] :]]

    return run


@pytest.fixture(scope="session")
def hf_greedy(hf_model: Any, tokenizer: Any) -> dict[str, list[int]]:
    """HF transformers' greedy `generate`, one prompt at a time: the reference (16 tokens)."""
    out: dict[str, list[int]] = {}
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            gen = hf_model.generate(ids, max_new_tokens=16, do_sample=False)
        out[prompt] = gen[0, ids.shape[1] :].tolist()
    return out
