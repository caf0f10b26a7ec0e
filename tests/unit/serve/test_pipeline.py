"""LMDeploy's `pipeline(model)(prompts)`: chats through the model's template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hanlin.serve.llm import Response, pipeline
from hanlin.serve.params import SamplingParams


def test_pipeline_answers_chats_as_hf_does(model_dir: Path, hf_model: Any, tokenizer: Any) -> None:
    pipe = pipeline(model_dir, max_model_len=512)
    params = SamplingParams(max_tokens=24, temperature=0)
    one = pipe("Say hello.", params)
    assert isinstance(one, Response) and one.text and one.finish_reason in ("stop", "length")
    chat = [{"role": "user", "content": "Say hello."}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
    with torch.no_grad():
        want = hf_model.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1] :]
    assert one.token_ids == want.tolist()  # the end-of-turn token included, as HF's
    assert one.input_token_len == ids.shape[1]
    assert one.generate_token_len == len(one.token_ids)

    conversation = [
        {"role": "system", "content": "Answer with one number."},
        {"role": "user", "content": "What is 2 + 2?"},
    ]
    batch = pipe(["Say hello.", conversation], params)
    assert isinstance(batch, list) and len(batch) == 2
    assert batch[0].token_ids == one.token_ids
    alone = pipe(conversation, params)
    assert isinstance(alone, Response) and alone.token_ids == batch[1].token_ids
