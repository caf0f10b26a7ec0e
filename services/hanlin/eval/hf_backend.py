"""A local Hugging Face checkpoint as the model under test.

ppl: token splitting follows lm-evaluation-harness (encode context+continuation,
take the tokens past the context's own encoding; trailing context spaces move to
the continuation), so the scored tokens are the same. Unlike it, each question's
context runs through the model once: its KV cache is shared by all choices, and
only the continuation tokens run per choice. Logits are computed only where a
continuation token is predicted, never over the whole vocabulary x sequence.
gen: greedy decoding with a KV cache, left-padded batches, stop strings per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hanlin.eval.backend import (
    ContinuationScore,
    GenerateRequest,
    LoglikelihoodRequest,
    cut_at_stop,
)
from hanlin.eval.tasks import Prompt

if TYPE_CHECKING:
    import torch

# Rows of (choice x cached context) run together in the continuation pass; this
# bounds the copied KV cache (tokens x 46 KB for SmolLM2-135M in fp32).
_CONTINUATION_TOKEN_BUDGET = 16384


@dataclass
class _Encoded:
    context: list[int]
    continuations: list[list[int]]


class HFBackend:
    """Runs a causal LM checkpoint in this process (fp32 on CPU, or the GPU if present)."""

    def __init__(self, path: Path, batch_size: int = 8, name: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name or Path(path).name
        self.batch_size = batch_size
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        if self.device.type != "cpu":
            self.model.to(self.device)  # type: ignore[arg-type]
        eos = self.tokenizer.eos_token_id
        self.eos_id: int | None = int(eos) if eos is not None else None
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else (self.eos_id or 0)
        # lm-eval scores a continuation of an empty context after this token.
        bos = self.tokenizer.bos_token_id
        self.prefix_id = int(bos) if bos is not None else (self.eos_id or 0)
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048))

    def close(self) -> None:
        """Drop the model."""
        del self.model

    # -- prompts and tokens ---------------------------------------------------

    def render(self, prompt: Prompt, chat: bool) -> str:
        """The prompt text the model sees."""
        if not chat:
            return prompt.plain()
        if not self.tokenizer.chat_template:
            raise ValueError(f"applyChatTemplate: the model {self.name} has no chat template")
        text = self.tokenizer.apply_chat_template(
            prompt.messages(), tokenize=False, add_generation_prompt=True
        )
        return str(text)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode_request(self, context: str, continuations: tuple[str, ...]) -> _Encoded:
        spaces = len(context) - len(context.rstrip())
        head, tail = (context[:-spaces], context[-spaces:]) if spaces else (context, "")
        if not head:
            return _Encoded([self.prefix_id], [self._encode(tail + c) for c in continuations])
        ctx = self._encode(head)
        conts = [self._encode(head + tail + c)[len(ctx) :] for c in continuations]
        return _Encoded(ctx, conts)

    # -- model calls ------------------------------------------------------------

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
        # Real tokens get positions 0..n-1 whatever the padding, as in a batch of one.
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _score_batch(self, batch: list[_Encoded]) -> list[list[ContinuationScore]]:
        import torch
        from transformers import DynamicCache

        ids, mask, pos = self._left_pad([e.context for e in batch])
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        scores = [
            [[float(first[q, c[0]]), 1] if c else [0.0, 0] for c in e.continuations]
            for q, e in enumerate(batch)
        ]
        layers = [(layer.keys, layer.values) for layer in out.cache.layers]
        rows = [
            (q, j, c)
            for q, e in enumerate(batch)
            for j, c in enumerate(e.continuations)
            if len(c) > 1
        ]
        ctx_width = ids.shape[1]
        start = 0
        while start < len(rows):
            # Group rows so the copied cache stays within the token budget.
            end = start + 1
            while end < len(rows) and (end - start + 1) * ctx_width <= _CONTINUATION_TOKEN_BUDGET:
                end += 1
            chunk = rows[start:end]
            start = end
            index = torch.tensor([q for q, _, _ in chunk], device=self.device)
            cache = DynamicCache()
            for layer_idx, (k, v) in enumerate(layers):
                cache.update(k[index], v[index], layer_idx)
            width = max(len(c) - 1 for _, _, c in chunk)
            inp = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            cmask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, (_, _, c) in enumerate(chunk):
                inp[r, : len(c) - 1] = torch.tensor(c[:-1])
                cmask[r, : len(c) - 1] = 1
            cmask = cmask.to(self.device)
            full_mask = torch.cat([mask[index], cmask], dim=1)
            cpos = pos[index, -1:] + 1 + torch.arange(width, device=self.device)[None, :]
            logits = self.model(
                input_ids=inp.to(self.device),
                attention_mask=full_mask,
                position_ids=cpos,
                cache=cache,
                use_cache=True,
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, (q, j, c) in enumerate(chunk):
                target = torch.tensor(c[1:], device=self.device)
                got = logp[r, : len(c) - 1].gather(-1, target[:, None]).sum()
                scores[q][j][0] += float(got)
                scores[q][j][1] = len(c)
        return [[ContinuationScore(float(s[0]), int(s[1])) for s in per_q] for per_q in scores]

    def loglikelihoods(
        self, requests: list[LoglikelihoodRequest], chat: bool
    ) -> list[list[ContinuationScore]]:
        """Score each request's continuations; batches are sorted by length."""
        import torch

        encoded = [
            self._encode_request(self.render(r.prompt, chat), r.continuations) for r in requests
        ]
        for i, e in enumerate(encoded):
            longest = len(e.context) + max(len(c) for c in e.continuations)
            if longest > self.max_length:
                raise ValueError(
                    f"sample {i}: prompt and answer are {longest} tokens, "
                    f"over the model's {self.max_length}"
                )
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].context))
        results: list[list[ContinuationScore]] = [[] for _ in encoded]
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                for i, scored in zip(
                    idx, self._score_batch([encoded[i] for i in idx]), strict=True
                ):
                    results[i] = scored
        return results

    def _generate_batch(
        self, prompts: list[list[int]], stop: tuple[str, ...], limit: int
    ) -> list[str]:
        import torch

        ids, mask, pos = self._left_pad(prompts)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        past: Any = out.cache
        generated: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        step_pos = pos[:, -1:]
        for step in range(limit):
            nxt = out.logits[:, -1, :].argmax(dim=-1)
            for b, token in enumerate(nxt.tolist()):
                if done[b]:
                    continue
                if token == self.eos_id:
                    done[b] = True
                    continue
                generated[b].append(token)
                text = self.tokenizer.decode(generated[b], skip_special_tokens=True)
                if any(s and s in text for s in stop):
                    done[b] = True
            if all(done) or step == limit - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            step_pos = step_pos + 1
            out = self.model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=step_pos,
                cache=past,
                use_cache=True,
            )
            past = out.cache
        return [
            cut_at_stop(str(self.tokenizer.decode(g, skip_special_tokens=True)), stop)
            for g in generated
        ]

    def generate(self, requests: list[GenerateRequest], chat: bool) -> list[str]:
        """Greedy answers, batched by prompt length (longest first)."""
        import torch

        encoded = [self._encode(self.render(r.prompt, chat)) for r in requests]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results = [""] * len(encoded)
        with torch.inference_mode():
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                # One batch shares a stop list and a limit (a task's are uniform).
                first = requests[idx[0]]
                texts = self._generate_batch(
                    [encoded[i][-(self.max_length - first.max_new_tokens) :] for i in idx],
                    first.stop,
                    first.max_new_tokens,
                )
                for i, t in zip(idx, texts, strict=True):
                    results[i] = t
        return results
