"""The endpoint backend against a real `hanlin serve` that refuses work (429): it retries."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hanlin.eval.backend import GenerateRequest
from hanlin.eval.openai_backend import EndpointError, OpenAIBackend
from hanlin.eval.tasks import build_task

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rejected(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hanlin_requests_rejected_total")
    )


def test_concurrent_requests_survive_a_full_queue(model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    # One running sequence and one waiting: concurrent requests beyond that get 429.
    cmd = [
        sys.executable, "-m", "hanlin.cli", "serve", "--model", str(model_dir),
        "--port", str(port), "--served-model-name", "smol", "--max-model-len", "256",
        "--max-seqs", "1", "--max-queue", "1", "--kv-cache-mib", "32",
    ]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        task = build_task("arithmetic", limit=6)
        reqs = [GenerateRequest(task.prompt(r), task.stop, 4) for r in task.rows]
        serial = OpenAIBackend(url, "smol", concurrency=1)
        assert _rejected(url) == 0
        expected = serial.generate(reqs, chat=False)
        crowd = OpenAIBackend(url, "smol", concurrency=6, retries=10, backoff_s=0.1)
        assert crowd.generate(reqs, chat=False) == expected
        assert _rejected(url) > 0  # the server did refuse, and the retries absorbed it
        unknown = OpenAIBackend(url, "no-such-model", retries=1)
        with pytest.raises(EndpointError, match="HTTP 404"):
            unknown.generate(reqs[:1], chat=False)
        for backend in (serial, crowd, unknown):
            backend.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
