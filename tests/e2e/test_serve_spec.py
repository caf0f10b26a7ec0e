"""`hanlin serve --spec FILE`: a ModelDeployment resource (int4 weights) served for real."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spec_file_sets_model_name_limits_and_quantization(model_dir: Path, tmp_path: Path) -> None:
    spec = tmp_path / "md.yaml"
    spec.write_text(
        f"""apiVersion: hanlin.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: smol-int4
spec:
  model:
    uri: file://{model_dir}
  engine:
    quantization: int4
    maxModelLen: 96
    maxBatchTokens: 128
    maxSeqs: 4
  api:
    rest: true
    grpc: false
"""
    )
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hanlin.cli", "serve", "--spec", str(spec), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
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
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["smol-int4"]
        res = client.completions.create(
            model="smol-int4", prompt="1, 2, 3, 4,", max_tokens=6, temperature=0
        )
        # SmolLM2 ships on a 4-bit grid, so int4 serving still counts on.
        assert res.choices[0].text.startswith(" 5, 6")
        with pytest.raises(openai.BadRequestError, match="maximum context length is 96"):
            client.completions.create(model="smol-int4", prompt="word " * 100, max_tokens=1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
