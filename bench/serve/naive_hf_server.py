"""Baseline: a naive OpenAI-style server over HF transformers, one request at a time.

What a user gets by wrapping `model.generate` in a web server: requests are
served strictly one after another (a lock), tokens streamed as generate makes
them. Only what the load generator uses: POST /v1/completions with stream.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


def build(model_dir: str) -> FastAPI:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(request: Request) -> StreamingResponse:
        body: dict[str, Any] = await request.json()
        ids = tok(body["prompt"], return_tensors="pt").input_ids
        n = int(body.get("max_tokens", 16))
        streamer = TextIteratorStreamer(tok, skip_prompt=True)

        def run() -> None:
            with lock, torch.inference_mode():
                model.generate(
                    ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, streamer=streamer
                )

        threading.Thread(target=run, daemon=True).start()

        async def events() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            done = object()
            it = iter(streamer)
            while True:
                piece = await loop.run_in_executor(None, next, it, done)
                if piece is done:
                    break
                yield "data: " + json.dumps({"choices": [{"index": 0, "text": piece}]}) + "\n\n"
            usage = {"completion_tokens": n, "prompt_tokens": int(ids.shape[1])}
            yield "data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    if len(sys.argv) > 3:
        torch.set_num_threads(int(sys.argv[3]))
    uvicorn.run(build(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
