"""The progress reporter: throttling, payload shape, channels chosen from the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hanlin.telemetry import (
    ConfigMapChannel,
    FileChannel,
    NullChannel,
    ProgressReporter,
    channel_from_env,
    progress_reporter,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_update_is_throttled_and_flush_writes_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "progress.json"
    clock = Clock()
    reporter = ProgressReporter(FileChannel(path), key="rank-0", interval=5.0, clock=clock)
    reporter.update(step=1, total_steps=10, loss=2.5)
    assert json.loads(path.read_text())["rank-0"]["progress"] == {
        "step": 1,
        "totalSteps": 10,
        "loss": 2.5,
    }
    clock.now = 1.0
    reporter.update(step=2, loss=2.0, tokens_per_second=None)
    assert json.loads(path.read_text())["rank-0"]["progress"]["step"] == 1
    reporter.flush()
    written = json.loads(path.read_text())["rank-0"]["progress"]
    assert written["step"] == 2 and written["totalSteps"] == 10 and "tokensPerSecond" not in written
    clock.now = 7.0
    reporter.update(step=3, eta_seconds=4)
    assert json.loads(path.read_text())["rank-0"]["progress"]["etaSeconds"] == 4


def test_keys_of_several_workers_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    for shard in range(3):
        ProgressReporter(FileChannel(path), key=f"shard-{shard}").update(done=shard, total=5)
    data = json.loads(path.read_text())
    assert sorted(data) == ["shard-0", "shard-1", "shard-2"]
    assert data["shard-2"]["progress"] == {"done": 2, "total": 5}


def test_results_and_artifact_write_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    reporter = ProgressReporter(FileChannel(path), key="merge", interval=3600)
    reporter.update(done=1)
    reporter.results(
        [{"benchmark": "mmlu", "metric": "accuracy", "value": 0.5, "samples": 4}],
        report_uri="file:///r",
    )
    reporter.artifact(uri="file:///a", kind="adapter", merged_uri="file:///a/merged")
    doc = json.loads(path.read_text())["merge"]
    assert doc["results"][0]["value"] == 0.5 and doc["reportUri"] == "file:///r"
    assert doc["artifact"] == {
        "uri": "file:///a",
        "kind": "adapter",
        "mergedUri": "file:///a/merged",
    }


def test_a_failing_channel_never_raises() -> None:
    class Broken:
        calls = 0

        def publish(self, key: str, payload: Any) -> None:
            Broken.calls += 1
            raise ConnectionError("api server gone")

    reporter = ProgressReporter(Broken(), interval=0)
    reporter.update(step=1)
    reporter.update(step=2)
    reporter.flush()
    assert Broken.calls == 2


def test_channel_from_env() -> None:
    assert isinstance(channel_from_env({}), NullChannel)
    assert not progress_reporter(env={}).enabled
    file_channel = channel_from_env({"HANLIN_PROGRESS_FILE": "/tmp/x.json"})
    assert isinstance(file_channel, FileChannel)
    cm = channel_from_env(
        {"HANLIN_PROGRESS_CONFIGMAP": "job-progress", "HANLIN_PROGRESS_NAMESPACE": "ns"}
    )
    assert isinstance(cm, ConfigMapChannel) and (cm.namespace, cm.name) == ("ns", "job-progress")
    reporter = progress_reporter(
        env={"HANLIN_PROGRESS_FILE": "/tmp/x.json", "HANLIN_PROGRESS_KEY": "shard-3"}
    )
    assert reporter.key == "shard-3" and reporter.enabled
