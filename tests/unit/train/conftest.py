"""Fixtures for training tests: a tiny Llama with a byte-level tokenizer, small data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from train_fixtures import CHATS, TINY_LLAMA, make_job, write_jsonl

from hanlin.api.training_job import TrainingJob


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
