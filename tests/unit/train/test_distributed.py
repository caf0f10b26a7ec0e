"""Two processes (torchrun, gloo) give the same model as one with the same global batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from train_fixtures import TINY_LLAMA, make_job
from train_runs import assert_same_model, run_cli, write_spec

from hanlin.dev.processes import free_port
from hanlin.train.loop import train


def ddp_spec(data: Path, output: Path, batch: int, procs: int) -> dict[str, Any]:
    return {
        "method": "pretrain",
        "model": {"config": TINY_LLAMA},
        "data": [{"uri": f"file://{data}", "format": "text"}],
        "hyperparameters": {
            "maxSteps": 4,
            "learningRate": 1e-2,
            "batchSize": batch,
            "gradientAccumulation": 1,
            "seqLen": 48,
            "seed": 7,
        },
        "resources": {"procsPerNode": procs},
        "output": {"uri": f"file://{output}"},
    }


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path) -> None:
    data = tmp_path / "corpus.txt"
    # Documents of different lengths, so the two ranks see different token counts.
    data.write_text("\n\n".join(f"document {i} " + "abc xyz " * (i % 7 + 1) for i in range(60)))
    one = train(make_job(**ddp_spec(data, tmp_path / "one", batch=4, procs=1)))
    lines = run_cli(
        write_spec(tmp_path / "two.yaml", ddp_spec(data, tmp_path / "two", batch=2, procs=2)),
        env={"MASTER_PORT": str(free_port())},
    )
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) == 4  # only rank 0 reports
    assert losses[-1] == pytest.approx(one.final_loss, abs=1e-4)
    assert_same_model(tmp_path / "one", tmp_path / "two")
