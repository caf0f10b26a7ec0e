"""A Llama-family decoder whose attention reads and writes the paged KV cache.

Covers Llama, SmolLM and Qwen2 (q/k/v biases) checkpoints in HF safetensors
layout. Every step runs the whole batch as one flat sequence of tokens through
the linear layers (that is where batching pays); attention is batched for
decode tokens and done per sequence for prefill chunks. Tensor parallelism
shards heads and the MLP's intermediate dimension (column-parallel in,
row-parallel out, one all-reduce after each) over `torch.distributed`.

Weights, activations and the KV cache use the compute dtype (fp32 or bf16);
norms are computed in fp32, rotary tables are computed in fp32 and stored in
the compute dtype, and logits are returned in fp32 (as HF transformers does).
Quantized models quantize every linear layer from the fp32 weights and the
output head to int8; with bf16 activations the matmuls run torch's packed CPU
int4/int8 kernels. A batch-1 decode step is dominated by per-op overhead, so
the decode path avoids row shuffles, masks and per-layer recomputation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hanlin.serve import kernels
from hanlin.serve.adapters import merge_adapters
from hanlin.serve.internlm2 import internlm2_to_llama
from hanlin.serve.kernels import TorchOps
from hanlin.serve.packed import PackedLinear, can_pack

# int4 groups of 32 input columns: the grid SmolLM2's GGUF (Q4_1) ships on.
QUANT_GROUP_SIZE = 32
# The output head's bits when quantizing (see `_quantize`).
HEAD_BITS = 8


@dataclass(frozen=True)
class ModelConfig:
    """The parts of an HF Llama-style config the engine needs."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]
    architecture: str = "LlamaForCausalLM"

    @classmethod
    def from_dir(cls, model_dir: Path) -> ModelConfig:
        """Read `config.json` (and the eos ids of `generation_config.json`)."""
        raw: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
        arch = (raw.get("architectures") or ["?"])[0]
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"config.json architectures: unsupported architecture {arch!r}; "
                f"served: {', '.join(ARCHITECTURES)}"
            )
        rope = raw.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", raw.get("rope_theta", 10000.0)))
        scaling = raw.get("rope_scaling") or {}
        kinds = [rope.get("rope_type"), scaling.get("rope_type"), scaling.get("type")]
        # Dynamic NTK scaling changes nothing up to max_position_embeddings, which caps
        # the served length (InternLM2 checkpoints ship it); other schemes change every
        # position and are refused.
        for kind in kinds:
            if kind not in (None, "default", "dynamic"):
                raise ValueError(
                    f"config.json rope_scaling: {kind!r} is not served (default and dynamic are)"
                )
        eos: list[int] = []
        for source in (raw, _read_json(model_dir / "generation_config.json")):
            value = source.get("eos_token_id")
            eos.extend([value] if isinstance(value, int) else list(value or []))
        heads = int(raw["num_attention_heads"])
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(raw.get("num_key_value_heads", heads)),
            head_dim=int(raw.get("head_dim") or raw["hidden_size"] // heads),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            eos_token_ids=tuple(dict.fromkeys(eos)),
            architecture=arch,
        )


ARCHITECTURES = (
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "MistralForCausalLM",
    "InternLM2ForCausalLM",
)


def _read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.exists() else {}


@dataclass
class AttentionBatch:
    """Per-step attention metadata, built once and shared by every layer."""

    slot_mapping: torch.Tensor  # [T] flat cache slot for each new token
    num_decode: int  # rows [0, B) of the flat batch are single decode tokens
    decode_groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]
    # decode rows in consecutive groups (of similar context length for the torch path):
    # (cache slots of each row's context [n, W], context lengths [n], additive mask
    # [n, 1, 1, W] (0 context, -inf padding) for the torch path, or None when it needs
    # none (no padded context, or the C++ kernel, which reads only each row's length))
    prefills: list[tuple[int, int, torch.Tensor, torch.Tensor | None]]
    # (first row, rows, context slots [ctx], causal mask [rows, ctx] or None for plain causal)
    all_decode: bool = False  # every row is a decode token, rows in order (no prefills)


def padding_mask(lens: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The additive mask [n, 1, 1, width] of contexts padded to `width`: 0 on each row's
    first `lens` slots, -inf past them. Additive, in the compute dtype: SDPA's CPU
    kernels are much faster with it than with a boolean mask."""
    pad = torch.arange(width, device=lens.device)[None, :] >= lens[:, None]
    mask = torch.zeros(pad.shape, dtype=dtype, device=lens.device)
    return mask.masked_fill_(pad, float("-inf"))[:, None, None, :]


@dataclass(frozen=True)
class TensorParallel:
    """Which shard this process holds."""

    rank: int = 0
    size: int = 1

    def split(self, total: int) -> tuple[int, int]:
        """[start, end) of this rank's share of `total` units, as even as possible."""
        base, extra = divmod(total, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def slices(self, cfg: ModelConfig) -> tuple[slice, slice, slice]:
        """This rank's rows of the q projection, of the k/v projections and of the MLP's
        intermediate dimension (whole key/value heads with their query heads)."""
        d = cfg.head_dim
        group = cfg.num_heads // cfg.num_kv_heads
        kv_lo, kv_hi = self.split(cfg.num_kv_heads)
        i_lo, i_hi = self.split(cfg.intermediate_size)
        return (
            slice(kv_lo * group * d, kv_hi * group * d),
            slice(kv_lo * d, kv_hi * d),
            slice(i_lo, i_hi),
        )


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in fp32 like the reference implementation."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size), requires_grad=False)
        self.eps = eps


class DecoderLayer(nn.Module):
    """One transformer block; heads and MLP columns are this rank's shard.

    The small ops between the matmuls (add + norm, rotary + cache write, SiLU,
    decode attention) go through `ops`: fused C++ kernels on the CPU, torch ops
    elsewhere (`hanlin.serve.kernels`).
    """

    def __init__(
        self, cfg: ModelConfig, tp: TensorParallel, qkv_bias: bool, o_bias: bool = False
    ) -> None:
        super().__init__()
        kv_lo, kv_hi = tp.split(cfg.num_kv_heads)
        group = cfg.num_heads // cfg.num_kv_heads
        self.kv_heads = kv_hi - kv_lo
        self.heads = self.kv_heads * group
        self.head_dim = cfg.head_dim
        i_lo, i_hi = tp.split(cfg.intermediate_size)
        self.inter = i_hi - i_lo
        d = cfg.head_dim
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # q, k and v fused into one matmul, gate and up into another: fewer, larger GEMMs.
        self.qkv: nn.Linear = nn.Linear(
            cfg.hidden_size, (self.heads + 2 * self.kv_heads) * d, bias=qkv_bias
        )
        self.o: nn.Linear = nn.Linear(self.heads * d, cfg.hidden_size, bias=o_bias)
        self.gate_up: nn.Linear = nn.Linear(cfg.hidden_size, 2 * self.inter, bias=False)
        self.down: nn.Linear = nn.Linear(self.inter, cfg.hidden_size, bias=False)
        self.tp = tp
        self.ops: TorchOps = TorchOps()

    def _reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp.size > 1:
            torch.distributed.all_reduce(x)
        return x

    def forward(
        self,
        x: torch.Tensor,
        delta: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        batch: AttentionBatch,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual stream `x` plus the previous layer's output `delta` -> (x, this delta).

        The residual add is deferred into the next norm, where the kernels fuse it.
        """
        ops = self.ops
        t = x.shape[0]
        x, h = ops.add_rms_norm(x, delta, self.input_norm)
        qkv = self.qkv.forward(h)
        q = ops.rotary_cache(qkv, cos, sin, cache, batch.slot_mapping, self.heads, self.kv_heads)
        if batch.all_decode:
            # Every row is one decode token (the common steady state): no row shuffling.
            out = self._decode_attention(q, cache, batch)
        else:
            out = self._mixed_attention(q, cache, batch)
        attn = self._reduce(self.o.forward(out.reshape(t, self.heads * self.head_dim)))
        x, h = ops.add_rms_norm(x, attn, self.post_norm)
        return x, self._reduce(self.down.forward(ops.silu_mul(self.gate_up.forward(h))))

    def _decode_attention(
        self, q: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], batch: AttentionBatch
    ) -> torch.Tensor:
        """One query token per sequence ([B, H, D]) over its cached context.

        The C++ kernel reads each context straight from the paged cache. The torch
        path gathers contexts padded to the longest of their group; grouping by
        length keeps short contexts from reading a long one's width.
        """
        outs = []
        row = 0
        for slots, lens, mask in batch.decode_groups:
            n = slots.shape[0]
            outs.append(self.ops.decode_attention(q[row : row + n], cache, slots, lens, mask))
            row += n
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def _mixed_attention(
        self, q: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], batch: AttentionBatch
    ) -> torch.Tensor:
        """Attention for a batch of decode tokens (rows [0, B)) and prefill chunks."""
        k_cache, v_cache = cache
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        if batch.num_decode:
            b = batch.num_decode
            out[:b] = self._decode_attention(q[:b], cache, batch)
        for start, rows, slots, mask in batch.prefills:
            qp = q[start : start + rows].transpose(0, 1).unsqueeze(0)  # [1, H, R, D]
            kp = k_cache.index_select(0, slots).transpose(0, 1).unsqueeze(0)  # [1, KV, C, D]
            vp = v_cache.index_select(0, slots).transpose(0, 1).unsqueeze(0)
            op = F.scaled_dot_product_attention(
                qp, kp, vp, attn_mask=mask, is_causal=mask is None, enable_gqa=True
            )
            out[start : start + rows] = op.squeeze(0).transpose(0, 1)
        return out


def _inv_freq(cfg: ModelConfig) -> torch.Tensor:
    exponents = torch.arange(0, cfg.head_dim, 2, dtype=torch.int64).float() / cfg.head_dim
    return 1.0 / (cfg.rope_theta**exponents)


class LlamaModel(nn.Module):
    """Embedding, decoder layers, final norm and (possibly tied) output head."""

    inv_freq: torch.Tensor
    rope_cos: torch.Tensor
    rope_sin: torch.Tensor
    head: torch.Tensor | None

    def __init__(
        self, cfg: ModelConfig, tp: TensorParallel, qkv_bias: bool = False, o_bias: bool = False
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.tp = tp
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg, tp, qkv_bias, o_bias) for _ in range(cfg.num_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # An untied output head is a buffer (it moves and casts with the model).
        self.register_buffer(
            "head",
            None if cfg.tie_word_embeddings else torch.empty(cfg.vocab_size, cfg.hidden_size),
        )
        # The output head as a module (tied or not), set by `load_model`: quantized, or
        # with its weight packed for oneDNN.
        self.head_proj: nn.Module | None = None
        self.register_buffer("inv_freq", _inv_freq(cfg), persistent=False)
        # cos/sin of every position, in the compute dtype (`set_rope_tables`): a decode
        # step gathers rows instead of computing trig functions.
        self.register_buffer("rope_cos", torch.zeros(0), persistent=False)
        self.register_buffer("rope_sin", torch.zeros(0), persistent=False)
        self.ops: TorchOps = TorchOps()

    def use_ops(self, ops: TorchOps) -> None:
        """Run the layers' small ops with `ops` (see `hanlin.serve.kernels`)."""
        self.ops = ops
        for layer in self.decoder_layers():
            layer.ops = ops

    def set_rope_tables(self, dtype: torch.dtype) -> None:
        """Compute cos/sin for every position in fp32 and store them in `dtype`."""
        positions = torch.arange(self.cfg.max_position_embeddings, dtype=torch.float32)
        freqs = positions[:, None] * self.inv_freq.float().cpu()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        # rotate_half(x) = cat(-x2, x1): fold its sign into sin (see DecoderLayer).
        sign = torch.ones(self.cfg.head_dim)
        sign[: self.cfg.head_dim // 2] = -1.0
        device = self.inv_freq.device
        self.rope_cos = emb.cos().to(device=device, dtype=dtype)[:, None, :]
        self.rope_sin = (emb.sin() * sign).to(device=device, dtype=dtype)[:, None, :]

    def decoder_layers(self) -> list[DecoderLayer]:
        """The layers, typed."""
        return [layer for layer in self.layers if isinstance(layer, DecoderLayer)]

    @property
    def _layers(self) -> list[DecoderLayer]:
        cached: list[DecoderLayer] | None = self.__dict__.get("_layer_list")
        if cached is None:
            cached = self.decoder_layers()
            self.__dict__["_layer_list"] = cached
        return cached

    def rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [T, 1, head_dim] for the given absolute positions."""
        if self.rope_cos.numel() == 0:
            self.set_rope_tables(self.embed.weight.dtype)
        return self.rope_cos[positions], self.rope_sin[positions]

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]],
        batch: AttentionBatch,
        logit_rows: torch.Tensor,
    ) -> torch.Tensor:
        """Run one step; return fp32 logits for `logit_rows` of the flat batch."""
        x = self.embed(input_ids)
        cos, sin = self.rope(positions)
        delta: torch.Tensor | None = None
        # forward() directly: module __call__ bookkeeping is a visible share of a
        # batch-1 step (no hooks are used here).
        for layer, cache in zip(self._layers, caches, strict=True):
            x, delta = layer.forward(x, delta, cos, sin, cache, batch)
        if logit_rows.numel() != x.shape[0] or not batch.all_decode:
            x = x.index_select(0, logit_rows)
            delta = None if delta is None else delta.index_select(0, logit_rows)
        _, h = self.ops.add_rms_norm(x, delta, self.norm)
        if self.head_proj is not None:
            logits: torch.Tensor = self.head_proj.forward(h)
            return logits.float()
        head = self.embed.weight if self.head is None else self.head
        return F.linear(h, head).float()


def load_model(
    model_dir: Path,
    tp: TensorParallel | None = None,
    quantization: str | None = None,
    adapters: list[Path] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> LlamaModel:
    """Load an HF safetensors directory (this rank's shard), merging PEFT adapters.

    Weights are read, merged, quantized and cast on the CPU, then packed for the
    CPU's kernels or moved to `device`.
    """
    from safetensors.torch import load_file

    tp = tp or TensorParallel()
    cfg = ModelConfig.from_dir(model_dir)
    if tp.size > cfg.num_kv_heads:
        raise ValueError(
            f"tensorParallel={tp.size} exceeds the model's {cfg.num_kv_heads} key/value heads"
        )
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"model directory {model_dir} has no *.safetensors files")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    state = {k.removeprefix("model."): v.float() for k, v in state.items()}
    for adapter in adapters or []:
        merge_adapters(state, adapter)
    if cfg.architecture == "InternLM2ForCausalLM":
        state = internlm2_to_llama(state, cfg)
    qkv_bias = "layers.0.self_attn.q_proj.bias" in state
    o_bias = "layers.0.self_attn.o_proj.bias" in state
    with torch.device("meta"):
        model = LlamaModel(cfg, tp, qkv_bias, o_bias)
    model = model.to_empty(device="cpu")
    _fill(model, cfg, tp, state)
    del state
    on_cpu = torch.device(device).type == "cpu"
    if quantization and quantization != "none":
        # bf16 activations always take the packed kernels: one copy of the codes suffices.
        # Elsewhere (CUDA) the layers dequantize on the fly from the reference codes.
        _quantize(model, quantization, drop_reference=dtype == torch.bfloat16, pack=on_cpu)
    _cast(model, dtype)
    if on_cpu and (not quantization or quantization == "none") and can_pack(dtype):
        _pack(model)
    if not on_cpu:
        model = model.to(device)
    model.set_rope_tables(dtype)
    model.use_ops(kernels.select(device, dtype))
    model.requires_grad_(False)
    return model.eval()


def _quantize(model: LlamaModel, quantization: str, drop_reference: bool, pack: bool) -> None:
    """Quantize every linear layer and the output head from the fp32 weights."""
    from hanlin.quant import QuantLinear, quantize_model

    bits = {"int8": 8, "int4": 4}.get(quantization)
    if bits is None:
        raise ValueError(f"quantization must be none, int8 or int4, got {quantization!r}")
    quantize_model(model.layers, bits=bits, group_size=QUANT_GROUP_SIZE)
    # The head reads vocab x hidden weights every step (a fifth of SmolLM2's bytes):
    # quantize it too, but to int8 even for int4 (as GGUF files keep the output tensor
    # at higher precision): int4 there costs SmolLM2 ~5% perplexity, int8 well under 1%.
    # A tied embedding keeps its full-precision table for lookups.
    head = model.embed.weight if model.head is None else model.head
    proj = QuantLinear(model.cfg.hidden_size, model.cfg.vocab_size, HEAD_BITS, QUANT_GROUP_SIZE)
    proj.load_weight(head)
    model.head_proj = proj
    if model.head is not None:
        model.head = None
    if not pack:
        return
    for module in model.modules():
        if isinstance(module, QuantLinear):
            module.pack_for_cpu(drop_reference=drop_reference)


def _pack(model: LlamaModel) -> None:
    """Move every linear layer and the head onto oneDNN packed weights (`PackedLinear`).

    A tied head gets a packed copy of the embedding table (the embedding lookup
    keeps the plain one); an untied head's plain weight is dropped.
    """
    for layer in model.decoder_layers():
        for attr in ("qkv", "o", "gate_up", "down"):
            setattr(layer, attr, PackedLinear.from_linear(getattr(layer, attr)))
    head = model.embed.weight if model.head is None else model.head
    model.head_proj = PackedLinear(head)
    model.head = None


def _cast(model: LlamaModel, dtype: torch.dtype) -> None:
    """Cast floating weights to `dtype`, leaving quantized layers' scales as they are."""
    from hanlin.quant import QuantLinear

    for module in model.modules():
        if isinstance(module, QuantLinear):
            continue
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_floating_point():
                setattr(module, name, nn.Parameter(p.data.to(dtype), requires_grad=False))
        for name, b in list(module.named_buffers(recurse=False)):
            # The rotary frequencies stay fp32: positions up to 8k need the mantissa.
            if b is not None and b.is_floating_point() and name != "inv_freq":
                setattr(module, name, b.to(dtype))


def _fill(
    model: LlamaModel, cfg: ModelConfig, tp: TensorParallel, state: dict[str, torch.Tensor]
) -> None:
    q_rows, kv_rows, inter = tp.slices(cfg)
    with torch.no_grad():
        # Built on the meta device: buffers computed in __init__ must be recomputed.
        model.inv_freq.copy_(_inv_freq(cfg))
        model.embed.weight.copy_(state["embed_tokens.weight"])
        model.norm.weight.copy_(state["norm.weight"])
        if model.head is not None:
            model.head.copy_(state["lm_head.weight"])
        for i, layer in enumerate(model.decoder_layers()):
            p = f"layers.{i}."
            a = p + "self_attn."
            layer.input_norm.weight.copy_(state[p + "input_layernorm.weight"])
            layer.post_norm.weight.copy_(state[p + "post_attention_layernorm.weight"])
            layer.qkv.weight.copy_(
                torch.cat(
                    (
                        state[a + "q_proj.weight"][q_rows],
                        state[a + "k_proj.weight"][kv_rows],
                        state[a + "v_proj.weight"][kv_rows],
                    )
                )
            )
            if layer.qkv.bias is not None:
                layer.qkv.bias.copy_(
                    torch.cat(
                        (
                            state[a + "q_proj.bias"][q_rows],
                            state[a + "k_proj.bias"][kv_rows],
                            state[a + "v_proj.bias"][kv_rows],
                        )
                    )
                )
            layer.o.weight.copy_(state[a + "o_proj.weight"][:, q_rows])
            if layer.o.bias is not None:
                # Row-parallel: the ranks' outputs are summed, so one rank adds the bias.
                bias = state[a + "o_proj.bias"]
                layer.o.bias.copy_(bias if tp.rank == 0 else torch.zeros_like(bias))
            m = p + "mlp."
            layer.gate_up.weight.copy_(
                torch.cat(
                    (
                        state[m + "gate_proj.weight"][inter],
                        state[m + "up_proj.weight"][inter],
                    )
                )
            )
            layer.down.weight.copy_(state[m + "down_proj.weight"][:, inter])
