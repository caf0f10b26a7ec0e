"""Batch-1 decode memory bandwidth as a fraction of measured copy (STREAM-like) bandwidth.

    python bench/serve/bandwidth.py [--quantization int8|int4] [--threads N]

Decoding one token must read every weight once, so bytes of weights per step
divided by step time is the bandwidth decode achieves; the ratio to a plain
large-tensor copy (read + write) is how close to the memory roof it runs.
"""

from __future__ import annotations

import argparse
import time

import torch


def copy_bandwidth(size_mb: int = 256, reps: int = 10) -> float:
    """Bytes/s of a large tensor copy (counting read and write), best of `reps`."""
    src = torch.ones(size_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quantization", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hanlin.dev.model import ensure_model
    from hanlin.quant import quantized_bytes
    from hanlin.serve.config import EngineConfig
    from hanlin.serve.engine import Engine
    from hanlin.serve.params import SamplingParams

    engine = Engine(EngineConfig(ensure_model(), quantization=args.quantization))
    ids = engine.tokenizer("Once upon a time").input_ids
    engine.add_request(
        "b1", ids, SamplingParams(max_tokens=args.tokens, temperature=0, ignore_eos=True)
    )
    engine.step()  # prefill
    start = time.perf_counter()
    steps = 0
    while engine.has_work():
        engine.step()
        steps += 1
    per_step = (time.perf_counter() - start) / steps
    weights = quantized_bytes(engine.runner.model)
    decode_bw = weights / per_step
    stream = copy_bandwidth()
    print(f"weights {weights / 2**20:.0f} MiB; decode {1 / per_step:.1f} tok/s at batch 1")
    print(f"decode bandwidth {decode_bw / 1e9:.1f} GB/s; copy bandwidth {stream / 1e9:.1f} GB/s")
    print(f"ratio {decode_bw / stream:.2f}")


if __name__ == "__main__":
    main()
