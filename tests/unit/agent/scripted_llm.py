"""Test helpers: a scripted OpenAI-compatible LLM server, free ports, waiting for health."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class ScriptedLLM:
    """Replies are strings (assistant content) or dicts with `content` and/or `tool_calls`."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self.lock = threading.Lock()

    def script(self, *replies: Any) -> None:
        with self.lock:
            self.replies = list(replies)
            self.requests = []

    def prompt(self, i: int) -> str:
        """All message contents of request `i`, joined (what the model 'saw')."""
        return "\n".join(str(m.get("content") or "") for m in self.requests[i]["messages"])

    def _next(self, body: dict[str, Any]) -> dict[str, Any] | None:
        with self.lock:
            self.requests.append(body)
            if not self.replies:
                return None
            reply = self.replies.pop(0)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(reply, str):
            message["content"] = reply
        else:
            message["content"] = reply.get("content")
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for i, c in enumerate(reply.get("tool_calls", []))
            ]
        return {
            "id": "cmpl-1",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }


@contextmanager
def serve_scripted() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length))
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            data = llm._next(body)
            payload = json.dumps(
                data if data else {"error": {"message": "script exhausted"}}
            ).encode()
            self.send_response(200 if data else 500)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    llm.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield llm
    finally:
        server.shutdown()
        server.server_close()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")
