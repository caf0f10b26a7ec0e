"""The serving engine on a CUDA GPU: parity with HF transformers there, and its speed.

    python bench/serve/cuda_check.py --model-dir DIR [--random-weights] [--out FILE]

Checks, each on the GPU, in one process:
  * fp32 greedy output equals HF transformers' greedy `generate` (same GPU, TF32
    off) for a batch of prompts of different lengths submitted together, also
    with preemption forced by a tiny KV cache; a parting is accepted only at a
    near-tie of HF's own logits (reported);
  * bf16 likewise (parting at near-ties of two bf16 steps), and int8 weights run;
  * decode throughput at 1, 16 and 64 concurrent sequences against HF's own
    `generate` at batch 1 measured in the same run (the ratio is the result), and
    with the engine's CUDA graphs set aside (every step eager) in the same run.

With `--random-weights` the model is the directory's config (and tokenizer) with
seeded random weights (a scaled-up init, so greedy choices are not ties): for a
machine that cannot hold the real checkpoint. Parity does not need trained weights;
throughput does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "1, 2, 3, 4,",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Water boils at a temperature of 100 degrees Celsius at sea level. At higher altitudes,",
]
TOKENS = 16
# The GPU; `--device cpu` runs the same checks on the CPU (to try the script out).
DEVICE = "cuda"


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def empty_cache() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def random_model(src: Path, dst: Path, init_range: float) -> Path:
    """`src`'s config and tokenizer with seeded random weights, saved to `dst`."""
    from transformers import AutoConfig, LlamaForCausalLM

    config = AutoConfig.from_pretrained(src)
    config.initializer_range = init_range
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(dst)
    for name in src.iterdir():
        if name.suffix != ".safetensors" and name.name != "config.json" and name.is_file():
            shutil.copy(name, dst / name.name)
    return dst


def hf_greedy(model_dir: Path, dtype: torch.dtype, tokenizer: Any) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(DEVICE).eval()
    out = {}
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(DEVICE)
        with torch.no_grad():
            gen = hf.generate(
                ids,
                max_new_tokens=TOKENS,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        out[prompt] = (
            gen.sequences[0, ids.shape[1] :].tolist(),
            [s[0].float().cpu() for s in gen.scores],
        )
    del hf
    empty_cache()
    return out


def compare(results: list[Any], expected: dict[str, Any], ulps: float) -> dict[str, Any]:
    """Exact matches, and for each parting: where, HF's logit gap there, and whether
    that gap is a near-tie: within `ulps` steps of the compute dtype at that logit."""
    exact, partings = 0, []
    for prompt, result in zip(PROMPTS, results, strict=True):
        got = result.outputs[0].token_ids
        want, scores = expected[prompt]
        if got == want:
            exact += 1
            continue
        first = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
        top = float(scores[first][want[first]])
        gap = top - float(scores[first][got[first]])
        step = ulps * 2.0 ** (math.floor(math.log2(max(abs(top), 1e-30))))
        partings.append({"prompt": prompt[:30], "at": first, "hf_gap": gap, "tie": gap <= step})
    ok = all(p["tie"] for p in partings)
    return {"exact": exact, "of": len(PROMPTS), "partings": partings, "ok": ok}


def throughput(llm: Any, batch: int, tokens: int) -> float:
    from hanlin.serve.params import SamplingParams

    story = "The old lighthouse keeper climbed the stairs every evening to light the lamp. "
    prompts = [story * (1 + i % 4) for i in range(batch)]
    params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
    llm.generate(prompts[:1], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))
    sync()
    t = time.perf_counter()
    llm.generate(prompts, params)
    sync()
    return batch * tokens / (time.perf_counter() - t)


def hf_throughput(model_dir: Path, tokenizer: Any, tokens: int) -> float:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEVICE).eval()
    ids = tokenizer("The old lighthouse keeper climbed the stairs", return_tensors="pt")
    ids = ids.input_ids.to(DEVICE)
    with torch.no_grad():
        hf.generate(ids, max_new_tokens=4, do_sample=False)
        sync()
        t = time.perf_counter()
        gen = hf.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        sync()
    n = gen.shape[1] - ids.shape[1]
    del hf
    empty_cache()
    return n / (time.perf_counter() - t)


def serve_check(model_dir: Path, expected_text: str) -> dict[str, Any]:
    """`hanlin serve --device` on this machine: the official openai client, then 16 clients."""
    import asyncio
    import socket
    import subprocess

    import httpx
    from openai import OpenAI

    sys.path.insert(0, str(Path(__file__).parent))
    import loadgen

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = "import typer; from hanlin.serve.cli import serve; typer.run(serve)"
    command = [sys.executable, "-c", launch, "--model", str(model_dir), "--device", DEVICE]
    command += ["--dtype", "bfloat16", "--port", str(port), "--served-model-name", "m"]
    log = Path(tempfile.mkdtemp()) / "serve.log"
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    out: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        client = OpenAI(base_url=f"{url}/v1", api_key="-")
        done = client.completions.create(
            model="m", prompt=PROMPTS[0], max_tokens=TOKENS, temperature=0,
            extra_body={"ignore_eos": True},
        )  # fmt: skip
        out["completion_equals_llm_api"] = done.choices[0].text == expected_text
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi"}], max_tokens=8, stream=True
        )
        out["chat_stream_chunks"] = sum(1 for _ in stream)
        items = loadgen.workload(48, 0)
        load = loadgen.load(url, "m", 16, items, {"ignore_eos": True}, 300)
        result = asyncio.run(load)
        out["http_16_clients_tok_s"] = round(result["tok_s"], 1)
        out["http_16_clients_token_mismatches"] = result["token_mismatches"]
    except Exception as exc:  # the point is to report it
        out["error"] = repr(exc)[:500]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        text = log.read_text()
        out["engine_line"] = next((ln for ln in text.splitlines() if "device" in ln), "")[:300]
        if "error" in out:
            out["log_tail"] = text[-1500:]
    return out


def guided_check(llm: Any) -> dict[str, Any]:
    """Structured output on the device: JSON held to a schema, a choice, a regex."""
    import re
    from dataclasses import replace

    from hanlin.serve.guided import Guide
    from hanlin.serve.params import SamplingParams

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    out: dict[str, Any] = {}
    params = SamplingParams(max_tokens=48, temperature=0)
    cases = (
        ("json", Guide.of("json", schema), lambda t: set(json.loads(t)) == {"name", "age"}),
        ("choice", Guide.of("choice", ["red", "green"]), lambda t: t in ("red", "green")),
        (
            "regex",
            Guide.of("regex", "[0-9]{3}-[0-9]{4}"),
            re.compile("[0-9]{3}-[0-9]{4}").fullmatch,
        ),
    )
    for name, guide, check in cases:
        texts = [r.outputs[0].text for r in llm.generate(PROMPTS, replace(params, guide=guide))]
        try:
            out[name] = sum(bool(check(t)) for t in texts)
        except Exception as exc:  # the point is to report it
            out[name] = repr(exc)[:200]
    out["of"] = len(PROMPTS)
    return out


def cpu_kernels(model_dir: Path, threads: int, tokens: int) -> dict[str, Any]:
    """Batch-16 bf16 decode on this machine's CPU: fused C++ kernels against torch ops."""
    from hanlin.serve import kernels
    from hanlin.serve.llm import LLM

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"threads": threads, "avx512": "avx512f" in kernels._cpu_flags()}
    os.environ["HANLIN_KERNELS"] = "on"
    t = time.perf_counter()
    try:
        llm = LLM(model_dir, device="cpu", dtype="bfloat16", num_threads=threads)
    except Exception as exc:  # the point is to report it
        out["error"] = str(exc)[:500]
        return out
    out["build_s"] = round(time.perf_counter() - t, 1)
    fused = llm.engine.runner.model.ops
    paths = (("torch", kernels.TorchOps()), ("cpp", fused)) * 2
    for i, (name, ops) in enumerate(paths):
        llm.engine.runner.model.use_ops(ops)
        out[f"{name}{i // 2}_batch16_tok_s"] = round(throughput(llm, 16, tokens), 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--init-range", type=float, default=0.15)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--out", type=Path, default=Path("cuda-check.json"))
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--batches", default="1,16,64")
    p.add_argument("--cpu-threads", type=int, default=0, help="also time the CPU ops paths")
    p.add_argument("--serve", action="store_true", help="also run hanlin serve on the device")
    p.add_argument("--guided", action="store_true", help="also check structured output there")
    args = p.parse_args()
    # Every engine here captures its decode steps as CUDA graphs (opt-in elsewhere);
    # the throughput part compares them with eager steps in the same run.
    os.environ.setdefault("HANLIN_CUDA_GRAPHS", "1")
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        sys.exit("cuda_check: torch sees no CUDA GPU")
    from transformers import AutoTokenizer

    from hanlin.serve.llm import LLM
    from hanlin.serve.params import SamplingParams

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.get_device_name() if DEVICE == "cuda" else "none (cpu run)"
    report: dict[str, Any] = {"gpu": gpu, "torch": torch.__version__}
    model_dir = args.model_dir
    if args.random_weights:
        model_dir = random_model(model_dir, Path(tempfile.mkdtemp()), args.init_range)
    report["weights"] = "random" if args.random_weights else "checkpoint"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    greedy = SamplingParams(max_tokens=TOKENS, temperature=0, ignore_eos=True)

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2), flush=True)

    for dtype, name, ulps in (
        (torch.float32, "float32", 2**-16),
        (torch.bfloat16, "bfloat16", 2**-6),
    ):
        expected = hf_greedy(model_dir, dtype, tokenizer)
        if dtype == torch.float32:
            reference = expected
        for label, options in (
            ("batched", {}),
            ("preempted", {"num_blocks": 7, "block_size": 16, "max_batch_tokens": 64}),
        ):
            llm = LLM(model_dir, device=DEVICE, dtype=name, **options)
            assert llm.engine.runner.device.type == DEVICE
            results = llm.generate(PROMPTS, greedy)
            entry = compare(results, expected, ulps)
            # First-token log-probabilities against HF fp32: with random weights bf16
            # greedy paths part early for any two implementations, so bf16 is judged
            # by its error, which must stay near HF bf16's own.
            first = llm.generate(PROMPTS, SamplingParams(max_tokens=1, temperature=0, logprobs=5))
            errs, hf_errs = [], []
            for prompt, result in zip(PROMPTS, first, strict=True):
                ref = torch.log_softmax(reference[prompt][1][0], -1)
                hf_own = torch.log_softmax(expected[prompt][1][0], -1)
                top = result.outputs[0].logprobs[0][1]
                errs.append(max(abs(lp - float(ref[t])) for t, lp in top.items()))
                hf_errs.append(max(abs(float(hf_own[t]) - float(ref[t])) for t in top))
            entry["first_logprob_err_vs_hf_fp32"] = round(max(errs), 5)
            entry["hf_same_dtype_err_vs_hf_fp32"] = round(max(hf_errs), 5)
            if dtype != torch.float32:
                entry["ok"] = max(errs) <= 2 * max(hf_errs) + 0.02
            entry["preemptions"] = llm.engine.scheduler.num_preemptions
            entry["kv_usage_after"] = llm.engine.blocks.usage
            report[f"parity_{name}_{label}"] = entry
            del llm
            empty_cache()
        save()
    llm = LLM(model_dir, device=DEVICE, dtype="bfloat16", quantization="int8")
    base = LLM(model_dir, device=DEVICE, dtype="bfloat16")
    q = [r.outputs[0].token_ids for r in llm.generate(PROMPTS, greedy)]
    b = [r.outputs[0].token_ids for r in base.generate(PROMPTS, greedy)]
    agree = sum(x == y for qi, bi in zip(q, b, strict=True) for x, y in zip(qi, bi, strict=True))
    # int8 runs on the GPU through the dequantizing path (random weights make the
    # agreement figure low: it is reported, not judged).
    report["int8_tokens"] = sum(len(x) for x in q)
    report["int8_token_agreement_with_bf16"] = agree / (len(PROMPTS) * TOKENS)
    del llm
    empty_cache()
    hf_rate = hf_throughput(model_dir, tokenizer, args.tokens)
    report["hf_generate_bf16_batch1_tok_s"] = round(hf_rate, 1)
    batches = [int(b) for b in args.batches.split(",")]
    rates = {}
    for batch in batches:
        rate = rates[batch] = throughput(base, batch, args.tokens)
        report[f"hanlin_bf16_batch{batch}_tok_s"] = round(rate, 1)
        report[f"hanlin_bf16_batch{batch}_vs_hf_batch1"] = round(rate / hf_rate, 2)
        save()
    # The same engine with its CUDA graphs set aside: every step eager, as before them.
    static = base.engine.runner.static
    report["cuda_graph_buckets"] = sorted(static.buckets) if static is not None else None
    graphed = [r.outputs[0].token_ids for r in base.generate(PROMPTS, greedy)]
    base.engine.runner.static = None
    eager = [r.outputs[0].token_ids for r in base.generate(PROMPTS, greedy)]
    report["graph_tokens_equal_eager"] = sum(a == b for a, b in zip(graphed, eager, strict=True))
    for batch in batches:
        rate = throughput(base, batch, args.tokens)
        report[f"hanlin_bf16_batch{batch}_eager_tok_s"] = round(rate, 1)
        report[f"cuda_graphs_speedup_batch{batch}"] = round(rates[batch] / rate, 2)
    base.engine.runner.static = static
    save()
    if args.guided:
        report["guided"] = guided_check(base)
        save()
    if args.serve:
        first = base.generate(PROMPTS[:1], greedy)[0].outputs[0].text
        report["serve"] = serve_check(model_dir, first)
        save()
    if args.cpu_threads:
        report["cpu"] = cpu_kernels(model_dir, args.cpu_threads, args.tokens)
    report["all_parity_ok"] = all(
        v["ok"] and v["kv_usage_after"] == 0.0 for k, v in report.items() if k.startswith("parity_")
    )
    save()


if __name__ == "__main__":
    main()
