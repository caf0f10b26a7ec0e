"""Load generator: N concurrent streaming clients over a fixed-seed ShareGPT-like workload.

Every server gets the same requests (same prompts, same output lengths, greedy)
and every request is asked to run to its full output length, so the servers do
the same work. Each server's usage.completion_tokens is checked against the
requested length: a server that stopped early (or has no way to ignore EOS)
shows up as token mismatches in the report instead of silently doing less work.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx

WORDS = (
    "the river town market bread honey children summer bridge farmer wheat field church mill "
    "story question answer history science music garden winter light stone road city friend "
    "travel ocean mountain book letter morning evening window table kitchen teacher student"
).split()
OUTPUT_LENGTHS = (16, 32, 64, 64, 96, 128)


@dataclass(frozen=True)
class Request:
    """One workload item: a prompt and the exact number of tokens to generate."""

    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class Result:
    """What one streamed request measured (seconds; tokens as the server reported them)."""

    ttft: float
    tpot: float
    e2e: float
    tokens: int
    expected: int


def workload(n: int, seed: int) -> list[Request]:
    """n requests with ShareGPT-like spread: log-normal prompt words, 16-128 output tokens."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        words = min(400, max(8, int(rng.lognormvariate(3.8, 0.7))))
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        items.append(Request(prompt, rng.choice(OUTPUT_LENGTHS)))
    return items


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty list."""
    if not xs:
        raise ValueError("percentile of no values")
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(results: list[Result], elapsed: float) -> dict[str, float]:
    """req/s, output tok/s and TTFT/TPOT p50/p99 of one load level."""
    if not results or elapsed <= 0:
        raise ValueError("no results to summarise")
    ttft = [r.ttft for r in results]
    tpot = [r.tpot for r in results]
    return {
        "requests": float(len(results)),
        "elapsed_s": elapsed,
        "req_s": len(results) / elapsed,
        "tok_s": sum(r.tokens for r in results) / elapsed,
        "ttft_p50": statistics.median(ttft),
        "ttft_p99": percentile(ttft, 0.99),
        "tpot_p50": statistics.median(tpot),
        "tpot_p99": percentile(tpot, 0.99),
        "tokens": float(sum(r.tokens for r in results)),
        "expected_tokens": float(sum(r.expected for r in results)),
        "token_mismatches": float(sum(r.tokens != r.expected for r in results)),
    }


async def one(
    client: httpx.AsyncClient, model: str, item: Request, extra: dict[str, Any]
) -> Result:
    """Stream one completion; time the first text chunk and the end."""
    body: dict[str, Any] = {
        "model": model, "prompt": item.prompt, "max_tokens": item.max_tokens,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **extra,
    }  # fmt: skip
    start = time.perf_counter()
    first = None
    usage_tokens = None
    chunks = 0
    async with client.stream("POST", "/v1/completions", json=body) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            choices = data.get("choices") or []
            if choices and choices[0].get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter()
            if data.get("usage"):
                usage_tokens = int(data["usage"]["completion_tokens"])
    end = time.perf_counter()
    first = first or end
    # A server that sends no usage in streams (llama-cpp-python) streams one token per chunk.
    tokens = usage_tokens if usage_tokens is not None else chunks
    return Result(
        first - start, (end - first) / max(tokens - 1, 1), end - start, tokens, item.max_tokens
    )


async def load(
    url: str,
    model: str,
    clients: int,
    items: list[Request],
    extra: dict[str, Any],
    request_timeout: float,
) -> dict[str, float]:
    """Run items through `clients` concurrent clients, each taking the next item when done."""
    queue = list(reversed(items))
    results: list[Result] = []

    async def client_loop(c: httpx.AsyncClient) -> None:
        while queue:
            item = queue.pop()
            results.append(await one(c, model, item, extra))

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return summarise(results, elapsed)
