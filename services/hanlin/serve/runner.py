"""Runs one step of the model over the paged cache: the part every TP rank executes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from hanlin.serve import graphs, kernels
from hanlin.serve.graphs import StaticDecode
from hanlin.serve.lora import LoRAContext
from hanlin.serve.model import AttentionBatch, LlamaModel, padding_mask


@dataclass
class StepInputs:
    """Everything a rank needs to run a step (plain tensors: cheap to broadcast)."""

    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    slot_mapping: torch.Tensor  # [T]
    decode_groups: list[tuple[torch.Tensor, torch.Tensor]]
    # decode tokens are rows [0, B), shortest context first, in groups of similar
    # context length: (context slots [n, W], context lengths [n]) per group
    prefills: list[tuple[int, int, torch.Tensor]]  # (first row, rows, context slots)
    logit_rows: torch.Tensor  # [R]
    lora_groups: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    # (LoRA adapter index, rows of the flat batch that use it)

    def to(self, device: torch.device) -> StepInputs:
        """These inputs on `device` (built on the CPU by the engine; copied once a step)."""
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return StepInputs(
            input_ids=move(self.input_ids),
            positions=move(self.positions),
            slot_mapping=move(self.slot_mapping),
            decode_groups=[(move(s), move(n)) for s, n in self.decode_groups],
            prefills=[(start, rows, move(s)) for start, rows, s in self.prefills],
            logit_rows=move(self.logit_rows),
            lora_groups=[(a, move(r)) for a, r in self.lora_groups],
        )


class ModelRunner:
    """Owns a model shard and its slice of the KV cache."""

    def __init__(self, model: LlamaModel, num_blocks: int, block_size: int) -> None:
        self.model = model
        self.lora: LoRAContext | None = None
        kv_heads = model.decoder_layers()[0].kv_heads
        # One block past the scheduler's: a scratch slot for the padding rows of
        # static-shape decode steps (`hanlin.serve.graphs`).
        self.scratch_slot = num_blocks * block_size
        shape = (self.scratch_slot + block_size, kv_heads, model.cfg.head_dim)
        dtype = model.embed.weight.dtype
        self.dtype = dtype
        self.device = model.embed.weight.device
        self.caches = [
            (
                torch.zeros(shape, dtype=dtype, device=self.device),
                torch.zeros(shape, dtype=dtype, device=self.device),
            )
            for _ in range(model.cfg.num_layers)
        ]
        self.static: StaticDecode | None = None
        if graphs.enabled(self.device) and model.tp.size == 1:
            self.static = StaticDecode(
                model, self.caches, self.scratch_slot, self.scratch_slot, capture=True
            )

    @staticmethod
    def kv_bytes_per_token(model: LlamaModel) -> int:
        """Cache bytes one token takes on this rank (all layers, K and V)."""
        layer = model.decoder_layers()[0]
        size = model.embed.weight.element_size()
        return 2 * model.cfg.num_layers * layer.kv_heads * model.cfg.head_dim * size

    def _attention_batch(self, s: StepInputs, padded: list[bool]) -> AttentionBatch:
        groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
        num_decode = 0
        paged = self.model.ops.paged_decode
        for (slots, lens), pads in zip(s.decode_groups, padded, strict=True):
            width = slots.shape[1]
            num_decode += slots.shape[0]
            mask: torch.Tensor | None = None
            if not paged and pads:
                # Padded contexts need a mask; equal lengths (always so at batch 1) need none.
                mask = padding_mask(lens, width, self.dtype)
            groups.append((slots, lens, mask))
        prefills: list[tuple[int, int, torch.Tensor, torch.Tensor | None]] = []
        for start, rows, slots in s.prefills:
            ctx = slots.numel()
            causal: torch.Tensor | None = None
            if ctx != rows:
                # Query i sits at absolute position ctx - rows + i and sees keys up to it.
                q_pos = torch.arange(ctx - rows, ctx, device=slots.device)[:, None]
                causal = torch.arange(ctx, device=slots.device)[None, :] <= q_pos
            prefills.append((start, rows, slots, causal))
        return AttentionBatch(
            slot_mapping=s.slot_mapping,
            num_decode=num_decode,
            decode_groups=groups,
            prefills=prefills,
            all_decode=not prefills and num_decode == s.input_ids.numel(),
        )

    @torch.inference_mode()
    def execute(self, s: StepInputs) -> torch.Tensor:
        """Run the step; return fp32 logits for `s.logit_rows` (on the CPU, for sampling)."""
        # Kernels built in the background since startup switch in here, between steps.
        # Inputs the engine grouped for the torch ops suit the kernels too.
        built = kernels.upgrade(self.model.ops)
        if built is not None:
            self.model.use_ops(built)
        if self.static is not None and self.lora is None and self.static.handles(s):
            return self.static.run(s).cpu()
        # Which groups pad a context, read before the copy (no device sync per step).
        padded = [bool((lens != slots.shape[1]).any()) for slots, lens in s.decode_groups]
        s = s.to(self.device)
        batch = self._attention_batch(s, padded)
        if self.lora is not None:
            self.lora.groups = s.lora_groups
        logits: torch.Tensor = self.model(
            s.input_ids, s.positions, self.caches, batch, s.logit_rows
        )
        return logits.cpu()
