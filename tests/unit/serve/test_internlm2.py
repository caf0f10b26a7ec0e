"""InternLM2 checkpoints: the packed `wqkv` layout and InternLM2's names.

transformers has no InternLM2 (its checkpoints bring their modeling code), so the
reference here is InternLM2's forward written from its definition: `wqkv` rows
rearranged "(h gs d) -> h gs d" per key/value head, queries first, then the key,
then the value; `wo`; a SwiGLU `w2(silu(w1 x) * w3 x)`. A small random checkpoint
in InternLM2's format is served and must equal that forward's greedy tokens.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hanlin.serve.llm import LLM
from hanlin.serve.params import SamplingParams

CFG = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 256,
}
PROMPTS = ["The capital of France is", "1, 2, 3,", "Once upon a time, in a small village"]


def _weights(vocab: int, bias: bool, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    h, d = CFG["hidden_size"], CFG["hidden_size"] // CFG["num_attention_heads"]
    heads, kv, inter = (
        CFG["num_attention_heads"],
        CFG["num_key_value_heads"],
        CFG["intermediate_size"],
    )

    def rnd(*shape: int, std: float = 0.08) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    w = {
        "model.tok_embeddings.weight": rnd(vocab, h, std=0.5),
        "output.weight": rnd(vocab, h, std=0.2),
    }
    w["model.norm.weight"] = 1 + rnd(h, std=0.1)
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "attention.wqkv.weight"] = rnd((heads + 2 * kv) * d, h, std=0.2)
        w[p + "attention.wo.weight"] = rnd(h, heads * d)
        if bias:
            w[p + "attention.wqkv.bias"] = rnd((heads + 2 * kv) * d, std=0.2)
            w[p + "attention.wo.bias"] = rnd(h, std=0.2)
        w[p + "feed_forward.w1.weight"] = rnd(inter, h)
        w[p + "feed_forward.w3.weight"] = rnd(inter, h)
        w[p + "feed_forward.w2.weight"] = rnd(h, inter)
        w[p + "attention_norm.weight"] = 1 + rnd(h, std=0.1)
        w[p + "ffn_norm.weight"] = 1 + rnd(h, std=0.1)
    return w


def _checkpoint(
    root: Path, tokenizer_dir: Path, vocab: int, bias: bool, seed: int
) -> tuple[Path, dict[str, torch.Tensor]]:
    out = root / f"internlm2-bias{int(bias)}"
    out.mkdir()
    weights = _weights(vocab, bias, seed)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"))
    config = CFG | {
        "architectures": ["InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "vocab_size": vocab,
        "bias": bias,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (out / "config.json").write_text(json.dumps(config))
    for f in tokenizer_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(f, out / f.name)
    return out, weights


def _rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + CFG["rms_norm_eps"]) * w


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def _reference_logits(w: dict[str, torch.Tensor], ids: list[int]) -> torch.Tensor:
    """InternLM2's forward over `ids`: the last position's logits."""
    heads, kv = CFG["num_attention_heads"], CFG["num_key_value_heads"]
    d = CFG["hidden_size"] // heads
    groups = heads // kv
    t = len(ids)
    inv = 1.0 / (CFG["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
    freqs = torch.outer(torch.arange(t).float(), inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    x = w["model.tok_embeddings.weight"][torch.tensor(ids)]
    for i in range(CFG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "attention_norm.weight"])
        qkv = F.linear(h, w[p + "attention.wqkv.weight"], w.get(p + "attention.wqkv.bias"))
        qkv = qkv.view(t, kv, groups + 2, d)  # "b q (h gs d) -> b q h gs d"
        q = qkv[:, :, :groups].reshape(t, heads, d)  # "b q h gs d -> b q (h gs) d"
        k, v = qkv[:, :, -2], qkv[:, :, -1]
        q = q * cos[:, None] + _rotate_half(q) * sin[:, None]
        k = k * cos[:, None] + _rotate_half(k) * sin[:, None]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        att = F.scaled_dot_product_attention(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True
        ).transpose(0, 1)
        x = x + F.linear(
            att.reshape(t, heads * d), w[p + "attention.wo.weight"], w.get(p + "attention.wo.bias")
        )
        h = _rms(x, w[p + "ffn_norm.weight"])
        ff = F.silu(F.linear(h, w[p + "feed_forward.w1.weight"])) * F.linear(
            h, w[p + "feed_forward.w3.weight"]
        )
        x = x + F.linear(ff, w[p + "feed_forward.w2.weight"])
    return F.linear(_rms(x, w["model.norm.weight"])[-1], w["output.weight"])


def _reference_greedy(w: dict[str, torch.Tensor], ids: list[int], n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):
        out.append(int(torch.argmax(_reference_logits(w, ids + out))))
    return out


@pytest.mark.parametrize("bias", [False, True], ids=["plain", "bias"])
def test_internlm2_checkpoint_equals_its_reference_forward(
    tmp_path: Path, model_dir: Path, tokenizer: Any, bias: bool
) -> None:
    ckpt, weights = _checkpoint(tmp_path, model_dir, len(tokenizer), bias, seed=1 + bias)
    llm = LLM(ckpt)
    assert llm.engine.max_model_len == CFG["max_position_embeddings"]  # dynamic NTK never kicks in
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    got = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))
    for ids, res in zip(prompts, got, strict=True):
        want = _reference_greedy(weights, ids, 12)
        assert res.outputs[0].token_ids == want
    assert len({t for r in got for t in r.outputs[0].token_ids}) > 3  # not a degenerate model


@pytest.mark.slow
def test_internlm2_with_tensor_parallelism_equals_one_process(
    tmp_path: Path, model_dir: Path, tokenizer: Any
) -> None:
    ckpt, weights = _checkpoint(tmp_path, model_dir, len(tokenizer), bias=True, seed=5)
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    two = LLM(ckpt, tensor_parallel=2)
    try:
        got = two.generate(prompts, params)
    finally:
        two.engine.shutdown()
    for ids, res in zip(prompts, got, strict=True):
        assert res.outputs[0].token_ids == _reference_greedy(weights, ids, 10)


def test_unsupported_rope_scaling_is_refused(
    tmp_path: Path, model_dir: Path, tokenizer: Any
) -> None:
    ckpt, _ = _checkpoint(tmp_path, model_dir, len(tokenizer), bias=False, seed=3)
    config = json.loads((ckpt / "config.json").read_text())
    config["rope_scaling"] = {"type": "linear", "factor": 2.0}
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="rope_scaling: 'linear' is not served"):
        LLM(ckpt)


class _InternLM2(torch.nn.Module):
    """InternLM2's module tree (names only: enough for PEFT to find its targets)."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        nn = torch.nn
        self.model = nn.Module()
        self.model.tok_embeddings = nn.Embedding(*weights["model.tok_embeddings.weight"].shape)
        self.model.norm = nn.Module()
        self.model.norm.weight = nn.Parameter(weights["model.norm.weight"])
        self.model.layers = nn.ModuleList()
        for i in range(CFG["num_hidden_layers"]):
            layer = nn.Module()
            layer.attention = nn.Module()
            layer.feed_forward = nn.Module()
            for part, name in (("attention", "wqkv"), ("attention", "wo")):
                w = weights[f"model.layers.{i}.{part}.{name}.weight"]
                setattr(layer.attention, name, nn.Linear(w.shape[1], w.shape[0], bias=False))
            for name in ("w1", "w2", "w3"):
                w = weights[f"model.layers.{i}.feed_forward.{name}.weight"]
                setattr(layer.feed_forward, name, nn.Linear(w.shape[1], w.shape[0], bias=False))
            layer.attention_norm = nn.Module()
            layer.attention_norm.weight = nn.Parameter(torch.empty(CFG["hidden_size"]))
            layer.ffn_norm = nn.Module()
            layer.ffn_norm.weight = nn.Parameter(torch.empty(CFG["hidden_size"]))
            self.model.layers.append(layer)
        self.output = nn.Linear(CFG["hidden_size"], weights["output.weight"].shape[0], bias=False)
        self.load_state_dict(weights)


def test_internlm2_lora_served_per_request_equals_merged_peft(
    tmp_path: Path, model_dir: Path, tokenizer: Any
) -> None:
    from peft import LoraConfig, get_peft_model

    ckpt, weights = _checkpoint(tmp_path, model_dir, len(tokenizer), bias=False, seed=11)
    torch.manual_seed(0)
    targets = ["wqkv", "wo", "w1", "w2", "w3"]
    peft_model = get_peft_model(
        _InternLM2(weights),
        LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False),
    )
    with torch.no_grad():  # updates large enough to change greedy tokens
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = {k: v.detach() for k, v in peft_model.merge_and_unload().state_dict().items()}

    llm = LLM(ckpt, lora_adapters={"tuned": tmp_path / "adapter"})
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    base = llm.generate(prompts, params)
    tuned = llm.generate(prompts, params, adapter="tuned")
    for ids, b, t in zip(prompts, base, tuned, strict=True):
        assert b.outputs[0].token_ids == _reference_greedy(weights, ids, 10)
        assert t.outputs[0].token_ids == _reference_greedy(merged, ids, 10)
    assert [r.outputs[0].token_ids for r in base] != [r.outputs[0].token_ids for r in tuned]
