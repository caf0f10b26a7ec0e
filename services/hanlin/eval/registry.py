"""Built-in benchmarks: data shipped in `data/` (see data/SOURCES.md for provenance).

Each built-in is stored in the same JSONL formats users write for custom
datasets, with the prompt already in the question, so a built-in benchmark and
a custom dataset go through exactly the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hanlin.eval.datasets import DatasetFormat

EvalMode = Literal["ppl", "gen"]
PostProcess = Literal["first-line", "number", "letter"]
DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class BuiltinBenchmark:
    """A benchmark whose data ships with Hanlin."""

    name: str
    file: str
    """File name under data/."""
    format: DatasetFormat
    default_mode: EvalMode
    postprocess: PostProcess
    """How a generated answer is reduced before it is compared (gen mode)."""
    description: str

    @property
    def path(self) -> Path:
        """The shipped JSONL file."""
        return DATA_DIR / self.file


BUILTINS: dict[str, BuiltinBenchmark] = {
    b.name: b
    for b in (
        BuiltinBenchmark(
            name="mmlu",
            file="mmlu.jsonl",
            format="multiple-choice",
            default_mode="ppl",
            postprocess="letter",
            description="200 MMLU questions (57 subjects), options listed, answer letter A-D.",
        ),
        BuiltinBenchmark(
            name="date_understanding",
            file="date_understanding.jsonl",
            format="multiple-choice",
            default_mode="ppl",
            postprocess="first-line",
            description="BIG-bench date_understanding: 369 questions, 5-6 dates to choose from.",
        ),
        BuiltinBenchmark(
            name="arithmetic",
            file="arithmetic.jsonl",
            format="qa",
            default_mode="gen",
            postprocess="number",
            description="BIG-bench arithmetic: 2-digit addition and subtraction, "
            "1-digit multiplication (100 each).",
        ),
    )
}


def builtin(name: str) -> BuiltinBenchmark:
    """The built-in benchmark called `name`, or a KeyError listing the known ones."""
    try:
        return BUILTINS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTINS))
        raise KeyError(
            f"unknown benchmark {name!r}: built-in benchmarks are {known}; "
            "for your own data set benchmarks[].dataset"
        ) from None
