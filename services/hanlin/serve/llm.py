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


@dataclass
class Response:
    """One answer of `pipeline` (LMDeploy's field names)."""

    text: str
    generate_token_len: int
    input_token_len: int
    finish_reason: str | None
    token_ids: list[int] = field(default_factory=list)


Conversation = list[dict[str, Any]]


class Pipeline:
    """LMDeploy's `pipeline(model)(prompts)`: prompts are chats, through the model's template.

    A string is one user message; a list of message dicts is one conversation; a
    list of either is a batch (answered as a list, in order).
    """

    def __init__(self, model: str | Path, **engine_options: Any) -> None:
        self.llm = LLM(model, **engine_options)

    def __call__(
        self,
        prompts: str | Conversation | list[str] | list[Conversation],
        params: SamplingParams | None = None,
    ) -> Response | list[Response]:
        single = isinstance(prompts, str) or bool(prompts and isinstance(prompts[0], dict))
        batch: list[str | Conversation] = [prompts] if single else list(prompts)  # type: ignore[list-item, arg-type]
        ids = [self._chat_ids(p) for p in batch]
        results = self.llm.generate(ids, params or SamplingParams(max_tokens=512))
        answers = [
            Response(
                text=r.outputs[0].text,
                generate_token_len=len(r.outputs[0].token_ids),
                input_token_len=len(r.prompt_token_ids),
                finish_reason=r.outputs[0].finish_reason,
                token_ids=r.outputs[0].token_ids,
            )
            for r in results
        ]
        return answers[0] if single else answers

    def _chat_ids(self, prompt: str | Conversation) -> list[int]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = self.llm.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(t) for t in ids]


def pipeline(model: str | Path, **engine_options: Any) -> Pipeline:
    """`pipeline(dir)("Hi")`, as in LMDeploy: chat prompts in, `Response`s out."""
    return Pipeline(model, **engine_options)
