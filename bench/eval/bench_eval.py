"""hanlin eval vs lm-evaluation-harness (hf backend): same model, rows, prompts, batch size.

    python bench/eval/bench_eval.py [--task date_understanding|mmlu] [--rows 200] [--batch-size 8]

Both run in this process on SmolLM2-135M-Instruct (fp32), model load excluded
from the timing. Prints samples/s of each, the ratio (goal >= 2x) and the
accuracy difference (goal 0).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def run_lm_eval(model: Path, data: Path, name: str, batch_size: int) -> tuple[float, float, float]:
    """(seconds, acc, acc_norm) of lm-eval's hf backend on the task."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from hanlin.eval.lm_eval_task import write_lm_eval_task

    write_lm_eval_task(data, f"bench_{name}", data / "rows.jsonl", "multiple-choice")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm = HFLM(pretrained=str(model), dtype="float32", batch_size=batch_size, device=device)
    manager = TaskManager(include_path=str(data))
    start = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=[f"bench_{name}"], task_manager=manager)
    seconds = time.perf_counter() - start
    assert out is not None
    res = out["results"][f"bench_{name}"]
    return seconds, float(res["acc,none"]), float(res["acc_norm,none"])


def run_hanlin(model: Path, data: Path, batch_size: int) -> tuple[float, float, float]:
    """(seconds, accuracy, accuracyNorm) of hanlin eval's local backend on the same rows."""
    from hanlin.eval.hf_backend import HFBackend
    from hanlin.eval.progress import Progress
    from hanlin.eval.results import Shard
    from hanlin.eval.runner import WorkerConfig, run_worker, try_merge
    from hanlin.eval.tasks import build_task

    task = build_task(
        "bench", dataset_uri=f"file://{data}/rows.jsonl", dataset_format="multiple-choice"
    )
    backend = HFBackend(model, batch_size=batch_size)
    out = data / "hanlin-out"
    cfg = WorkerConfig([task], str(out), Shard(0, 1), batch_size)
    with open(os.devnull, "w") as sink:
        progress = Progress(total=len(task.rows), out=sink, bar=None)
        start = time.perf_counter()
        run_worker(backend, cfg, progress)
        seconds = time.perf_counter() - start
    report = try_merge([task], str(out), "bench", None)
    assert report is not None
    values = {r["metric"]: float(r["value"]) for r in report["results"]}
    return seconds, values["accuracy"], values["accuracyNorm"]


def main() -> None:
    """Run both, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--task", default="date_understanding", choices=["date_understanding", "mmlu"]
    )
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from hanlin.dev.model import ensure_model
    from hanlin.eval.registry import DATA_DIR

    model = ensure_model()
    lines = (DATA_DIR / f"{args.task}.jsonl").read_text().splitlines()[: args.rows]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "rows.jsonl").write_text("\n".join(lines) + "\n")
        ref_s, ref_acc, ref_norm = run_lm_eval(model, data, args.task, args.batch_size)
        our_s, our_acc, our_norm = run_hanlin(model, data, args.batch_size)
    n = len(lines)
    summary = {
        "task": args.task,
        "rows": n,
        "batchSize": args.batch_size,
        "lmEvalSamplesPerSecond": round(n / ref_s, 3),
        "hanlinSamplesPerSecond": round(n / our_s, 3),
        "ratio": round(ref_s / our_s, 2),
        "lmEvalAcc": ref_acc,
        "hanlinAccuracy": our_acc,
        "accDifference": our_acc - ref_acc,
        "accNormDifference": our_norm - ref_norm,
    }
    print(f"lm-eval hf : {n / ref_s:8.3f} samples/s  acc={ref_acc:.4f} acc_norm={ref_norm:.4f}")
    print(f"hanlin eval: {n / our_s:8.3f} samples/s  acc={our_acc:.4f} acc_norm={our_norm:.4f}")
    print(f"ratio (hanlin / lm-eval samples/s): {ref_s / our_s:.2f}x   (goal >= 2x)")
    print(
        f"accuracy difference: {our_acc - ref_acc:+.4f}   acc_norm: {our_norm - ref_norm:+.4f}   (goal 0)"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
