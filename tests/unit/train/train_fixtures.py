"""Shared pieces of the training tests: the tiny Llama config, chat data, job builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
