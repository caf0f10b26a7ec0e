"""The endpoint backend against a real `hanlin serve` that refuses work (429): it retries."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hanlin.dev.fixtures import hanlin_server
from hanlin.eval.backend import GenerateRequest
from hanlin.eval.openai_backend import EndpointError, OpenAIBackend
from hanlin.eval.tasks import build_task

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]


def _rejected(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hanlin_requests_rejected_total")
    )


def test_concurrent_requests_survive_a_full_queue(model_dir: Path, tmp_path: Path) -> None:
    # One running sequence and one waiting: concurrent requests beyond that get 429.
    args = [
        "serve", "--model", str(model_dir), "--served-model-name", "smol",
        "--max-model-len", "256", "--max-seqs", "1", "--max-queue", "1", "--kv-cache-mib", "32",
    ]  # fmt: skip
    with hanlin_server(args, tmp_path / "server.log") as url:
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
