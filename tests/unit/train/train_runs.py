"""Running `hanlin train` as a real process, and reading its JSON-lines output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "hanlin.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t"},
        "spec": spec,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _cmd(spec: Path) -> list[str]:
    return [sys.executable, "-m", "hanlin.cli", "train", "--spec", str(spec)]


def run_cli(
    spec: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> list[dict[str, Any]]:
    """Run to completion; the parsed JSON lines of stdout."""
    proc = subprocess.run(
        _cmd(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def run_cli_until(spec: Path, step: int, timeout: float = 300) -> list[dict[str, Any]]:
    """Start training and SIGKILL it as soon as it reports `step`."""
    proc = subprocess.Popen(
        _cmd(spec), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                lines.append(json.loads(line))
                if lines[-1].get("step", 0) >= step and "loss" in lines[-1]:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.wait(timeout=timeout)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "training ended before it could be killed"
    return lines


def tensors(path: Path) -> dict[str, Any]:
    return load_file(str(path))


def assert_same_model(one: Path, two: Path, atol: float = 1e-5) -> dict[str, Any]:
    """The `model/` outputs of two training runs hold the same tensors; returns the second's."""
    import torch

    a = tensors(one / "model" / "model.safetensors")
    b = tensors(two / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol), k
    return b
