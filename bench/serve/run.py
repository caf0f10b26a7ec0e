"""Serving benchmark: Hanlin vs naive HF, llama.cpp and vLLM-CPU, same model, same workload.

    python bench/serve/run.py --servers hanlin,hanlin-int4,naive-hf,llama-cpp,vllm \\
        --clients 1,4,16 --threads 2 --out serve-bench.json

Each server runs alone (started, warmed up, measured, stopped) so none shares
the CPU with another. Peers live in their own virtual environments, made on
first use (peers.py; `--setup-only` makes them ahead of a timed run). The
workload is ShareGPT-like from a fixed seed (loadgen.py), every request forced
to its full output length so every server does the same work; token-count
mismatches are reported. It prints req/s, output tok/s, TTFT and TPOT p50/p99
per server and concurrency, and the issue's goal ratios (report.py), and
writes everything as JSON. A peer that cannot be installed, start, or finish
within its time limits is reported as "did not run: <reason>".
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402

ALL_SERVERS = (
    "hanlin", "hanlin-bf16", "hanlin-int4", "naive-hf", "llama-cpp", "vllm", "vllm-bf16",
)  # fmt: skip
MAX_MODEL_LEN = 2048  # longest workload prompt (400 words) plus 128 output tokens fits


@dataclass
class Server:
    """How to start one server and what its requests need to run to full length."""

    cmd: list[str]
    ready_path: str = "/v1/models"
    env: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=lambda: {"ignore_eos": True})


@functools.cache
def _hanlin_has_dtype() -> bool:
    """Whether this checkout's `hanlin serve` takes --dtype (added alongside bf16 kernels)."""
    out = subprocess.run(
        [sys.executable, "-m", "hanlin.cli", "serve", "--help"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    return "--dtype" in out.stdout


def build(name: str, args: argparse.Namespace, port: int, logs: Path) -> Server:
    """The Server for `name`, installing its peer venv if needed; PeerUnavailable says why not."""
    t = str(args.threads)
    hanlin = [sys.executable, "-m", "hanlin.cli", "serve", "--model", args.model,
              "--port", str(port), "--served-model-name", "m", "--max-seqs", "64",
              "--max-model-len", str(MAX_MODEL_LEN), "--threads", t]  # fmt: skip
    if name == "hanlin":
        return Server(hanlin)
    if name in ("hanlin-bf16", "hanlin-int4"):
        has_dtype = _hanlin_has_dtype()
        if name == "hanlin-bf16":
            if not has_dtype:
                raise peers.PeerUnavailable("`hanlin serve` has no --dtype option in this checkout")
            return Server([*hanlin, "--dtype", "bfloat16"])
        # int4 weights with bf16 compute where the flag exists: the fast int4 path.
        return Server([*hanlin, "--quantization", "int4", *(["--dtype", "bfloat16"] * has_dtype)])
    if name == "naive-hf":
        cmd = [sys.executable, str(HERE / "naive_hf_server.py"), args.model, str(port), t]
        return Server(cmd, ready_path="/health")
    if name == "llama-cpp":
        python = peers.ensure_llama_cpp(logs / "bench-serve-llama-cpp-install.log")
        cmd = peers.llama_cpp_command(python, port, args.threads, MAX_MODEL_LEN)
        return Server(cmd, extra=peers.LLAMA_CPP_EXTRA)
    if name in ("vllm", "vllm-bf16"):
        python = peers.ensure_vllm(logs / "bench-serve-vllm-install.log")
        dtype = "bfloat16" if name == "vllm-bf16" else "float32"
        cmd = peers.vllm_command(python, args.model, port, MAX_MODEL_LEN, dtype)
        return Server(cmd, env=peers.vllm_env(args.threads))
    raise ValueError(f"--servers: unknown server {name!r} (known: {', '.join(ALL_SERVERS)})")


def start(server: Server, url: str, log: Path, timeout: float) -> subprocess.Popen[bytes]:
    """Start the server in its own process group and wait until it answers."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            server.cmd, stdout=out, stderr=subprocess.STDOUT, env=server.env,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-600:]
            raise peers.PeerUnavailable(f"server exited ({proc.returncode}): {tail}")
        try:
            if httpx.get(url + server.ready_path, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise peers.PeerUnavailable(f"server did not answer within {timeout:.0f} s (log: {log})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and everything it spawned (vLLM runs its engine in child processes)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def measure(name: str, server: Server, args: argparse.Namespace, url: str) -> dict[int, Any]:
    """Warm up, then run every concurrency level; a level over its time limit ends the server."""
    rows: dict[int, Any] = {}
    warm = loadgen.workload(1, args.seed + 99)
    asyncio.run(loadgen.load(url, "m", 1, warm, server.extra, args.level_timeout))
    for clients in args.levels:
        n = max(clients * args.requests_per_client, args.min_requests)
        items = loadgen.workload(n, args.seed)
        run = loadgen.load(url, "m", clients, items, server.extra, args.level_timeout)
        try:
            rows[clients] = asyncio.run(asyncio.wait_for(run, args.level_timeout))
        except TimeoutError:
            rows[clients] = f"did not finish {n} requests within {args.level_timeout:.0f} s"
            break
        except (httpx.HTTPError, RuntimeError, ValueError) as e:
            rows[clients] = f"requests failed: {e}"
            break
        print(name, clients, json.dumps(rows[clients]), flush=True)
    return rows


def _clean(x: Any) -> Any:
    """JSON without NaN (unmeasured ratios become null)."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma-separated")
    p.add_argument("--model", default=None, help="HF model dir (default: the dev model)")
    p.add_argument("--clients", default="1,4,16", help="concurrency levels")
    p.add_argument("--requests-per-client", type=int, default=1)
    p.add_argument("--min-requests", type=int, default=4, help="per level, at least")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every server")
    p.add_argument("--startup-timeout", type=float, default=420, help="seconds per server")
    p.add_argument("--level-timeout", type=float, default=240, help="seconds per level")
    p.add_argument("--out", type=Path, default=Path("serve-bench.json"), help="JSON results")
    p.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()))
    p.add_argument("--setup-only", action="store_true", help="make the peer venvs and exit")
    args = p.parse_args(argv)
    args.names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.names if s not in ALL_SERVERS]
    if unknown:
        p.error(f"--servers: unknown {unknown} (known: {', '.join(ALL_SERVERS)})")
    try:
        args.levels = [int(c) for c in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients: expected comma-separated integers, got {args.clients!r}")
    if args.threads < 1 or any(c < 1 for c in args.levels):
        p.error("--threads and --clients must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print and write its results."""
    args = parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    if args.setup_only:
        for name, ensure in (("llama-cpp", peers.ensure_llama_cpp), ("vllm", peers.ensure_vllm)):
            if name in args.names:
                t0 = time.monotonic()
                try:
                    where = ensure(args.log_dir / f"bench-serve-{name}-install.log")
                    print(f"{name}: ready at {where} ({time.monotonic() - t0:.0f} s)")
                except peers.PeerUnavailable as e:
                    print(f"{name}: did not install: {e}")
        return
    if args.model is None:
        from hanlin.dev.model import ensure_model

        args.model = str(ensure_model())
    if any(name.startswith("hanlin") for name in args.names):
        # Build the fused CPU kernels now: a first start would otherwise serve the
        # measured levels with the torch ops while they compile in the background.
        from hanlin.serve import kernels

        if kernels.mode() != "off":
            kernels.load()
    from hanlin.dev.processes import free_port

    table: report.Table = {}
    skipped: dict[str, str] = {}
    startup: dict[str, float] = {}
    begun = time.monotonic()
    for name in args.names:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            server = build(name, args, port, args.log_dir)
            t0 = time.monotonic()
            proc = start(
                server, url, args.log_dir / f"bench-serve-{name}.log", args.startup_timeout
            )
            startup[name] = time.monotonic() - t0
        except (peers.PeerUnavailable, OSError, subprocess.SubprocessError) as e:
            skipped[name] = f"did not run: {str(e).strip()[:400]}"
            print(name, skipped[name], flush=True)
            continue
        try:
            rows = measure(name, server, args, url)
        except (httpx.HTTPError, RuntimeError, ValueError, TimeoutError) as e:
            rows = {0: f"warm-up failed: {e}"}
        finally:
            stop(proc)
        for clients, row in rows.items():
            if isinstance(row, str):
                skipped[f"{name}@{clients}"] = row
                print(name, clients, row, flush=True)
            else:
                table[(name, clients)] = row
    # The issue states the goals at 16 clients and, for int4, at one client.
    high, low = max(args.levels), (1 if 1 in args.levels else None)
    goal_list = report.goals(table, high=high, low=low, requested=set(args.names))
    print()
    print(report.render(table, skipped, goal_list))
    load = os.getloadavg()[0]
    print(f"\nmachine: {os.cpu_count()} CPUs, {args.threads} threads per server; "
          f"load average at end {load:.1f}; total {time.monotonic() - begun:.0f} s")  # fmt: skip
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "log_dir", "names")},
        "machine": {"cpus": os.cpu_count(), "load_avg_end": load},
        "startup_s": startup,
        "rows": [{"server": s, "clients": c, **m} for (s, c), m in table.items()],
        "did_not_run": skipped,
        "goals": [{**vars(g), "met": g.met} for g in goal_list],
    }
    args.out.write_text(json.dumps(_clean(result), indent=2, default=str) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
