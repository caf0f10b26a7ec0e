"""Continued pretraining of the real SmolLM2-135M lowers its perplexity on the text."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from train_fixtures import make_job

from hanlin.train.loop import train

TEXT = (
    "The harbour town of Velmora keeps a ledger of every ship that docks there. "
    "Its keepers write each entry in green ink, because the founder believed green "
    "ink would outlast the salt air. The ledger for the year of the long winter "
    "records forty-one ships, nineteen of them carrying copper from the northern mines. "
    "Each spring the keepers read the ledger aloud in the square, and children learn "
    "the names of the ships by heart: the Marigold, the Quiet Heron, the Seventh Lantern."
)


def _perplexity(model, tok, text: str) -> float:  # type: ignore[no-untyped-def]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    return math.exp(float(loss))


@pytest.mark.slow
def test_continue_pretraining_lowers_perplexity(model_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = tmp_path / "velmora.txt"
    corpus.write_text(TEXT + "\n")
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    before = _perplexity(base, tok, TEXT)
    job = make_job(
        method="continue",
        model={"uri": f"file://{model_dir}"},
        data=[{"uri": f"file://{corpus}", "format": "text"}],
        adapter={"type": "lora", "r": 8, "alpha": 16, "dropout": 0.0},
        hyperparameters={
            "maxSteps": 2,
            "learningRate": 2e-3,
            "batchSize": 1,
            "seqLen": 128,
            "seed": 0,
        },
        output={"uri": f"file://{tmp_path}/out"},
    )
    train(job)
    tuned = PeftModel.from_pretrained(base, tmp_path / "out" / "adapter").eval()
    after = _perplexity(tuned, tok, TEXT)
    assert after < 0.8 * before, (before, after)
