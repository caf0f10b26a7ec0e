"""Batch-1 decode speed and memory bandwidth as a fraction of measured STREAM bandwidth.

    python bench/serve/bandwidth.py [--configs float32,bfloat16,bfloat16:int8,bfloat16:int4]
                                    [--threads N] [--tokens 64]

Each config is ``DTYPE[:QUANTIZATION]``; all run in one process, after one
STREAM measurement, so their ratios share a denominator. Decoding one token
must read every weight once (plus the KV cache written so far), so bytes read
per step divided by the step time is the bandwidth decode achieves. The
denominator is STREAM-like: the best of Copy (``a = b``, 2 x 8 bytes per
element counted, as STREAM counts) and Triad (``a = b + s * c``, 3 x 8 bytes),
float64 arrays each 4x the last-level cache, best of 10 repetitions.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

DEFAULT_CONFIGS = "float32,bfloat16,bfloat16:int8,bfloat16:int4"


def llc_bytes() -> int:
    """The largest CPU cache (last level) from sysfs, or 32 MiB when unknown."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=32 * 2**20)


def stream_bandwidth(reps: int = 10) -> tuple[float, float]:
    """(copy, triad) bytes/s, STREAM-style counting, best of `reps`, arrays 4x the LLC."""
    n = 4 * llc_bytes() // 8
    a = torch.zeros(n, dtype=torch.float64)
    b = torch.ones(n, dtype=torch.float64)
    c = torch.full((n,), 2.0, dtype=torch.float64)
    best_copy = best_triad = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a.copy_(b)
        best_copy = min(best_copy, time.perf_counter() - t)
        t = time.perf_counter()
        torch.add(b, c, alpha=3.0, out=a)
        best_triad = min(best_triad, time.perf_counter() - t)
    return 2 * n * 8 / best_copy, 3 * n * 8 / best_triad


def weight_bytes_per_step(model: torch.nn.Module) -> int:
    """Bytes of weights one decode step reads: each layer's weight layout, the head once.

    The embedding table is read one row per token, so it is not counted unless it
    is also the (unquantized, tied) output head.
    """
    from hanlin.quant import QuantLinear
    from hanlin.serve.model import LlamaModel
    from hanlin.serve.packed import PackedLinear

    assert isinstance(model, LlamaModel)
    total = 0
    for module in model.modules():
        if isinstance(module, (QuantLinear, PackedLinear)):
            total += module.read_bytes()
            continue
        if module is model.embed:
            continue
        for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)):
            if t is None or t is model.rope_cos or t is model.rope_sin:
                continue
            total += t.numel() * t.element_size()
    if model.head_proj is None and model.head is None:
        total += model.embed.weight.numel() * model.embed.weight.element_size()
    return total


@dataclass
class Result:
    """One config's batch-1 decode."""

    config: str
    tok_s: float
    read_bytes: float
    weights_mib: float


def decode(model_dir: Path, dtype: str, quantization: str | None, tokens: int) -> Result:
    """Batch-1 greedy decode of `tokens` tokens; time per step after the prefill."""
    from hanlin.serve.config import EngineConfig
    from hanlin.serve.engine import Engine
    from hanlin.serve.params import SamplingParams
    from hanlin.serve.runner import ModelRunner

    engine = Engine(EngineConfig(model_dir, dtype=dtype, quantization=quantization))
    prompt = engine.tokenizer("Once upon a time").input_ids
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    # A short warm-up request: first calls pay one-off kernel setup.
    engine.add_request("warm", prompt, SamplingParams(max_tokens=4, temperature=0))
    while engine.has_work():
        engine.step()
    engine.add_request("b1", prompt, params)
    engine.step()  # prefill
    start = time.perf_counter()
    steps = 0
    while engine.has_work():
        engine.step()
        steps += 1
    per_step = (time.perf_counter() - start) / steps
    model = engine.runner.model
    weights = weight_bytes_per_step(model)
    # The attention reads the cache written so far: on average half the final context.
    avg_ctx = len(prompt) + tokens / 2
    kv = ModelRunner.kv_bytes_per_token(model) * avg_ctx
    name = dtype + (f":{quantization}" if quantization else "")
    return Result(name, 1 / per_step, (weights + kv) / per_step, weights / 2**20)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="DTYPE[:QUANT],...")
    parser.add_argument("--dtype", default=None, help="one dtype (overrides --configs)")
    parser.add_argument("--quantization", default=None, help="with --dtype: int8 or int4")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hanlin.dev.model import ensure_model
    from hanlin.serve import kernels

    if kernels.mode() != "off":
        kernels.load()  # built before measuring, not in the background during it

    configs = args.configs.split(",")
    if args.dtype or args.quantization:
        configs = [
            (args.dtype or "float32") + (f":{args.quantization}" if args.quantization else "")
        ]
    copy, triad = stream_bandwidth()
    stream = max(copy, triad)
    print(
        f"STREAM-like bandwidth: copy {copy / 1e9:.1f} GB/s, triad {triad / 1e9:.1f} GB/s "
        f"(denominator: the best, {stream / 1e9:.1f} GB/s; arrays 4x LLC "
        f"{llc_bytes() // 2**20} MiB); threads {torch.get_num_threads()}"
    )
    model_dir = ensure_model()
    print(f"{'config':<16}{'tok/s':>8}{'weights MiB':>13}{'GB/s':>8}{'ratio':>8}")
    for config in configs:
        dtype, _, quant = config.partition(":")
        r = decode(model_dir, dtype, quant or None, args.tokens)
        print(
            f"{r.config:<16}{r.tok_s:>8.1f}{r.weights_mib:>13.0f}"
            f"{r.read_bytes / 1e9:>8.1f}{r.read_bytes / stream:>8.2f}"
        )


if __name__ == "__main__":
    main()
