"""Training with every input and output on a real S3 server: kill, resume, same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hanlin import storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHATS = [("What is the capital of France?", "Paris."), ("Name a primary color.", "Blue.")]


def _tiny_model(out: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    from hanlin.train.tokenizer import byte_tokenizer

    cfg = AutoConfig.for_model(
        "llama",
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=259,
        max_position_embeddings=256,
        initializer_range=0.3,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out


def _spec(bucket: str, output: str) -> dict[str, Any]:
    return {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "s3"},
        "spec": {
            "method": "sft",
            "model": {"uri": f"s3://{bucket}/base"},
            "data": [{"uri": f"s3://{bucket}/data/chat.jsonl", "format": "messages"}],
            "adapter": {"type": "lora", "r": 4, "alpha": 8, "dropout": 0.1},
            "hyperparameters": {
                "maxSteps": 8,
                "learningRate": 5e-3,
                "batchSize": 1,
                "seqLen": 64,
                "packing": False,
                "warmupSteps": 1,
                "seed": 9,
            },
            "checkpoint": {"everySteps": 2, "keep": 1},
            "output": {"uri": output},
        },
    }


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_kill_and_resume_through_s3(s3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = _tiny_model(tmp_path / "base")
    for f in base.iterdir():  # a user's upload: plain objects, no manifest
        s3.client.upload_file(str(f), s3.bucket, f"base/{f.name}")
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in CHATS
    ]
    s3.client.put_object(
        Bucket=s3.bucket,
        Key="data/chat.jsonl",
        Body="".join(json.dumps(r) + "\n" for r in rows).encode(),
    )
    cmd = [sys.executable, "-m", "hanlin.cli", "train", "--spec"]
    straight = tmp_path / "straight.yaml"
    straight.write_text(yaml.safe_dump(_spec(s3.bucket, f"file://{tmp_path}/straight")))
    done = subprocess.run(
        [*cmd, str(straight)], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]

    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(_spec(s3.bucket, f"s3://{s3.bucket}/runs/r1")))
    proc = subprocess.Popen(
        [*cmd, str(spec)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith('{"step": 5'):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    keys = storage.list_keys(f"s3://{s3.bucket}/runs/r1/checkpoints")
    assert "step-00000004/MANIFEST.json" in keys  # published before the kill
    assert not any(k.startswith("step-00000002/") for k in keys)  # keep: 1

    resumed = subprocess.run(
        [*cmd, str(spec)], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    lines = _lines(resumed.stdout)
    assert lines[0]["event"] == "resumed" and lines[0]["step"] in (4, 6)
    artifact = json.loads(storage.read_bytes(f"s3://{s3.bucket}/runs/r1/artifact.json"))
    assert artifact["uri"] == f"s3://{s3.bucket}/runs/r1/adapter"
    assert artifact["sha256"] == storage.read_manifest(artifact["uri"]).sha256
    got = storage.materialize(artifact["uri"], tmp_path / "cache")
    a = load_file(str(tmp_path / "straight" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(got / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(got))
    assert any("lora_" in n for n, _ in model.named_parameters())
