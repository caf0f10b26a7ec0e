"""What structured output and logits processors cost: decode tok/s against free decoding.

    python bench/serve/guided.py [--streams 16] [--tokens 64] [--threads N] [--rounds 3]

One engine in this process runs the same prompts, each round, four ways: free
greedy (the baseline), held to a JSON schema, with repetition/frequency/presence
penalties and logit_bias, and both. Guided sequences end when their JSON is
complete, so the measure is generated tokens per second of wall time, not a fixed
token count; the ratio to the baseline of the same round is what to read (these
machines are noisy). Best round of each, printed as a table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "city": {"type": "string", "maxLength": 24},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 4},
    },
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
ASKS = [
    "Describe a person who lives in Paris as JSON.",
    "Invent a character for a novel and give their details in JSON.",
    "Who is your favourite scientist? Answer as a JSON object.",
    "Give me a JSON profile of a retired teacher.",
]


def main() -> None:
    from hanlin.dev.model import ensure_model
    from hanlin.serve.guided import Guide
    from hanlin.serve.llm import LLM
    from hanlin.serve.params import SamplingParams

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = args.model or ensure_model()
    llm = LLM(model, max_model_len=512, max_batch_tokens=512)
    tok = llm.tokenizer
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": ASKS[i % len(ASKS)]}], add_generation_prompt=True,
            tokenize=True, return_dict=False,
        )
        for i in range(args.streams)
    ]  # fmt: skip
    free = SamplingParams(max_tokens=args.tokens, temperature=0, ignore_eos=True)
    vocab = len(tok)
    penalized = replace(
        free,
        repetition_penalty=1.1,
        frequency_penalty=0.3,
        presence_penalty=0.2,
        logit_bias={i * 97 % vocab: -5.0 for i in range(50)},
    )
    guided = replace(free, ignore_eos=False, guide=Guide.of("json", SCHEMA))
    configs = {
        "free": free,
        "json schema": guided,
        "penalties + logit_bias": penalized,
        "json schema + penalties": replace(penalized, ignore_eos=False, guide=guided.guide),
    }
    llm.generate(prompts[:2], replace(guided, max_tokens=4))  # warm: kernels, tokenizer tables
    best: dict[str, tuple[float, int]] = {}
    ratios: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        base = None
        for name, params in configs.items():
            t0 = time.perf_counter()
            results = llm.generate(prompts, params)
            seconds = time.perf_counter() - t0
            tokens = sum(len(r.outputs[0].token_ids) for r in results)
            rate = tokens / seconds
            base = rate if base is None else base
            ratios[name].append(rate / base)
            if rate > best.get(name, (0.0, 0))[0]:
                best[name] = (rate, tokens)
    print(f"{args.streams} streams, up to {args.tokens} tokens, {torch.get_num_threads()} threads")
    print("| config | tok/s (best round) | tokens | vs free, same round (median) |")
    print("|---|---|---|---|")
    for name in configs:
        rate, tokens = best[name]
        median = sorted(ratios[name])[len(ratios[name]) // 2]
        print(f"| {name} | {rate:.1f} | {tokens} | {median:.2f}x |")


if __name__ == "__main__":
    main()
