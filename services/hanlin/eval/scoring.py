"""Per-sample scores and their aggregation.

ppl mode follows lm-evaluation-harness exactly: `accuracy` is the argmax of the
summed continuation log-probs (its `acc`), `accuracyNorm` divides each by the
choice's length in characters (its `acc_norm`), `accuracyBytes` by its UTF-8
length (its `acc_bytes`). gen mode reduces the generated text with the
benchmark's post-processor and compares it with the reference.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter

from hanlin.eval.registry import PostProcess

INVALID = "[invalid]"
# The number pattern of BIG-bench's arithmetic task, with an optional fraction.
NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")
_LETTER_RE = re.compile(r"\b([A-Z])\b")


def _argmax(values: list[float]) -> int:
    # First maximum wins, like numpy.argmax, so ties resolve the same way.
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def score_choices(
    loglikelihoods: list[float], choices: tuple[str, ...], gold: int
) -> dict[str, float]:
    """accuracy / accuracyNorm / accuracyBytes of one multiple-choice sample."""
    chars = [ll / max(len(c), 1) for ll, c in zip(loglikelihoods, choices, strict=True)]
    nbytes = [
        ll / max(len(c.encode("utf-8")), 1) for ll, c in zip(loglikelihoods, choices, strict=True)
    ]
    return {
        "accuracy": float(_argmax(loglikelihoods) == gold),
        "accuracyNorm": float(_argmax(chars) == gold),
        "accuracyBytes": float(_argmax(nbytes) == gold),
    }


def postprocess(text: str, how: PostProcess, n_choices: int = 0) -> str:
    """Reduce a generated answer to what is compared with the reference."""
    if how == "number":
        # The last number: models often restate the question ("80 + 29 = 109").
        found = NUMBER_RE.findall(text)
        return str(found[-1]) if found else INVALID
    if how == "letter":
        for letter in _LETTER_RE.findall(text):
            if n_choices == 0 or ord(letter) - ord("A") < n_choices:
                return str(letter)
        return INVALID
    stripped = text.strip()
    return stripped.split("\n", 1)[0].strip() if stripped else ""


def _normalize_words(text: str) -> list[str]:
    # SQuAD's normalization: lower case, no punctuation, no articles.
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style word-overlap F1."""
    pred, ref = _normalize_words(prediction), _normalize_words(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _same_number(a: str, b: str) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=1e-9)
    except ValueError:
        return False


def score_generation(
    extracted: str, reference: str, how: PostProcess, metric: str
) -> dict[str, float]:
    """The gen-mode score of one sample; `extracted` is already post-processed."""
    ref = reference.strip()
    if how == "number":
        hit = extracted == ref or _same_number(extracted, ref)
    else:
        hit = extracted == ref
    if metric == "f1":
        return {"f1": token_f1(extracted, ref)}
    return {metric: float(hit)}


def mean_and_stderr(values: list[float]) -> tuple[float, float | None]:
    """The mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    if n == 0:
        return 0.0, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)
