"""Block manager and scheduler bookkeeping (no model needed)."""

from __future__ import annotations

import pytest

from hanlin.serve.kv_cache import BlockManager, OutOfBlocks, block_hashes
from hanlin.serve.params import SamplingParams
from hanlin.serve.scheduler import Scheduler, Sequence, Status


def test_allocate_release_and_usage() -> None:
    bm = BlockManager(4, 16)
    a = bm.allocate(3)
    assert len(set(a)) == 3 and bm.usage == 0.75
    with pytest.raises(OutOfBlocks):
        bm.allocate(2)
    bm.release(a)
    assert bm.usage == 0.0 and bm.num_free == 4


def test_prefix_blocks_are_shared_by_hash_and_evicted_lru() -> None:
    bm = BlockManager(3, 2)
    tokens = [1, 2, 3, 4, 5]
    hashes = block_hashes(tokens, 2)
    assert len(hashes) == 2  # only full blocks
    blocks = bm.allocate(2)
    for b, h in zip(blocks, hashes, strict=True):
        bm.register(b, h)
    bm.release(blocks)
    assert bm.match_prefix(hashes) == blocks  # still cached after release
    bm.claim(blocks[:1])
    assert bm.ref_counts[blocks[0]] == 1 and bm.usage == pytest.approx(1 / 3)
    # A different prefix shares nothing: the chain hash covers every earlier token.
    assert bm.match_prefix(block_hashes([9, 9, 3, 4], 2)) == []
    bm.allocate(2)  # evicts the unowned cached block
    assert bm.match_prefix(hashes) == blocks[:1]


def _seq(rid: str, n: int, max_tokens: int = 8) -> Sequence:
    return Sequence(rid, list(range(1, n + 1)), SamplingParams(max_tokens=max_tokens))


def test_chunked_prefill_respects_the_token_budget() -> None:
    sched = Scheduler(BlockManager(64, 4), max_batch_tokens=10, max_seqs=8)
    long, short = _seq("long", 25), _seq("short", 3)
    sched.add(long)
    sched.add(short)
    batch = sched.schedule()
    assert [(s.request_id, n) for s, n in batch.seqs] == [("long", 10)]
    long.num_computed += 10
    batch = sched.schedule()
    assert [(s.request_id, n) for s, n in batch.seqs] == [("long", 10)]


def test_preemption_recomputes_latest_and_never_drops() -> None:
    sched = Scheduler(BlockManager(4, 4), max_batch_tokens=64, max_seqs=8)
    first, second = _seq("first", 7), _seq("second", 7)
    sched.add(first)
    sched.add(second)
    batch = sched.schedule()
    assert {s.request_id for s, _ in batch.seqs} == {"first", "second"}
    for s, n in batch.seqs:
        s.num_computed += n
        s.output_ids.append(0)
    # Both now need a third block; only one fits: the later one is preempted.
    first.output_ids.append(0)
    second.output_ids.append(0)
    first.num_computed += 1
    second.num_computed += 1
    batch = sched.schedule()
    assert [s.request_id for s, _ in batch.seqs] == ["first"]
    assert batch.preempted == [second] and second.status is Status.WAITING
    assert second.num_computed == 0 and second.blocks == [] and sched.waiting[0] is second
    assert sched.num_preemptions == 1
