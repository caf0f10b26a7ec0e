"""Token choice: greedy, temperature, top-k, top-p, per-request seeds, logprobs."""

from __future__ import annotations

import torch

from hanlin.serve.params import SamplingParams


def top_logprobs(logprobs: torch.Tensor, token: int, k: int) -> tuple[float, dict[int, float]]:
    """The chosen token's logprob and the `k` most likely alternatives (raw model distribution)."""
    chosen = float(logprobs[token])
    if k <= 0:
        return chosen, {}
    values, ids = torch.topk(logprobs, k)
    return chosen, {int(i): float(v) for i, v in zip(ids.tolist(), values.tolist(), strict=True)}


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> list[int]:
    """One token per row of `logits` ([N, vocab], fp32) under each row's parameters."""
    tokens = torch.argmax(logits, dim=-1).tolist()
    for row, p in enumerate(params):
        if p.greedy:
            continue
        scores = logits[row] / p.temperature
        if p.top_k > 0 and p.top_k < scores.numel():
            kth = torch.topk(scores, p.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, descending=True)
            cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(-1)
            # Drop a token once the mass before it already reaches top_p (keeps >= 1 token).
            drop = (cumulative - torch.softmax(sorted_scores, dim=-1)) >= p.top_p
            scores = scores.scatter(0, order[drop], float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        tokens[row] = int(torch.multinomial(probs, 1, generator=generators[row]))
    return [int(t) for t in tokens]
