"""Sharded and interrupted `hanlin eval` runs give exactly the one-worker report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

# Generous per-test limit: each test starts several model-loading processes.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


def _spec(tmp: Path, model_dir: Path) -> Path:
    path = tmp / "evalrun.yaml"
    path.write_text(f"""\
apiVersion: hanlin.dev/v1alpha1
kind: EvalRun
metadata: {{name: shards}}
spec:
  model: {{uri: "file://{model_dir}"}}
  benchmarks:
    - {{name: mmlu, limit: 6}}
    - {{name: arithmetic, limit: 2}}
  workers: 2
  batchSize: 2
  maxNewTokens: 6
  thresholds: {{"mmlu/accuracy": ">=0.0"}}
""")
    return path


def _eval(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "hanlin.cli", "eval", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _lines(out: Path) -> list[dict[str, Any]]:
    found = []
    for f in sorted((out / "samples").glob("*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the line a killed worker was writing
    return found


def _results(out: Path) -> list[dict[str, Any]]:
    return list(json.loads((out / "results.json").read_text())["results"])


@pytest.fixture(scope="module")
def one_worker(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("eval-shards")
    spec, out = _spec(tmp, model_dir), tmp / "one"
    # The status channel as the local runner sets it (a ConfigMap key in a pod).
    channel = tmp / "progress.json"
    env = dict(os.environ, HANLIN_PROGRESS_FILE=str(channel), HANLIN_PROGRESS_KEY="shard-0")
    proc = _eval("--spec", str(spec), "--output", str(out), "--shard", "0/1", "--no-bar", env=env)
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["event"] == "summary" and summary["passed"] is True
    published = json.loads(channel.read_text())["shard-0"]
    assert published["progress"]["done"] == published["progress"]["total"] == 8
    assert [r["value"] for r in published["results"]] == [r["value"] for r in _results(out)]
    return spec, out


def test_two_shards_then_merge_equal_one_worker(one_worker: tuple[Path, Path]) -> None:
    spec, one = one_worker
    out = one.parent / "two"
    _eval("--spec", str(spec), "--output", str(out), "--shard", "0/2", "--no-bar")
    assert not (out / "results.json").exists()  # shard 1 has not run yet
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "hanlin.cli",
            "eval",
            "merge",
            "--spec",
            str(spec),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2 and "samples have no result yet" in failed.stderr
    _eval("--spec", str(spec), "--output", str(out), "--shard", "1/2", "--no-bar")
    first = (out / "results.json").read_bytes()  # written by the last shard to finish
    _eval("merge", "--spec", str(spec), "--output", str(out))
    assert (out / "results.json").read_bytes() == first
    assert _results(out) == _results(one)
    shards = {rec["shard"] for rec in _lines(out)}
    assert shards == {"0/2", "1/2"}
    assert (out / "summary.md").read_text() == (one / "summary.md").read_text()


def test_killed_worker_resumes_without_rescoring(one_worker: tuple[Path, Path]) -> None:
    spec, one = one_worker
    out = one.parent / "killed"
    cmd = [sys.executable, "-m", "hanlin.cli", "eval", "--spec", str(spec), "--output", str(out),
           "--shard", "0/1", "--no-bar"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    try:
        while not (out / "samples").exists() or len(_lines(out)) < 2:
            assert proc.poll() is None, "the worker finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = _lines(out)
    assert 2 <= len(before) < 8
    resumed = _eval("--spec", str(spec), "--output", str(out), "--shard", "0/1", "--no-bar")
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    # The restart starts counting where the killed worker stopped.
    assert len(before) < progress[0]["done"] <= len(before) + 2 and progress[-1]["done"] == 8
    after = _lines(out)
    assert after[: len(before)] == before  # finished samples were not touched
    assert len(after) == len({rec["key"] for rec in after}) == 8  # and none was scored twice
    assert _results(out) == _results(one)
