"""`hanlin serve` runs its engine in a child process: a dead engine is reported, never hidden.

Kills the real engine process of a real server mid-stream and checks what a
client sees (an error event that ends the stream, then 503s and a failing
/health), and that the engine never outlives its server.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from hanlin.dev.fixtures import hanlin_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARGS = ["--served-model-name", "m", "--max-model-len", "256", "--kv-cache-mib", "32"]


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


def _server_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hanlin.cli" in argv and port.encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no server process for {url}")


def _engine_pid(server_pid: int) -> int:
    engines = []
    for pid in _children(server_pid):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in argv and b"resource_tracker" not in argv:
            engines.append(pid)
    assert len(engines) == 1, f"expected one engine process under {server_pid}, got {engines}"
    return engines[0]


def _gone(pid: int, timeout: float) -> bool:
    """Whether the process exits within `timeout` (a zombie nobody reaped counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.2)
    return False


def test_killed_engine_fails_streams_and_health(model_dir: Path, tmp_path: Path) -> None:
    with hanlin_server(["serve", "--model", str(model_dir), *ARGS], tmp_path / "s.log") as url:
        engine = _engine_pid(_server_pid(url))
        body = {"model": "m", "prompt": "Once upon a time", "max_tokens": 200,
                "ignore_eos": True, "stream": True}  # fmt: skip
        events: list[str] = []
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line.removeprefix("data: "))
                if len(events) == 3:
                    os.kill(engine, signal.SIGKILL)
        # The stream ended (it did not hang) with an error event, then [DONE].
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["type"] == "server_error" and "engine" in error["message"]
        assert len(events) < 200

        health = httpx.get(f"{url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "dead"
        resp = httpx.post(f"{url}/v1/completions", json={**body, "stream": False}, timeout=10)
        assert resp.status_code == 503
        assert resp.json()["error"]["type"] == "server_error"


def test_server_process_holds_no_torch(model_dir: Path, tmp_path: Path) -> None:
    """Only the engine process loads torch; the server's tokenizer is the engine's class."""
    with hanlin_server(["serve", "--model", str(model_dir), *ARGS], tmp_path / "s.log") as url:
        server = _server_pid(url)
        engine = _engine_pid(server)
        assert "libtorch" not in Path(f"/proc/{server}/maps").read_text()
        assert "libtorch" in Path(f"/proc/{engine}/maps").read_text()
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                  "max_tokens": 4, "temperature": 0},
        )  # fmt: skip
        assert chat.status_code == 200, chat.text


def test_tokenizer_of_another_class_falls_back_to_auto(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from hanlin.serve.async_engine import load_tokenizer

    auto = AutoTokenizer.from_pretrained(model_dir)
    engine_class = f"{type(auto).__module__}.{type(auto).__qualname__}"
    text = "Hello, world: tokenizers agree?"
    for name in (engine_class, "somewhere.else.NotATokenizer"):
        tok = load_tokenizer(model_dir, name)
        assert type(tok) is type(auto)
        assert tok(text).input_ids == auto(text).input_ids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_engine_never_outlives_its_server(
    model_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    with hanlin_server(["serve", "--model", str(model_dir), *ARGS], tmp_path / "s.log") as url:
        server = _server_pid(url)
        engine = _engine_pid(server)
        ok = httpx.post(
            f"{url}/v1/completions", json={"model": "m", "prompt": "Hi", "max_tokens": 4}
        )
        assert ok.status_code == 200
        os.kill(server, sig)
        assert _gone(server, 30)
        # SIGTERM: the server stops its engine; SIGKILL: the engine sees its pipe close.
        assert _gone(engine, 30), f"engine {engine} outlived its server ({sig.name})"


def test_engine_that_cannot_load_is_a_clear_exit(model_dir: Path, tmp_path: Path) -> None:
    """A model the engine refuses (here: rope scaling) ends `hanlin serve` with the reason."""
    import subprocess
    import sys

    bad = tmp_path / "model"
    bad.mkdir()
    for f in model_dir.iterdir():
        if f.name != "config.json":
            (bad / f.name).symlink_to(f)
    config = json.loads((model_dir / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "linear", "factor": 2.0}
    (bad / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "serve", "--model", str(bad), "--port", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hanlin serve: the engine failed to start: ValueError:"), last
    assert "rope_scaling" in last
