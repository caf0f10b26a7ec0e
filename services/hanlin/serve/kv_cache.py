"""The paged KV cache: fixed-size blocks, reference counts, a free list, prefix sharing.

Block contents live in per-layer tensors ``[num_blocks * block_size, kv_heads,
head_dim]`` (owned by the engine); this module only hands out block ids. A full
block is identified by a hash chained over every token before it, so two
requests with the same prompt prefix map it to the same block. Freed blocks
keep their hash until reused, so a later request can still hit them; the free
list is LRU ordered so the oldest cached prefixes are evicted first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

# cgroup v1 reports "no limit" as a huge number near 2**63.
_CGROUP_UNLIMITED = 2**60


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory(root: Path = Path("/")) -> int:
    """Bytes this process can still allocate: host MemAvailable, or less under a cgroup limit.

    The container's limit (cgroup v2 ``memory.max`` minus ``memory.current``, or
    v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``) is what a pod
    may use before it is OOM-killed; the host figure bounds it otherwise.
    """
    candidates: list[int] = []
    try:
        for line in (root / "proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    cg = root / "sys/fs/cgroup"
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(cg / limit_file), _read_int(cg / usage_file)
        if limit is not None and usage is not None and limit < _CGROUP_UNLIMITED:
            candidates.append(max(0, limit - usage))
    if not candidates:
        raise RuntimeError("cannot tell the available memory (no /proc/meminfo, no cgroup)")
    return min(candidates)


class OutOfBlocks(Exception):
    """Raised internally when an allocation cannot be satisfied."""


def block_hashes(token_ids: Sequence[int], block_size: int, seed: int = 0) -> list[int]:
    """Chained hashes of every full block of `token_ids`.

    `seed` starts the chain: the same tokens under different LoRA adapters have
    different keys and values, so their blocks must never be shared.
    """
    hashes: list[int] = []
    parent = seed
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash((parent, tuple(token_ids[start : start + block_size])))
        hashes.append(parent)
    return hashes


class BlockManager:
    """Hands out KV blocks by reference count; tracks cached full blocks by hash."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.ref_counts = [0] * num_blocks
        self.free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.block_to_hash: dict[int, int] = {}
        self.prefix_hits = 0

    @property
    def num_free(self) -> int:
        """Blocks with no owner (some may still hold a reusable cached prefix)."""
        return len(self.free)

    @property
    def usage(self) -> float:
        """Fraction of blocks owned by live requests."""
        return 1.0 - self.num_free / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        """Blocks to hold `num_tokens` tokens."""
        return -(-num_tokens // self.block_size)

    def match_prefix(self, hashes: Sequence[int]) -> list[int]:
        """Cached blocks for the longest run of leading `hashes` (not yet claimed)."""
        if not self.prefix_caching:
            return []
        found: list[int] = []
        for h in hashes:
            block = self.hash_to_block.get(h)
            if block is None:
                break
            found.append(block)
        return found

    def claim(self, blocks: Sequence[int]) -> None:
        """Take a reference on already-cached blocks (a prefix hit)."""
        for b in blocks:
            if self.ref_counts[b] == 0:
                del self.free[b]
            self.ref_counts[b] += 1
        self.prefix_hits += len(blocks)

    def allocate(self, count: int) -> list[int]:
        """Fresh blocks, evicting the least recently freed cached ones; raises OutOfBlocks."""
        if count > len(self.free):
            raise OutOfBlocks
        out: list[int] = []
        for _ in range(count):
            b, _ = self.free.popitem(last=False)
            old = self.block_to_hash.pop(b, None)
            if old is not None:
                del self.hash_to_block[old]
            self.ref_counts[b] = 1
            out.append(b)
        return out

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference on each block; unowned blocks go to the free list's tail."""
        # Free the tail of a sequence first so its prefix blocks stay cached longest.
        for b in reversed(blocks):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free[b] = None
            elif self.ref_counts[b] < 0:
                raise RuntimeError(f"block {b} released more times than claimed")

    def register(self, block: int, block_hash: int) -> None:
        """Record that `block` holds the full block identified by `block_hash`."""
        if not self.prefix_caching or block_hash in self.hash_to_block:
            return
        if block in self.block_to_hash:
            return
        self.hash_to_block[block_hash] = block
        self.block_to_hash[block] = block_hash
