"""The serving benchmark's pure parts: its workload, statistics and goal ratios."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "serve"


def _load(name: str) -> ModuleType:
    # bench/ is scripts, not a package: load the modules by path under unique names.
    spec = importlib.util.spec_from_file_location(f"bench_serve_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


loadgen = _load("loadgen")
report = _load("report")


def test_workload_is_fixed_by_seed_and_shared_across_levels() -> None:
    a = loadgen.workload(16, seed=0)
    assert a == loadgen.workload(16, seed=0)
    assert a != loadgen.workload(16, seed=1)
    # A smaller level runs the first requests of a larger one: levels are comparable.
    assert loadgen.workload(4, seed=0) == a[:4]
    assert {r.max_tokens for r in loadgen.workload(200, seed=0)} == set(loadgen.OUTPUT_LENGTHS)
    words = [len(r.prompt.split()) for r in loadgen.workload(200, seed=0)]
    assert 8 <= min(words) and max(words) <= 400 and len(set(words)) > 50


def test_summarise_counts_tokens_and_mismatches() -> None:
    rs = [
        loadgen.Result(ttft=0.1 * i, tpot=0.01 * i, e2e=1.0, tokens=10, expected=10)
        for i in range(1, 11)
    ]
    rs.append(loadgen.Result(ttft=5.0, tpot=0.5, e2e=9.0, tokens=7, expected=10))
    m = loadgen.summarise(rs, elapsed=2.0)
    assert m["requests"] == 11 and m["req_s"] == 5.5
    assert m["tok_s"] == (100 + 7) / 2.0
    assert m["token_mismatches"] == 1 and m["expected_tokens"] == 110
    assert m["ttft_p50"] == pytest.approx(0.6) and m["ttft_p99"] == 5.0
    with pytest.raises(ValueError):
        loadgen.summarise([], 1.0)
    with pytest.raises(ValueError):
        loadgen.percentile([], 0.5)


def _row(tok_s: float, ttft: float = 1.0) -> dict[str, float]:
    return {
        "requests": 4, "req_s": 1.0, "tok_s": tok_s, "ttft_p50": ttft, "ttft_p99": ttft,
        "tpot_p50": 0.1, "tpot_p99": 0.1, "token_mismatches": 0,
    }  # fmt: skip


def test_goals_are_ratios_within_the_run() -> None:
    table = {
        ("hanlin", 16): _row(120.0, ttft=0.5),
        ("hanlin-int4", 1): _row(70.0),
        ("hanlin-int4", 16): _row(50.0, ttft=3.0),
        ("naive-hf", 16): _row(12.0, ttft=2.0),
        ("llama-cpp", 1): _row(60.0),
        ("llama-cpp", 16): _row(46.0),
    }
    by_name = {g.name: g for g in report.goals(table, high=16, low=1)}
    naive = by_name["hanlin / naive-hf output tok/s @16"]
    assert naive.value == 10.0 and naive.met is True
    assert by_name["hanlin / llama-cpp output tok/s @16"].met is True
    assert by_name["hanlin-int4 / llama-cpp output tok/s @16"].met is False
    # vLLM did not run: its ratio is unmeasured, neither met nor failed.
    assert math.isnan(by_name["hanlin / vllm output tok/s @16"].value)
    assert by_name["hanlin / vllm output tok/s @16"].met is None
    assert by_name["hanlin / naive-hf TTFT p50 @16"].value == 0.25
    assert by_name["hanlin / naive-hf TTFT p50 @16"].met is True
    assert by_name["hanlin-int4 / naive-hf TTFT p50 @16"].met is False
    assert by_name["hanlin-int4 / llama-cpp output tok/s @1"].value == pytest.approx(70 / 60)
    only = report.goals(table, high=16, low=1, requested={"hanlin", "naive-hf"})
    assert [g.name for g in only] == [
        "hanlin / naive-hf output tok/s @16",
        "hanlin / naive-hf TTFT p50 @16",
        "hanlin-int4 / naive-hf output tok/s @16",
        "hanlin-int4 / naive-hf TTFT p50 @16",
    ]
    assert not [g for g in report.goals(table, high=16, low=None) if g.name.endswith("@1")]
    text = report.render(table, {"vllm": "did not run: no wheel"}, list(by_name.values()))
    assert "vllm          did not run: no wheel" in text
    assert "NOT met" in text and "n/a" in text
