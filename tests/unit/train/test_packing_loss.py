"""Packed rows give each document exactly the loss it has on its own."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from hanlin.train.loop import CausalLMLoss
from hanlin.train.pipeline import collate, pack, unpacked
from hanlin.train.tokenize import IGNORE, Sample


def _per_token_losses(model, batch) -> torch.Tensor:  # type: ignore[no-untyped-def]
    hidden = model.get_decoder()(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state
    logits = model.get_output_embeddings()(hidden[:, :-1])
    targets = batch["labels"][:, 1:]
    return F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none") * (
        targets != IGNORE
    )


def test_packed_equals_unpacked_per_document(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    docs = []
    for n in (7, 12, 5, 20, 9):
        ids = torch.randint(0, 256, (n,), generator=g).tolist()
        labels = [IGNORE] * (n // 3) + ids[n // 3 :]  # a masked prompt, like SFT
        docs.append(Sample(ids, labels))
    packed_rows = list(pack(docs, seq_len=64, split=False))
    assert len(packed_rows) == 1  # all five documents share one row
    with torch.no_grad():
        packed = _per_token_losses(model, collate(packed_rows, pad_id=0))[0]
        start = 0
        for doc, row in zip(docs, unpacked(docs, 64), strict=True):
            alone = _per_token_losses(model, collate([row], pad_id=0))[0]
            n = len(doc)
            # Position t predicts token t+1: the document's own n-1 predictions.
            assert torch.allclose(packed[start : start + n - 1], alone, atol=1e-5), doc
            start += n
        # The loss the trainer uses agrees too, and it is not trivially zero.
        loss_fn = CausalLMLoss(model)
        b = collate(packed_rows, pad_id=0)
        total, count = loss_fn(b["input_ids"], b["position_ids"], b["labels"])
        u = collate(list(unpacked(docs, 64)), pad_id=0)
        total_u, count_u = loss_fn(u["input_ids"], u["position_ids"], u["labels"])
    assert int(count) == int(count_u) > 0
    assert torch.allclose(total, total_u, rtol=1e-5) and float(total) > 1.0


def test_without_position_resets_documents_would_leak(tiny_model: Path) -> None:
    """Guard for the test above: plain causal attention over the row differs."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    docs = [
        Sample(list(range(10, 20)), list(range(10, 20))),
        Sample(list(range(30, 40)), list(range(30, 40))),
    ]
    batch = collate(list(pack(docs, seq_len=32, split=False)), pad_id=0)
    leaky = dict(batch, position_ids=torch.arange(20)[None])
    with torch.no_grad():
        a = _per_token_losses(model, batch)[0, 10:]
        b = _per_token_losses(model, leaky)[0, 10:]
    assert not torch.allclose(a, b, atol=1e-4)
