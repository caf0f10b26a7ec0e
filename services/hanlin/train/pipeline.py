"""From records to training rows: mixing, shuffling, packing, batching.

The stream is a pure function of (sources, tokenizer, seed, epoch), so the
position in it (epoch, rows consumed) is all a checkpoint needs to resume, and
every rank computes the same global batch and takes its own slice of it.

Packing concatenates documents into rows of exactly `seq_len` tokens. Each
document's position ids restart at 0; for models that build their attention
mask from position ids (transformers' Llama and most decoders when no 2-D mask
is given), that keeps attention inside each document, as flash-attention's
varlen kernels do. The first token of each document gets no label: it would be
predicted from the previous document.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hanlin.train.records import DataError, read_records
from hanlin.train.tokenize import IGNORE, Sample, encode

SHUFFLE_BUFFER = 4096


@dataclass
class Source:
    """One dataset: a local path, its format and its mixing weight."""

    path: Path
    format: str
    weight: float = 1.0


@dataclass
class Row:
    """One training row (one sequence of a batch)."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]


def _source_samples(source: Source, tokenizer: Any) -> Iterator[Sample]:
    for record in read_records(source.path, source.format):
        sample = encode(tokenizer, record)
        if len(sample) > 1:
            yield sample


def mixed_samples(sources: list[Source], tokenizer: Any, seed: int, epoch: int) -> Iterator[Sample]:
    """Interleave sources in proportion to their weights, through a shuffle buffer.

    Weighted round robin (smooth: the source furthest behind its share goes next)
    keeps the mix even throughout an epoch; the epoch ends when all are drained.
    """
    streams = [_source_samples(s, tokenizer) for s in sources]
    weights = [max(s.weight, 1e-9) for s in sources]
    taken = [0] * len(sources)
    live = list(range(len(sources)))
    rng = random.Random(seed * 1_000_003 + epoch)
    buffer: list[Sample] = []
    while live:
        i = min(live, key=lambda k: (taken[k] + 1) / weights[k])
        try:
            buffer.append(next(streams[i]))
            taken[i] += 1
        except StopIteration:
            live.remove(i)
            continue
        if len(buffer) >= SHUFFLE_BUFFER:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def pack(samples: Iterable[Sample], seq_len: int, split: bool) -> Iterator[Row]:
    """Pack documents into rows of `seq_len` tokens.

    With `split` (raw text) a document that does not fit continues in the next
    row, so no token is wasted; without it (chat) a document that does not fit
    starts a new row and one longer than `seq_len` is truncated.
    """
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []

    def flush() -> Row:
        row = Row(ids[:], labels[:], pos[:])
        ids.clear()
        labels.clear()
        pos.clear()
        return row

    for sample in samples:
        doc_ids, doc_labels = sample.input_ids, sample.labels
        if not split:
            doc_ids, doc_labels = doc_ids[:seq_len], doc_labels[:seq_len]
            if len(ids) + len(doc_ids) > seq_len:
                yield flush()
        while doc_ids:
            room = seq_len - len(ids)
            piece_ids, piece_labels = doc_ids[:room], doc_labels[:room]
            doc_ids, doc_labels = doc_ids[room:], doc_labels[room:]
            ids.extend(piece_ids)
            labels.extend([IGNORE] + piece_labels[1:])
            pos.extend(range(len(piece_ids)))
            if len(ids) == seq_len:
                yield flush()
    if ids:
        yield flush()


def unpacked(samples: Iterable[Sample], seq_len: int) -> Iterator[Row]:
    """One document per row, truncated to `seq_len` (padding happens per batch)."""
    for s in samples:
        n = min(len(s), seq_len)
        yield Row(s.input_ids[:n], [IGNORE] + s.labels[1:n], list(range(n)))


def collate(rows: list[Row], pad_id: int) -> dict[str, Any]:
    """Stack rows into tensors, right-padding to the longest row.

    Padding gets its own run of position ids (a separate "document"), so it never
    attends to or is attended by real tokens, and IGNORE labels.
    """
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids, labels, pos = [], [], []
    for r in rows:
        pad = width - len(r.input_ids)
        ids.append(r.input_ids + [pad_id] * pad)
        labels.append(r.labels + [IGNORE] * pad)
        pos.append(r.position_ids + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
    }


@dataclass
class DataPlan:
    """How rows are made and cut into global batches."""

    sources: list[Source]
    seq_len: int
    packing: bool
    split_documents: bool
    seed: int
    rows_per_step: int  # the global batch: micro batch x accumulation x world size


def epoch_rows(plan: DataPlan, tokenizer: Any, epoch: int) -> Iterator[Row]:
    """Every row of one epoch, in training order."""
    samples = mixed_samples(plan.sources, tokenizer, plan.seed, epoch)
    if plan.packing:
        return pack(samples, plan.seq_len, plan.split_documents)
    return unpacked(samples, plan.seq_len)


def count_steps_per_epoch(plan: DataPlan, tokenizer: Any) -> int:
    """Optimizer steps in one epoch (a last partial batch is dropped)."""
    rows = sum(1 for _ in epoch_rows(plan, tokenizer, 0))
    return rows // plan.rows_per_step


def global_batches(
    plan: DataPlan,
    tokenizer: Any,
    start_epoch: int = 0,
    skip_steps: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, list[Row]]]:
    """Endless (epoch, step-in-epoch, rows) global batches, resuming at a position."""
    epoch = start_epoch
    while True:
        if on_epoch is not None:
            on_epoch(epoch)
        step = 0
        batch: list[Row] = []
        produced = False
        for row in epoch_rows(plan, tokenizer, epoch):
            batch.append(row)
            if len(batch) == plan.rows_per_step:
                produced = True
                if step >= skip_steps:
                    yield epoch, step, batch
                step += 1
                batch = []
        if not produced:
            raise DataError(
                f"spec.data: the data makes fewer than {plan.rows_per_step} rows (one global "
                "batch); add data or lower spec.hyperparameters.batchSize / gradientAccumulation"
            )
        epoch += 1
        skip_steps = 0
