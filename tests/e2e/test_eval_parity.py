"""`hanlin eval` scores equal lm-evaluation-harness's on the real SmolLM2-135M-Instruct.

The same rows and prompts go through lm-eval's `hf` backend (run offline from a
task YAML with `dataset_path: json`), through `hanlin eval` on the checkpoint,
and through `hanlin eval` against a real `hanlin serve` process (echo +
logprobs for ppl, completions for gen).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hanlin.dev.fixtures import hanlin_server
from hanlin.eval.lm_eval_task import write_lm_eval_task
from hanlin.eval.registry import DATA_DIR
from hanlin.eval.results import read_records

# Generous per-test limit: the fixtures run lm-eval, hanlin eval and hanlin serve.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

N_MC = 20  # date_understanding rows: 5-6 multi-token choices each
N_QA = 20  # arithmetic rows, greedy generation
MAX_NEW = 12


def _head(name: str, n: int) -> str:
    return "".join((DATA_DIR / name).read_text().splitlines(keepends=True)[:n])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("eval-data")
    (d / "mc.jsonl").write_text(_head("date_understanding.jsonl", N_MC))
    (d / "qa.jsonl").write_text(_head("arithmetic.jsonl", N_QA))
    write_lm_eval_task(d, "hanlin_mc", d / "mc.jsonl", "multiple-choice")
    write_lm_eval_task(d, "hanlin_qa", d / "qa.jsonl", "qa", max_new_tokens=MAX_NEW)
    return d


def _spec(data: Path, model: str, out: Path) -> Path:
    # A custom multiple-choice dataset (ppl) and the built-in arithmetic (gen).
    path = out.with_suffix(".yaml")
    path.write_text(f"""\
apiVersion: hanlin.dev/v1alpha1
kind: EvalRun
metadata: {{name: parity}}
spec:
  model: {model}
  benchmarks:
    - {{name: mc, dataset: {{uri: "file://{data}/mc.jsonl", format: multiple-choice}}}}
    - {{name: arithmetic, limit: {N_QA}}}
  batchSize: 8
  maxNewTokens: {MAX_NEW}
  output: {{uri: "file://{out}"}}
""")
    return path


def _hanlin_eval(spec: Path, out: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hanlin.cli",
            "eval",
            "--spec",
            str(spec),
            "--no-bar",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    by_line = {f"{r['benchmark']}/{r['line']}": r for r in read_records(str(out)).values()}
    return report, by_line


def _value(report: dict[str, Any], bench: str, metric: str) -> float:
    return next(
        float(r["value"])
        for r in report["results"]
        if (r["benchmark"], r["metric"]) == (bench, metric)
    )


@pytest.fixture(scope="module")
def lm_eval_run(data: Path, model_dir: Path) -> dict[str, Any]:
    out = data / "lm-eval-out"
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cmd = [
        sys.executable, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={model_dir},dtype=float32",
        "--tasks", "hanlin_mc,hanlin_qa", "--include_path", str(data),
        "--batch_size", "8", "--output_path", str(out), "--log_samples",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples: dict[str, dict[int, dict[str, Any]]] = {}
    results: dict[str, Any] = {}
    for path in out.rglob("*.jsonl"):
        task = "mc" if "hanlin_mc" in path.name else "qa"
        samples[task] = {
            int(s["doc_id"]): s for s in map(json.loads, path.read_text().splitlines())
        }
    for path in out.rglob("results_*.json"):
        results = json.loads(path.read_text())["results"]
    assert set(samples) == {"mc", "qa"} and results
    return {"samples": samples, "results": results}


@pytest.fixture(scope="module")
def hanlin_hf(data: Path, model_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    out = data / "hanlin-hf"
    return _hanlin_eval(_spec(data, f'{{uri: "file://{model_dir}"}}', out), out)


def test_ppl_matches_lm_eval(lm_eval_run: dict[str, Any], hanlin_hf: Any) -> None:
    report, records = hanlin_hf
    ref = lm_eval_run["samples"]["mc"]
    assert len(ref) == N_MC
    for doc_id, sample in ref.items():
        ours = records[f"mc/{doc_id + 1}"]
        theirs = [float(r[0]) for r in sample["filtered_resps"]]
        assert ours["loglikelihoods"] == pytest.approx(theirs, abs=2e-3), doc_id
        assert ours["scores"]["accuracy"] == sample["acc"], doc_id
        assert ours["scores"]["accuracyNorm"] == sample["acc_norm"], doc_id
    mc = lm_eval_run["results"]["hanlin_mc"]
    assert _value(report, "mc", "accuracy") == pytest.approx(mc["acc,none"], abs=1e-12)
    assert _value(report, "mc", "accuracyNorm") == pytest.approx(mc["acc_norm,none"], abs=1e-12)


def test_gen_matches_lm_eval(lm_eval_run: dict[str, Any], hanlin_hf: Any) -> None:
    report, records = hanlin_hf
    ref = lm_eval_run["samples"]["qa"]
    assert len(ref) == N_QA
    for doc_id, sample in ref.items():
        ours = records[f"arithmetic/{doc_id + 1}"]
        theirs = sample["filtered_resps"]
        theirs = theirs[0] if isinstance(theirs, list) else theirs
        assert ours["extracted"] == theirs, (doc_id, ours["prediction"], sample["resps"])
        assert ours["scores"]["exactMatch"] == sample["exact_match"], doc_id
    em = lm_eval_run["results"]["hanlin_qa"]["exact_match,last-number"]
    assert _value(report, "arithmetic", "exactMatch") == pytest.approx(em, abs=1e-12)


@pytest.fixture(scope="module")
def serve_url(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    args = [
        "serve", "--model", str(model_dir), "--served-model-name", "smol",
        "--max-model-len", "512", "--max-seqs", "8", "--max-queue", "64", "--kv-cache-mib", "128",
        "--dtype", "float32",  # parity with lm-eval's fp32 run, not bf16's speed
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "HANLIN_API_KEY"}
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with hanlin_server(args, log, env=env) as url:
        yield url


def test_openai_backend_against_hanlin_serve_gives_the_same_scores(
    data: Path, serve_url: str, hanlin_hf: Any
) -> None:
    out = data / "hanlin-serve"
    model = f'{{endpoint: {{url: "{serve_url}/v1", model: smol}}}}'
    report, records = _hanlin_eval(_spec(data, model, out), out)
    local_report, local = hanlin_hf
    for key, rec in local.items():
        remote = records[key]
        if rec["mode"] == "ppl":
            assert remote["loglikelihoods"] == pytest.approx(rec["loglikelihoods"], abs=2e-3), key
            assert remote["tokens"] == rec["tokens"], key
        else:
            assert remote["extracted"] == rec["extracted"], (
                key,
                remote["prediction"],
                rec["prediction"],
            )
        assert remote["scores"] == rec["scores"], key
    assert report["results"] == local_report["results"]
    assert report["model"] == "smol"
