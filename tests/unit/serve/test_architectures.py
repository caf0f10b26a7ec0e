"""Each served Hugging Face architecture equals transformers' greedy `generate`.

Small random checkpoints (saved by transformers itself) in shapes SmolLM2 does not
cover: an untied output head, q/k/v biases, a head_dim apart from hidden/heads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
PROMPTS = ["The capital of France is", "1, 2, 3,", "Once upon a time, in a small village"]


def _save(kind: str, out: Path, vocab: int) -> Any:
    import transformers

    config_cls, model_cls, extra = {
        "llama": ("LlamaConfig", "LlamaForCausalLM", {"head_dim": 24}),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {"rope_theta": 1e6}),
        "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    }[kind]
    config = getattr(transformers, config_cls)(vocab_size=vocab, **SHAPE, **extra)
    torch.manual_seed(7)
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():  # livelier than the default init: fewer near-ties between logits
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
            else:  # norm weights and q/k/v biases
                p.add_(torch.randn_like(p) * (0.2 if name.endswith("bias") else 0.1))
    model.save_pretrained(out)
    return model


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_architecture_equals_hf_generate(tmp_path: Path, tokenizer: Any, kind: str) -> None:
    hf = _save(kind, tmp_path, len(tokenizer))
    tokenizer.save_pretrained(tmp_path)
    llm = LLM(tmp_path)
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    got = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    for ids, res in zip(prompts, got, strict=True):
        with torch.no_grad():
            want = hf.generate(
                torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None,
                pad_token_id=0,
            )[0, len(ids) :].tolist()  # fmt: skip
        assert res.outputs[0].token_ids == want, kind


def test_a_tokenizer_the_checkpoint_ships_runs_only_when_trusted(
    tmp_path: Path, model_dir: Path
) -> None:
    """InternLM2-style: the tokenizer class comes as code in the model directory."""
    import json

    from hanlin.serve.async_engine import load_tokenizer

    for f in model_dir.iterdir():
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "tokenizer_config.json").unlink()
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config |= {
        "tokenizer_class": "ShippedTokenizer",
        "auto_map": {"AutoTokenizer": [None, "tokenization_shipped.ShippedTokenizer"]},
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "tokenization_shipped.py").write_text(
        "from transformers import PreTrainedTokenizerFast\n\n\n"
        "class ShippedTokenizer(PreTrainedTokenizerFast):\n"
        "    shipped = True\n"
    )
    with pytest.raises(ValueError, match="trust_remote_code"):
        LLM(tmp_path)
    llm = LLM(tmp_path, trust_remote_code=True)
    assert type(llm.tokenizer).__name__ == "ShippedTokenizer" and llm.tokenizer.shipped
    reference = LLM(model_dir)
    params = SamplingParams(max_tokens=8, temperature=0)
    assert [r.outputs[0].text for r in llm.generate(PROMPTS, params)] == [
        r.outputs[0].text for r in reference.generate(PROMPTS, params)
    ]
    # The server process loads the same class by name, trusted as the engine was.
    engine_class = f"{type(llm.tokenizer).__module__}.{type(llm.tokenizer).__qualname__}"
    served = load_tokenizer(tmp_path, engine_class, trust_remote_code=True)
    assert type(served).__name__ == "ShippedTokenizer"
