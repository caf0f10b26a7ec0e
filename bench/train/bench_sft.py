"""SFT throughput: `hanlin train` (packing, loss head on labelled tokens only) vs
`transformers.Trainer` with its usual padding collator.

Same model (a small Llama with SmolLM2's tokenizer and vocabulary), same
variable-length chat data (alpaca-like length distribution), same batch of rows,
sequence length and steps. Each side runs in its own process so peak RSS is its
own. Prints the tokens/s ratio (goal >= 1.3x), the peak RSS ratio (goal <= 1.0x)
and model FLOPs utilisation against a matmul peak measured in the same run.

    python bench/train/bench_sft.py [--steps 8] [--batch 4] [--seq-len 512]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORDS = (
    "the model data train learn river stone cloud green quick blue tall small bright house tree "
    "write answer explain list give three reasons why how what when where people city water light "
    "energy system process example simple describe compare short story poem summary article"
).split()

MODEL: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 49152,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


def _words(rng: random.Random, mean: float, cap: int) -> str:
    # Alpaca's lengths are roughly log-normal: most answers short, a long tail.
    n = max(1, min(cap, int(rng.lognormvariate(math.log(mean), 0.8))))
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_data(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(rows):
            row = {"instruction": _words(rng, 14, 80), "output": _words(rng, 45, 380)}
            if rng.random() < 0.4:
                row["input"] = _words(rng, 12, 120)
            f.write(json.dumps(row) + "\n")


def _build_base(out: Path, tokenizer_dir: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = dict(MODEL)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)


def matmul_peak() -> float:
    """fp32 GFLOP/s of a large square matmul on this machine, best of a few."""
    import torch

    a = torch.randn(1024, 1024)
    b = torch.randn(1024, 1024)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9)
    return best


def run_hanlin(
    base: Path, data: Path, work: Path, steps: int, batch: int, seq_len: int
) -> dict[str, Any]:
    import contextlib
    import io

    from hanlin.api.training_job import TrainingJob
    from hanlin.train.loop import train

    job = TrainingJob.model_validate(
        {
            "apiVersion": "hanlin.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "bench"},
            "spec": {
                "method": "sft",
                "model": {"uri": f"file://{base}"},
                "data": [{"uri": f"file://{data}", "format": "alpaca"}],
                "hyperparameters": {
                    "maxSteps": steps,
                    "batchSize": batch,
                    "seqLen": seq_len,
                    "packing": True,
                    "learningRate": 1e-4,
                    "seed": 0,
                    "precision": "fp32",
                },
                "output": {"uri": f"file://{work}/out"},
            },
        }
    )
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        train(job, work / "scratch")
    lines = [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith('{"step"')]
    first, last = lines[0], lines[-1]
    return {
        "tokens": last["tokens"] - first["tokens"],
        "seconds": last["elapsedSeconds"] - first["elapsedSeconds"],
        "loss": last["loss"],
    }


def run_trainer(
    base: Path, data: Path, work: Path, steps: int, batch: int, seq_len: int
) -> dict[str, Any]:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from hanlin.train.records import read_records
    from hanlin.train.tokenize import encode

    tok = AutoTokenizer.from_pretrained(base)
    # The same chat-template rendering and label masks as hanlin's.
    rows = []
    for record in read_records(data, "alpaca"):
        s = encode(tok, record)
        rows.append({"input_ids": s.input_ids[:seq_len], "labels": s.labels[:seq_len]})
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    inner = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    counted: list[int] = []

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        counted.append(sum(len(f["input_ids"]) for f in features))
        return dict(inner(features))

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps.append(time.perf_counter())

    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        learning_rate=1e-4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        logging_steps=steps,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]
    )
    out = trainer.train()
    # Steps 2..N (the first step warms up), and the tokens their batches held.
    return {
        "tokens": sum(counted[1:steps]),
        "seconds": stamps[-1] - stamps[0],
        "loss": float(out.training_loss),
    }


def model_flops_per_token() -> float:
    """6 x the parameters a token passes through (the head included, tied or not)."""
    h, i, n, v = (
        MODEL["hidden_size"],
        MODEL["intermediate_size"],
        MODEL["num_hidden_layers"],
        MODEL["vocab_size"],
    )
    kv = h * MODEL["num_key_value_heads"] // MODEL["num_attention_heads"]
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    return 6.0 * (n * per_layer + h * v)


def child(argv: list[str]) -> None:
    which, base, data, work, steps, batch, seq_len = argv
    fn = run_hanlin if which == "hanlin" else run_trainer
    result = fn(Path(base), Path(data), Path(work), int(steps), int(batch), int(seq_len))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument(
        "--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "hanlin-bench-train"
    )
    a = p.parse_args()
    from hanlin.dev.model import ensure_model

    a.work.mkdir(parents=True, exist_ok=True)
    base, data = a.work / "base", a.work / "alpaca.jsonl"
    if not (base / "config.json").exists():
        _build_base(base, ensure_model())
    make_data(data, rows=2000)
    peak = matmul_peak()
    results = {}
    for which in ("hanlin", "trainer"):
        # A fresh output each run: hanlin train would otherwise resume a finished job.
        shutil.rmtree(a.work / which, ignore_errors=True)
        cmd = [
            sys.executable,
            __file__,
            "--child",
            which,
            str(base),
            str(data),
            str(a.work / which),
            str(a.steps),
            str(a.batch),
            str(a.seq_len),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{which} run failed:\n{proc.stderr[-3000:]}")
        results[which] = json.loads(proc.stdout.split("RESULT ", 1)[1])
    fpt = model_flops_per_token()
    print(
        f"setup: batch {a.batch} rows x seqLen {a.seq_len}, {a.steps} steps, fp32, "
        f"{os.cpu_count()} CPUs; matmul peak {peak:.1f} GFLOP/s"
    )
    for which, r in results.items():
        tps = r["tokens"] / r["seconds"]
        mfu = tps * fpt / (peak * 1e9)
        r.update(tps=tps, mfu=mfu)
        print(
            f"{which:8s} {tps:9.1f} tokens/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
            f"MFU {mfu * 100:5.1f}%  final loss {r['loss']:.3f}"
        )
    h, t = results["hanlin"], results["trainer"]
    print(f"tokens/s ratio (hanlin / Trainer): {h['tps'] / t['tps']:.2f}x  (goal >= 1.3x)")
    print(
        f"peak RSS ratio (hanlin / Trainer): {h['peak_rss_mb'] / t['peak_rss_mb']:.2f}x  (goal <= 1.0x)"
    )


if __name__ == "__main__":
    main()
