"""Many LoRA adapters served at once over one copy of the base weights.

Each adapter is a model of its own name (`model: support` in a request); one
step's batch may mix the base model and several adapters. Every adapted layer
computes the base output for the whole batch, then adds `B (A x)` for the rows
of each adapter (S-LoRA / Punica's idea, written with torch's index ops): the
extra cost is two thin matmuls per adapter in the batch, and the base weights
(possibly quantized) are shared.

The engine fuses q/k/v and gate/up into single linears; an adapter's separate
A/B pairs are stacked to match (A rows concatenated, B block-diagonal), so one
pair of matmuls covers the fused layer. Prefix-cached KV blocks are keyed by
adapter too: the same prompt under two adapters has different keys and values.
With tensor parallelism each rank holds its cut of every adapter (`_shard`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hanlin.serve.adapters import read_lora
from hanlin.serve.internlm2 import internlm2_adapter_to_llama
from hanlin.serve.model import DecoderLayer, LlamaModel

# Fused engine layer -> the checkpoint projections it holds, in output order.
_FUSED = {
    "qkv": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "o": ("self_attn.o_proj",),
    "gate_up": ("mlp.gate_proj", "mlp.up_proj"),
    "down": ("mlp.down_proj",),
}


@dataclass
class LoRAContext:
    """Which rows of the current step belong to which adapter (set before each forward)."""

    groups: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    """(adapter index, row indices of the flat batch); base-model rows are in none."""


class LoRALinear(nn.Module):
    """A base linear plus per-adapter low-rank updates for the rows that asked for them."""

    a: torch.Tensor
    b: torch.Tensor

    def __init__(
        self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, used: list[bool], ctx: LoRAContext
    ) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("a", a)  # [adapters, R, in]
        self.register_buffer("b", b)  # [adapters, out, R]
        self.used = used
        self.ctx = ctx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        for index, rows in self.ctx.groups:
            if not self.used[index]:
                continue
            xs = x.index_select(0, rows)
            y.index_add_(0, rows, (xs @ self.a[index].T) @ self.b[index].T)
        return y


def attach_lora(
    model: LlamaModel, adapters: list[tuple[str, Path]], dtype: torch.dtype
) -> LoRAContext:
    """Wrap the decoder's linears of `model` (in place) for `adapters`; return the shared context.

    Raises ValueError naming the adapter when it targets a weight the engine
    cannot adapt per request (embeddings, the head) or its shapes do not fit.
    """
    ctx = LoRAContext()
    device = model.embed.weight.device  # the adapters' weights sit beside the base's
    loaded = []
    for name, path in adapters:
        pairs = read_lora(path)
        if model.cfg.architecture == "InternLM2ForCausalLM":
            pairs = internlm2_adapter_to_llama(pairs, model.cfg)
        for target in pairs:
            if not target.startswith("layers.") or not any(
                f".{p}.weight" in target for parts in _FUSED.values() for p in parts
            ):
                raise ValueError(
                    f"adapter {name!r} adapts {target}, which is not served per request "
                    "(only attention and MLP projections are); merge it into the model instead"
                )
        loaded.append((name, _shard(pairs, model)))
    for i, layer in enumerate(model.decoder_layers()):
        for attr, parts in _FUSED.items():
            base = getattr(layer, attr)
            wrapped = _wrap(i, base, parts, _heights(layer, attr), loaded, ctx, dtype, device)
            if wrapped is not None:
                setattr(layer, attr, wrapped)
    return ctx


def _shard(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], model: LlamaModel
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """This tensor-parallel rank's share of an adapter, cut as the base weights are.

    Column-parallel projections (q, k, v, gate, up) keep their output rows of B;
    row-parallel ones (o, down) keep their input columns of A, so B (A x) is a
    partial sum that the layer's all-reduce completes, as for the base output.
    """
    if model.tp.size == 1:
        return pairs
    q_rows, kv_rows, inter = model.tp.slices(model.cfg)
    rows = {"q_proj": q_rows, "k_proj": kv_rows, "v_proj": kv_rows, "gate_proj": inter}
    rows["up_proj"] = inter
    cols = {"o_proj": q_rows, "down_proj": inter}
    out = {}
    for target, (a, b) in pairs.items():
        part = target.split(".")[-2]
        if part in rows:
            b = b[rows[part]]
        elif part in cols:
            a = a[:, cols[part]]
        out[target] = (a.contiguous(), b.contiguous())
    return out


def _wrap(
    i: int,
    base: nn.Module,
    parts: tuple[str, ...],
    heights: tuple[int, ...],
    loaded: list[tuple[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]],
    ctx: LoRAContext,
    dtype: torch.dtype,
    device: torch.device,
) -> LoRALinear | None:
    in_f, out_f = _features(base)
    per_adapter = []
    for name, pairs in loaded:
        found = [pairs.get(f"layers.{i}.{p}.weight") for p in parts]
        per_adapter.append((name, found))
    ranks = [sum(int(p[0].shape[0]) for p in found if p is not None) for _, found in per_adapter]
    if not any(ranks):
        return None
    width = max(ranks)
    a = torch.zeros(len(loaded), width, in_f)
    b = torch.zeros(len(loaded), out_f, width)
    for j, (name, found) in enumerate(per_adapter):
        col = 0
        row = 0
        for part, pair, height in zip(parts, found, heights, strict=True):
            if pair is not None:
                pa, pb = pair
                r = int(pa.shape[0])
                if pa.shape[1] != in_f or pb.shape[0] != height:
                    raise ValueError(
                        f"adapter {name!r}: layers.{i}.{part} has shapes A {tuple(pa.shape)}, "
                        f"B {tuple(pb.shape)}; the model's layer takes {in_f} in, {height} out"
                    )
                a[j, col : col + r] = pa
                b[j, row : row + height, col : col + r] = pb
                col += r
            row += height
    a, b = a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)
    return LoRALinear(base, a, b, [r > 0 for r in ranks], ctx)


def _heights(layer: DecoderLayer, attr: str) -> tuple[int, ...]:
    """Output rows of each checkpoint projection inside the engine's (fused) layer."""
    if attr == "qkv":
        q, kv = layer.heads * layer.head_dim, layer.kv_heads * layer.head_dim
        return (q, kv, kv)
    if attr == "gate_up":
        return (layer.inter, layer.inter)
    return (_features(getattr(layer, attr))[1],)


def _features(module: nn.Module) -> tuple[int, int]:
    """(in, out) features of an `nn.Linear` or a `QuantLinear`."""
    return int(module.in_features), int(module.out_features)  # type: ignore[arg-type]
