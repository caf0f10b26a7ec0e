"""The Python API: ``LLM(model_dir).generate(prompts, params)``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hanlin.serve.config import EngineConfig
from hanlin.serve.engine import Engine
from hanlin.serve.outputs import Logprob
from hanlin.serve.params import SamplingParams


@dataclass
class Completion:
    """One finished sequence."""

    text: str
    token_ids: list[int]
    finish_reason: str | None
    logprobs: list[Logprob] = field(default_factory=list)


@dataclass
class GenerationResult:
    """All `n` completions of one prompt."""

    prompt: str | list[int]
    prompt_token_ids: list[int]
    outputs: list[Completion]
    prompt_logprobs: list[Logprob | None] | None = None


class LLM:
    """Offline batched generation with the serving engine (no server, no threads)."""

    def __init__(self, model: str | Path, **engine_options: Any) -> None:
        self.engine = Engine(EngineConfig(Path(model), **engine_options))
        self.tokenizer = self.engine.tokenizer

    def generate(
        self,
        prompts: str | list[int] | list[str] | list[list[int]],
        params: SamplingParams | list[SamplingParams] | None = None,
        adapter: str | None = None,
    ) -> list[GenerationResult]:
        """Generate for every prompt at once (continuous batching); results in prompt order.

        `params`: one for all prompts, or one per prompt (as vLLM's `LLM.generate`).
        `adapter`: one of the engine's `lora_adapters` names (None: the base model).
        A bad request raises `RequestError` before anything is queued.
        """
        batch: list[str | list[int]]
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            batch = [prompts]  # type: ignore[list-item]
        else:
            batch = list(prompts)  # type: ignore[arg-type]
        if isinstance(params, list):
            if len(params) != len(batch):
                raise ValueError(f"{len(params)} SamplingParams for {len(batch)} prompts")
            per_prompt = params
        else:
            per_prompt = [params or SamplingParams()] * len(batch)
        results: list[GenerationResult] = []
        parts: dict[str, tuple[int, int]] = {}
        try:
            for i, (prompt, p) in enumerate(zip(batch, per_prompt, strict=True)):
                ids = (
                    list(self.tokenizer(prompt).input_ids)
                    if isinstance(prompt, str)
                    else list(prompt)
                )
                results.append(GenerationResult(prompt, ids, []))
                for j in range(p.n):
                    sub = p if p.seed is None else _with_seed(p, p.seed + j)
                    rid = f"llm-{i}-{j}"
                    self.engine.add_request(rid, ids, sub, adapter)
                    parts[rid] = (i, j)
                    results[i].outputs.append(Completion("", [], None))
        except BaseException:
            for rid in parts:
                self.engine.abort(rid)
            raise
        while self.engine.has_work():
            for out in self.engine.step():
                i, j = parts[out.request_id]
                c = results[i].outputs[j]
                c.text += out.text
                c.token_ids.extend(out.token_ids)
                c.logprobs.extend(out.logprobs)
                if out.prompt_logprobs is not None:
                    results[i].prompt_logprobs = out.prompt_logprobs
                if out.finished:
                    c.finish_reason = out.finish_reason
        return results


def _with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, seed=seed)
