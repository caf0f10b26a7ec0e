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


def process_logits(
    logits: torch.Tensor,
    params: list[SamplingParams],
    histories: list[tuple[list[int], list[int]]],
    stop_ids: list[set[int]],
) -> torch.Tensor:
    """Apply each row's logits processors; rows without any are left as they are.

    `histories[row]` is (prompt ids, output ids) and `stop_ids[row]` the tokens that
    would end that row (EOS unless ignored, and its stop_token_ids). The order is
    vLLM's: min_tokens, logit_bias, then the repetition, frequency and presence
    penalties. The penalties follow their sources: repetition as HF/CTRL (positive
    logits divided, negative multiplied, over prompt and output), frequency and
    presence as OpenAI documents them (over the output only).
    """
    rows = [r for r, p in enumerate(params) if p.processes_logits]
    if not rows:
        return logits
    logits = logits.clone()
    for row in rows:
        p = params[row]
        prompt, output = histories[row]
        x = logits[row]
        dev = x.device
        if len(output) < p.min_tokens and stop_ids[row]:
            x[torch.tensor(sorted(stop_ids[row]), dtype=torch.long, device=dev)] = float("-inf")
        if p.logit_bias:
            ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=dev)
            bias = torch.tensor(list(p.logit_bias.values()), dtype=x.dtype, device=dev)
            x.index_add_(0, ids, bias)
        if p.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(prompt) | set(output)), dtype=torch.long, device=dev)
            v = x[seen]
            x[seen] = torch.where(v > 0, v / p.repetition_penalty, v * p.repetition_penalty)
        if output and (p.frequency_penalty or p.presence_penalty):
            ids, counts = torch.unique(
                torch.tensor(output, dtype=torch.long, device=dev), return_counts=True
            )
            x.index_add_(0, ids, -(counts.to(x.dtype) * p.frequency_penalty + p.presence_penalty))
    return logits


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
) -> list[int]:
    """One token per row of `logits` ([N, vocab], fp32, processed) under each row's parameters."""
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
        if p.min_p > 0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        tokens[row] = int(torch.multinomial(probs, 1, generator=generators[row]))
    return [int(t) for t in tokens]
