"""Serving benchmark: Hanlin vs a naive one-at-a-time HF server, same model, same workload.

    python bench/serve/run.py [--clients 1,4,16] [--requests-per-client 2] [--seed 0]

Each server runs alone (started, loaded, measured, stopped) so they never share
the CPU. The workload is ShareGPT-like: log-normal prompt lengths and varied
output lengths from a fixed seed, every request forced to its full output
length (ignore_eos) so both servers produce the same number of tokens. It
prints req/s, output tok/s, TTFT and TPOT p50/p99 per server and concurrency,
and Hanlin's ratio over the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
WORDS = (
    "the river town market bread honey children summer bridge farmer wheat field church mill "
    "story question answer history science music garden winter light stone road city friend "
    "travel ocean mountain book letter morning evening window table kitchen teacher student"
).split()


@dataclass
class Result:
    ttft: float
    tpot: float
    e2e: float
    tokens: int


def workload(n: int, seed: int) -> list[tuple[str, int]]:
    """(prompt, output length) pairs with ShareGPT-like length spread."""
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        words = min(400, max(8, int(rng.lognormvariate(3.8, 0.7))))
        prompt = " ".join(rng.choice(WORDS) for _ in range(words))
        items.append((prompt, rng.choice([16, 32, 64, 64, 96, 128])))
    return items


async def one(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> Result:
    body = {
        "model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    start = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("choices") and data["choices"][0].get("text") and first is None:
                first = time.perf_counter()
            if data.get("usage"):
                tokens = int(data["usage"]["completion_tokens"])
    end = time.perf_counter()
    first = first or end
    return Result(first - start, (end - first) / max(tokens - 1, 1), end - start, tokens)


async def load(
    url: str, model: str, clients: int, items: list[tuple[str, int]]
) -> dict[str, float]:
    queue = list(items)
    results: list[Result] = []

    async def client_loop(c: httpx.AsyncClient) -> None:
        while queue:
            prompt, n = queue.pop()
            results.append(await one(c, model, prompt, n))

    async with httpx.AsyncClient(base_url=url, timeout=3600) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for _ in range(clients)))
        elapsed = time.perf_counter() - start

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    ttft = [r.ttft for r in results]
    tpot = [r.tpot for r in results]
    return {
        "req_s": len(results) / elapsed,
        "tok_s": sum(r.tokens for r in results) / elapsed,
        "ttft_p50": statistics.median(ttft),
        "ttft_p99": pct(ttft, 0.99),
        "tpot_p50": statistics.median(tpot),
        "tpot_p99": pct(tpot, 0.99),
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server did not start: {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model dir (default: the dev model)")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quantization", default=None, help="also run Hanlin with int8/int4")
    parser.add_argument("--log-dir", default="/tmp")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for every server (same for all)"
    )
    args = parser.parse_args()
    if args.model is None:
        from hanlin.dev.model import ensure_model

        args.model = str(ensure_model())
    levels = [int(c) for c in args.clients.split(",")]
    port = _port()
    url = f"http://127.0.0.1:{port}"
    servers = {
        "hanlin": [sys.executable, "-m", "hanlin.cli", "serve", "--model", args.model,
                   "--port", str(port), "--served-model-name", "m", "--max-seqs", "64"],
        "naive-hf": [sys.executable, str(HERE / "naive_hf_server.py"), args.model, str(port)],
    }  # fmt: skip
    if args.threads:
        servers["hanlin"] += ["--threads", str(args.threads)]
        servers["naive-hf"].append(str(args.threads))
    if args.quantization:
        servers[f"hanlin-{args.quantization}"] = servers["hanlin"] + [
            "--quantization", args.quantization,
        ]  # fmt: skip
    table: dict[tuple[str, int], dict[str, float]] = {}
    for name, cmd in servers.items():
        proc = start(cmd, url, Path(args.log_dir) / f"bench-serve-{name}.log")
        try:
            asyncio.run(load(url, "m", 1, workload(1, args.seed + 99)))  # warm-up
            for clients in levels:
                items = workload(clients * args.requests_per_client, args.seed)
                table[(name, clients)] = asyncio.run(load(url, "m", clients, items))
                print(name, clients, json.dumps(table[(name, clients)]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print()
    print(f"{'server':<14}{'clients':>8}{'req/s':>8}{'tok/s':>8}{'TTFT p50':>10}{'TTFT p99':>10}"
          f"{'TPOT p50':>10}{'TPOT p99':>10}{'tok/s vs naive':>16}")  # fmt: skip
    for (name, clients), m in table.items():
        base = table.get(("naive-hf", clients))
        ratio = m["tok_s"] / base["tok_s"] if base else float("nan")
        print(
            f"{name:<14}{clients:>8}{m['req_s']:>8.2f}{m['tok_s']:>8.1f}{m['ttft_p50']:>10.3f}"
            f"{m['ttft_p99']:>10.3f}{m['tpot_p50']:>10.3f}{m['tpot_p99']:>10.3f}{ratio:>15.2f}x"
        )
    print(f"\nmachine: {os.cpu_count()} CPUs; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
