"""Kill training mid-run, start it again: it resumes and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from train_fixtures import make_job
from train_runs import run_cli, run_cli_until, tensors, write_spec

from hanlin.storage import parse_uri
from hanlin.train.checkpoint import complete_steps
from hanlin.train.loop import train


def resume_spec(model: Path, data: Path, output: str) -> dict[str, Any]:
    # LoRA with dropout, warmup and a cosine schedule: resuming exactly needs the
    # adapter, optimizer, scheduler, RNG state and data position all restored.
    return {
        "method": "sft",
        "model": {"uri": f"file://{model}"},
        "data": [{"uri": f"file://{data}", "format": "messages"}],
        "adapter": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1},
        "hyperparameters": {
            "maxSteps": 10,
            "learningRate": 5e-3,
            "batchSize": 1,
            "seqLen": 64,
            "packing": False,
            "warmupSteps": 2,
            "seed": 5,
        },
        "checkpoint": {"everySteps": 3, "keep": 2},
        "output": {"uri": output},
    }


def check_kill_and_resume(spec_for, adapter_path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    # The uninterrupted run goes in this process (one interpreter start less).
    train(make_job(**spec_for("a")))
    straight = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert straight[-1]["event"] == "done"

    spec = write_spec(tmp_path / "b.yaml", spec_for("b"))
    seen = run_cli_until(spec, step=5)
    killed_at = max(line["step"] for line in seen if "loss" in line)
    done = complete_steps(parse_uri(spec_for("b")["output"]["uri"]))
    assert done and done[-1] == 3 * (killed_at // 3)  # the last checkpoint before the kill
    resumed = run_cli(spec)
    assert resumed[0] == {"event": "resumed", "step": done[-1], "totalSteps": 10}
    steps = [line["step"] for line in resumed if "loss" in line]
    assert steps == list(range(done[-1] + 1, 11))  # nothing before the checkpoint is redone or lost
    a, b = tensors(adapter_path("a")), tensors(adapter_path("b"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # Losses after the resume match the uninterrupted run step for step.
    tail = {line["step"]: line["loss"] for line in straight if "loss" in line}
    for line in resumed:
        if "loss" in line:
            assert line["loss"] == pytest.approx(tail[line["step"]], abs=1e-5)


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(
    tiny_model: Path, chat_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    check_kill_and_resume(
        lambda name: resume_spec(tiny_model, chat_data, f"file://{tmp_path}/{name}"),
        lambda name: tmp_path / name / "adapter" / "adapter_model.safetensors",
        tmp_path,
        capsys,
    )
