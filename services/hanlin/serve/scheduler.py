"""Iteration-level scheduling: which sequences run this step, and how many tokens each.

Every step has a token budget (`max_batch_tokens`). Running sequences go first
(one token each while decoding, a chunk while still prefilling); then waiting
sequences are admitted in arrival order while budget, sequence slots and KV
blocks last. Long prompts are prefilled in chunks across steps, interleaved
with other sequences' decode tokens. When blocks run out, the most recently
admitted running sequence is preempted: its blocks are freed and it goes back
to the head of the queue, to be recomputed from its prompt and the tokens it
already produced (nothing is dropped).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from hanlin.serve.kv_cache import BlockManager, OutOfBlocks, block_hashes
from hanlin.serve.params import SamplingParams


class Status(enum.Enum):
    """Where a sequence is in its life."""

    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Sequence:
    """One generation stream: its tokens, its KV blocks and its output so far."""

    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    arrival: float = field(default_factory=time.monotonic)
    output_ids: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed: int = 0  # tokens whose K/V are in the cache
    blocks: list[int] = field(default_factory=list)
    num_registered: int = 0  # leading full blocks already offered to the prefix cache
    generator: torch.Generator | None = None
    output_logprobs: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    prompt_logprobs: list[tuple[float, dict[int, float]] | None] = field(default_factory=list)
    prompt_logprobs_sent: bool = False
    finish_reason: str | None = None
    first_token_time: float | None = None
    detok: Any = None  # the Detokenizer (kept generic to avoid an import cycle)
    preemptions: int = 0
    adapter: int = 0  # 0: the base model; i: the engine's LoRA adapter i - 1
    guide_state: Any = None  # the grammar matcher of a guided sequence (structured output)
    cached_tokens: int = 0  # prompt tokens its first admission found in the prefix cache

    @property
    def all_ids(self) -> list[int]:
        """Prompt followed by generated tokens (what a recompute prefills)."""
        return self.prompt_ids + self.output_ids

    @property
    def num_tokens(self) -> int:
        """Prompt plus output length."""
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def wants_prompt_logprobs(self) -> bool:
        """Prompt logprobs still to be collected (they need every prompt row's logits)."""
        return self.params.prompt_logprobs is not None and len(self.prompt_logprobs) < len(
            self.prompt_ids
        )


@dataclass
class ScheduledBatch:
    """The sequences of one step and the number of new tokens each computes."""

    seqs: list[tuple[Sequence, int]]
    preempted: list[Sequence]

    @property
    def num_tokens(self) -> int:
        """Total new tokens this step."""
        return sum(n for _, n in self.seqs)


class Scheduler:
    """Continuous batching over a `BlockManager`."""

    def __init__(self, blocks: BlockManager, max_batch_tokens: int, max_seqs: int) -> None:
        self.blocks = blocks
        self.max_batch_tokens = max_batch_tokens
        self.max_seqs = max_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0
        # Prompt tokens admitted, and of them those found in the prefix cache (cumulative).
        self.prefix_queried = 0
        self.prefix_hit = 0

    def add(self, seq: Sequence) -> None:
        """Queue a new sequence."""
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def has_work(self) -> bool:
        """Whether any sequence is waiting or running."""
        return bool(self.waiting or self.running)

    def finish(self, seq: Sequence, reason: str) -> None:
        """Mark a sequence done (or aborted) and free its blocks."""
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        self.blocks.release(seq.blocks)
        seq.blocks = []

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq.blocks)
        seq.blocks = []
        seq.num_computed = 0
        seq.num_registered = 0
        seq.status = Status.WAITING
        seq.preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def _grow(self, seq: Sequence, new_tokens: int) -> None:
        need = self.blocks.blocks_needed(seq.num_computed + new_tokens) - len(seq.blocks)
        if need > 0:
            seq.blocks.extend(self.blocks.allocate(need))

    def schedule(self) -> ScheduledBatch:
        """Pick this step's work."""
        budget = self.max_batch_tokens
        chosen: list[tuple[Sequence, int]] = []
        preempted: list[Sequence] = []
        for seq in list(self.running):
            if seq.status is not Status.RUNNING or budget == 0:
                continue
            n = min(seq.num_tokens - seq.num_computed, budget)
            while True:
                try:
                    self._grow(seq, n)
                    break
                except OutOfBlocks:
                    victim = self.running[-1]
                    self._preempt(victim)
                    preempted.append(victim)
                    chosen = [(s, k) for s, k in chosen if s is not victim]
                    if victim is seq:
                        break
            if seq.status is Status.RUNNING:
                chosen.append((seq, n))
                budget -= n
        budget = self.max_batch_tokens - sum(n for _, n in chosen)
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs and not preempted:
            seq = self.waiting[0]
            if not seq.blocks and seq.num_computed == 0:
                self._attach_prefix(seq)
            n = min(seq.num_tokens - seq.num_computed, budget)
            try:
                self._grow(seq, n)
            except OutOfBlocks:
                # Give back a prefix hit we could not complete; try again next step.
                self.blocks.release(seq.blocks)
                seq.blocks = []
                seq.num_computed = 0
                break
            self.waiting.popleft()
            if self.blocks.prefix_caching:
                self.prefix_queried += seq.num_tokens
                self.prefix_hit += seq.num_computed
            if seq.preemptions == 0:
                seq.cached_tokens = seq.num_computed
            seq.status = Status.RUNNING
            self.running.append(seq)
            chosen.append((seq, n))
            budget -= n
        return ScheduledBatch(chosen, preempted)

    def _attach_prefix(self, seq: Sequence) -> None:
        if seq.params.prompt_logprobs is not None:
            return  # every prompt row's logits are needed: nothing to skip
        ids = seq.all_ids
        bs = self.blocks.block_size
        # Keep at least one token to compute so the step yields logits to sample from.
        usable = (len(ids) - 1) // bs
        hits = self.blocks.match_prefix(block_hashes(ids[: usable * bs], bs, seq.adapter))
        if hits:
            self.blocks.claim(hits)
            seq.blocks = list(hits)
            seq.num_computed = len(hits) * bs
            seq.num_registered = len(hits)

    def register_full_blocks(self, seq: Sequence) -> None:
        """Offer newly completed full blocks of `seq` to the prefix cache."""
        bs = self.blocks.block_size
        full = seq.num_computed // bs
        if full <= seq.num_registered or not self.blocks.prefix_caching:
            return
        hashes = block_hashes(seq.all_ids[: full * bs], bs, seq.adapter)
        for i in range(seq.num_registered, full):
            self.blocks.register(seq.blocks[i], hashes[i])
        seq.num_registered = full
