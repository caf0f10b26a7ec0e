"""InternLM2 checkpoints under Llama's names, so one decoder serves both.

InternLM2 names its weights its own way (`tok_embeddings`, `attention.wo`,
`feed_forward.w1/w3/w2`, `attention_norm`, `ffn_norm`, `output`) and packs q, k and
v into one `wqkv`. The loader renames and unpacks a state dict; multi-LoRA cuts an
adapter's `wqkv` update the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from hanlin.serve.model import ModelConfig

_INTERNLM2_NAMES = {
    "tok_embeddings.weight": "embed_tokens.weight",
    "output.weight": "lm_head.weight",
    ".attention.wo.": ".self_attn.o_proj.",
    ".feed_forward.w1.": ".mlp.gate_proj.",
    ".feed_forward.w3.": ".mlp.up_proj.",
    ".feed_forward.w2.": ".mlp.down_proj.",
    ".attention_norm.": ".input_layernorm.",
    ".ffn_norm.": ".post_attention_layernorm.",
}


def _names(key: str) -> list[str]:
    """The Llama names of an InternLM2 state-dict key (`model.` removed): one, or
    q, k and v for the packed `wqkv`."""
    if ".attention.wqkv." in key:
        return [key.replace(".attention.wqkv.", f".self_attn.{p}_proj.") for p in "qkv"]
    for old, new in _INTERNLM2_NAMES.items():
        if old in key:
            return [key.replace(old, new)]
    return [key]


def _split_wqkv(value: torch.Tensor, cfg: ModelConfig) -> list[torch.Tensor]:
    """q, k and v rows of InternLM2's packed `wqkv` rows (a weight, bias or LoRA B).

    The rows go by key/value head: its group of query heads, then its key head, then
    its value head (InternLM2's `rearrange(..., "b q (h gs d) -> b q h gs d")`).
    """
    group = cfg.num_heads // cfg.num_kv_heads
    rest = value.shape[1:]
    packed = value.reshape(cfg.num_kv_heads, group + 2, cfg.head_dim, *rest)
    return [
        packed[:, :group].reshape(-1, *rest),
        packed[:, group].reshape(-1, *rest),
        packed[:, group + 1].reshape(-1, *rest),
    ]


def _renamed(key: str, rows: torch.Tensor, cfg: ModelConfig) -> list[tuple[str, torch.Tensor]]:
    """(Llama name, rows) for one InternLM2 key: `wqkv`'s rows split into q, k and v."""
    names = _names(key)
    parts = _split_wqkv(rows, cfg) if len(names) == 3 else [rows]
    return list(zip(names, parts, strict=True))


def internlm2_to_llama(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """An InternLM2 state dict (the `model.` prefix removed) under Llama's names."""
    return dict(pair for key, value in state.items() for pair in _renamed(key, value, cfg))


def internlm2_adapter_to_llama(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: ModelConfig
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """An InternLM2 LoRA adapter ({target: (A, B)}) under Llama's names: a `wqkv` update
    B (A x) is three, one per projection, sharing A, B's rows cut as the weight's are."""
    return {
        name: (a, part)
        for target, (a, b) in pairs.items()
        for name, part in _renamed(target, b, cfg)
    }
