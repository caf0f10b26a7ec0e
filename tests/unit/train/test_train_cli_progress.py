"""The `hanlin train` command's errors, progress lines, metrics and torchrun launch."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from train_runs import write_spec
from typer.testing import CliRunner

from hanlin.dev.processes import free_port
from hanlin.train.cli import app
from hanlin.train.distributed import torchrun_argv
from hanlin.train.progress import Reporter


def test_bad_row_fails_naming_file_line_and_field(tmp_path: Path) -> None:
    data = tmp_path / "chat.jsonl"
    data.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
        )
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": 5}]})
        + "\n"
    )
    spec = write_spec(
        tmp_path / "job.yaml",
        {
            "method": "pretrain",
            "model": {
                "config": {
                    "model_type": "llama",
                    "hidden_size": 32,
                    "intermediate_size": 64,
                    "num_hidden_layers": 1,
                    "num_attention_heads": 2,
                    "vocab_size": 259,
                }
            },
            "data": [{"uri": f"file://{data}", "format": "messages"}],
            "hyperparameters": {"maxSteps": 2, "batchSize": 1, "seqLen": 32},
            "output": {"uri": f"file://{tmp_path}/out"},
        },
    )
    result = CliRunner().invoke(app, ["--spec", str(spec)])
    assert result.exit_code == 1
    assert f"{data}:2: field 'messages[0].content': must be a string, got int" in result.output


def test_invalid_spec_names_the_field(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path / "job.yaml",
        {
            "method": "sft",
            "model": {"uri": "file:///m"},
            "data": [{"uri": "file:///d"}],
            "hyperparameters": {"batchSise": 2},
            "output": {"uri": "file:///o"},
        },
    )
    result = CliRunner().invoke(app, ["--spec", str(spec)])
    assert result.exit_code == 2
    assert "spec.hyperparameters.batchSise: unknown field" in result.output


def test_progress_lines_and_metrics(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = free_port()
    monkeypatch.setenv("HANLIN_METRICS_PORT", str(port))
    monkeypatch.setenv("HANLIN_PROGRESS_FILE", str(tmp_path / "progress.json"))
    reporter = Reporter(total_steps=10, start_step=0, enabled=True)
    try:
        reporter.report(step=1, loss=2.5, lr=1e-3, tokens=400, seconds=2.0, epoch=0.1)
        reporter.report(step=2, loss=2.0, lr=1e-3, tokens=600, seconds=2.0, epoch=0.2)
        body = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        reporter.close()
    line = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"step", "totalSteps", "loss", "lr", "tokensPerSecond", "etaSeconds"} <= line.keys()
    assert (line["step"], line["totalSteps"], line["loss"], line["tokensPerSecond"]) == (
        2,
        10,
        2.0,
        300.0,
    )
    assert line["etaSeconds"] is not None and line["tokens"] == 1000
    # The status channel (a file here, a ConfigMap key in a pod) holds the same numbers.
    published = json.loads((tmp_path / "progress.json").read_text())
    progress = next(iter(published.values()))["progress"]
    assert (progress["step"], progress["totalSteps"], progress["loss"]) == (2, 10, 2.0)
    assert progress["tokensPerSecond"] == 300.0 and progress["etaSeconds"] == line["etaSeconds"]
    metrics = {
        ln.split(" ")[0]: float(ln.split(" ")[1])
        for ln in body.splitlines()
        if ln.startswith("hanlin_")
    }
    assert metrics["hanlin_train_step"] == 2 and metrics["hanlin_train_total_steps"] == 10
    assert metrics["hanlin_train_loss"] == 2.0 and metrics["hanlin_train_tokens_total"] == 1000
    assert metrics["hanlin_train_tokens_per_second"] == 300.0


def test_multi_node_layout_comes_from_the_operator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from hanlin.train.distributed import launch_layout

    for key, value in {
        "NNODES": "3",
        "NODE_RANK": "2",
        "NPROC_PER_NODE": "4",
        "MASTER_ADDR": "job-0.job",
        "MASTER_PORT": "29400",
    }.items():
        monkeypatch.setenv(key, value)
    nodes, procs = launch_layout(nodes=1, procs_per_node=1)
    argv = torchrun_argv("/spec.yaml", nodes, procs)
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    assert {
        "--nnodes=3",
        "--nproc-per-node=4",
        "--node-rank=2",
        "--master-addr=job-0.job",
        "--master-port=29400",
    } <= set(argv)
    assert argv[-4:] == ["hanlin.cli", "train", "--spec", "/spec.yaml"]
