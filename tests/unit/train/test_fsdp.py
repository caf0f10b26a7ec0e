"""FSDP: two sharded processes give the same model as one with the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_distributed import ddp_spec
from train_fixtures import make_job
from train_runs import assert_same_model, run_cli, tensors, write_spec

from hanlin import storage
from hanlin.dev.processes import free_port
from hanlin.storage import parse_uri
from hanlin.train.checkpoint import checkpoint_uri
from hanlin.train.loop import train


@pytest.mark.slow
def test_two_sharded_processes_equal_one(tmp_path: Path) -> None:
    data = tmp_path / "corpus.txt"
    data.write_text("\n\n".join(f"document {i} " + "abc xyz " * (i % 7 + 1) for i in range(60)))
    one = train(make_job(**ddp_spec(data, tmp_path / "one", batch=4, procs=1)))
    spec = ddp_spec(data, tmp_path / "two", batch=1, procs=2)
    # Two micro-batches per step: gradients accumulate unreduced on the first.
    spec["hyperparameters"] |= {"sharding": "fsdp", "gradientAccumulation": 2}
    spec["checkpoint"] = {"everySteps": 2}
    lines = run_cli(write_spec(tmp_path / "two.yaml", spec), env={"MASTER_PORT": str(free_port())})
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) == 4
    assert losses[-1] == pytest.approx(one.final_loss, abs=1e-4)
    b = assert_same_model(tmp_path / "one", tmp_path / "two")
    # The checkpoint holds full tensors too: the final step's equal the output's.
    ckpt = tensors(tmp_path / "two" / "checkpoints" / "step-00000004" / "params.safetensors")
    for k, v in ckpt.items():
        assert v.shape == b[k].shape, k
        assert torch.equal(v, b[k]), k

    # Resuming restores the sharded model and optimizer from the full checkpoint:
    # drop the last checkpoint and the result, run again, get the same model.
    out = parse_uri(f"file://{tmp_path / 'two'}")
    storage.delete(checkpoint_uri(out, 4))
    storage.delete(out.join("model"))
    resumed = run_cli(
        write_spec(tmp_path / "two.yaml", spec), env={"MASTER_PORT": str(free_port())}
    )
    assert resumed[0] == {"event": "resumed", "step": 2, "totalSteps": 4}
    # One job, one report: only the main process prints events.
    events = [line["event"] for line in resumed if "event" in line]
    assert events == ["resumed", "done"], events
    again = tensors(tmp_path / "two" / "model" / "model.safetensors")
    for k in b:
        assert torch.allclose(again[k], b[k], atol=1e-6), k

    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "model")
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.isfinite(loaded(ids).logits).all()
