"""Decode steps at static shapes, captured once per shape as CUDA graphs and replayed.

A decode step of a small model on a GPU is bound by kernel launches, not by the
GPU: hundreds of small kernels a step, each launched from Python. A CUDA graph
records the whole step once and replays it with one launch. Graphs need fixed
shapes, so an all-decode step is padded: its rows to a batch bucket (1, 2, 4, ...)
and its contexts to a width bucket (64, 128, ...). Padding rows decode a dummy
token whose key/value go to a scratch slot past the scheduler's blocks and which
attends to that slot alone; padded context columns are masked. Each (rows, width)
bucket is captured the first time a step needs it, into one shared memory pool.

With `capture=False` the same padded step runs eagerly: that is how the CPU tests
check the padding, the scratch slot and the masks token for token. Graphs are
opt-in (`HANLIN_CUDA_GRAPHS=1`) and used with one process and no per-request
LoRA adapters; other steps run eagerly as before.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hanlin.serve.model import AttentionBatch, LlamaModel, padding_mask

if TYPE_CHECKING:
    from hanlin.serve.runner import StepInputs

log = logging.getLogger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
MIN_WIDTH = 64


def enabled(device: torch.device) -> bool:
    """``HANLIN_CUDA_GRAPHS=1`` turns graphs on for CUDA devices.

    Opt-in until `bench/serve/cuda_check.py` has run them on a GPU: the padded
    steps are tested on the CPU, the capture itself only where CUDA is.
    """
    return device.type == "cuda" and os.environ.get("HANLIN_CUDA_GRAPHS", "0") == "1"


@dataclass
class _Bucket:
    ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    slots: torch.Tensor
    lens: torch.Tensor
    rows: torch.Tensor
    graph: Any = None
    out: torch.Tensor | None = None


class StaticDecode:
    """All-decode steps padded to buckets; captured as CUDA graphs when `capture`."""

    def __init__(
        self,
        model: LlamaModel,
        caches: list[tuple[torch.Tensor, torch.Tensor]],
        scratch_slot: int,
        max_width: int,
        capture: bool,
    ) -> None:
        self.model = model
        self.caches = caches
        self.scratch = scratch_slot
        self.max_width = max_width
        self.capture = capture
        self.device = model.embed.weight.device
        self.dtype = model.embed.weight.dtype
        self.buckets: dict[tuple[int, int], _Bucket] = {}
        self.pool: Any = torch.cuda.graph_pool_handle() if capture else None

    def handles(self, s: StepInputs) -> bool:
        """Whether the step is all decode and fits a bucket."""
        if s.prefills or not s.decode_groups:
            return False
        rows = sum(slots.shape[0] for slots, _ in s.decode_groups)
        width = max(slots.shape[1] for slots, _ in s.decode_groups)
        return rows == s.input_ids.numel() and rows <= ROW_BUCKETS[-1] and width <= self.max_width

    def run(self, s: StepInputs) -> torch.Tensor:
        """Logits [rows, vocab] (fp32, on the model's device) of an all-decode step."""
        rows = s.input_ids.numel()
        width = max(slots.shape[1] for slots, _ in s.decode_groups)
        key = (next(b for b in ROW_BUCKETS if b >= rows), self._width(width))
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = self._bucket(*key)
        self._fill(bucket, s, rows)
        if not self.capture:
            return self._forward(bucket)[:rows]
        if bucket.graph is None:
            self._capture(bucket)
        bucket.graph.replay()
        assert bucket.out is not None
        return bucket.out[:rows]

    def _width(self, width: int) -> int:
        w = MIN_WIDTH
        while w < width:
            w *= 2
        return min(w, self.max_width)

    def _bucket(self, rows: int, width: int) -> _Bucket:
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.long, device=self.device)

        return _Bucket(
            ids=zeros(rows),
            positions=zeros(rows),
            slot_mapping=zeros(rows),
            slots=zeros(rows, width),
            lens=zeros(rows),
            rows=torch.arange(rows, device=self.device),
        )

    def _fill(self, b: _Bucket, s: StepInputs, rows: int) -> None:
        """Copy the step into the bucket's buffers; padding points at the scratch slot."""
        b.ids[:rows].copy_(s.input_ids, non_blocking=True)
        b.ids[rows:].zero_()
        b.positions[:rows].copy_(s.positions, non_blocking=True)
        b.positions[rows:].zero_()
        b.slot_mapping[:rows].copy_(s.slot_mapping, non_blocking=True)
        b.slot_mapping[rows:].fill_(self.scratch)
        b.slots.fill_(self.scratch)
        b.lens[rows:].fill_(1)  # a padding row attends to the scratch slot alone
        row = 0
        for slots, lens in s.decode_groups:
            n, w = slots.shape
            b.slots[row : row + n, :w].copy_(slots, non_blocking=True)
            b.lens[row : row + n].copy_(lens, non_blocking=True)
            row += n

    def _forward(self, b: _Bucket) -> torch.Tensor:
        mask = None
        if not self.model.ops.paged_decode:
            mask = padding_mask(b.lens, b.slots.shape[1], self.dtype)
        batch = AttentionBatch(
            slot_mapping=b.slot_mapping,
            num_decode=b.ids.numel(),
            decode_groups=[(b.slots, b.lens, mask)],
            prefills=[],
            all_decode=True,
        )
        logits: torch.Tensor = self.model(b.ids, b.positions, self.caches, batch, b.rows)
        return logits

    def _capture(self, b: _Bucket) -> None:
        """Warm the bucket's kernels up on a side stream, then record it."""
        stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward(b)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            b.out = self._forward(b)
        b.graph = graph
        log.info("captured a CUDA graph: %d rows x %d context", *b.slots.shape)
