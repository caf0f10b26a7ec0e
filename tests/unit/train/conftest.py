"""Fixtures for training tests: a tiny Llama with a byte-level tokenizer, small data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hanlin.api.training_job import TrainingJob

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 259,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}

CHATS = [
    ("What is the capital of France?", "Paris."),
    ("Name a primary color.", "Blue."),
    ("How many legs does a cat have?", "Four."),
    ("What do bees make?", "Honey."),
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_job(**spec: Any) -> TrainingJob:
    """A TrainingJob from spec fields (camelCase, as in YAML)."""
    return TrainingJob.model_validate(
        {
            "apiVersion": "hanlin.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "t"},
            "spec": spec,
        }
    )


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama + byte tokenizer, saved as an HF directory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from hanlin.train.tokenizer import byte_tokenizer

    out = tmp_path_factory.mktemp("tiny-llama")
    # A wide initialisation gives the frozen base features and an output head
    # strong enough for a small adapter to memorize with, as a pretrained base would.
    cfg = dict(TINY_LLAMA, initializer_range=0.3)
    cfg = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out


@pytest.fixture()
def chat_data(tmp_path: Path) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in CHATS
    ]
    return write_jsonl(tmp_path / "chat.jsonl", rows)


@pytest.fixture()
def job_factory(tmp_path: Path) -> Callable[..., TrainingJob]:
    def factory(**spec: Any) -> TrainingJob:
        spec.setdefault("output", {"uri": f"file://{tmp_path}/out"})
        return make_job(**spec)

    return factory
