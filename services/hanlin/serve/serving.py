"""OpenAI completions and chat over the engine: requests in, responses or SSE chunks out.

Transport-free: the router turns a `RequestError` into OpenAI error JSON; gRPC
reuses `AsyncEngine` directly.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hanlin.serve.async_engine import AsyncEngine, RequestStream
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.outputs import Logprob, RequestOutput
from hanlin.serve.params import SamplingParams
from hanlin.serve.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    DeltaToolCall,
    DetokenizeRequest,
    DetokenizeResponse,
    PromptTokensDetails,
    TokenizeRequest,
    TokenizeResponse,
    TokenLogprob,
    TopLogprob,
    UsageInfo,
)
from hanlin.serve.tool_calls import (
    ContentFilter,
    ToolPlan,
    assistant_message,
    plan_tools,
    render_messages,
)


@dataclass
class _Choice:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[Logprob] = field(default_factory=list)
    prompt_logprobs: list[Logprob | None] | None = None
    finish_reason: str | None = None
    cached_tokens: int = 0


def sse(payload: dict[str, Any] | str) -> str:
    """One server-sent event line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n"


async def merge(streams: list[RequestStream]) -> AsyncIterator[tuple[int, RequestOutput]]:
    """Interleave several request streams; leaving early aborts the unfinished ones."""
    queue: asyncio.Queue[tuple[int, RequestOutput | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: RequestStream) -> None:
        try:
            async for item in stream:
                await queue.put((i, item))
            await queue.put((i, None))
        except Exception as exc:
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            i, item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        for s in streams:
            s.abort()
        await asyncio.gather(*tasks, return_exceptions=True)


class OpenAIServing:
    """Completions and chat completions for one served model."""

    def __init__(self, engine: AsyncEngine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name
        self.tokenizer: Any = engine.tokenizer
        self.max_model_len = engine.limits.max_model_len
        self.adapters: list[str] = list(engine.limits.lora_names)
        self._renders_tools: bool | None = None

    def template_renders_tools(self) -> bool:
        """Whether the model's chat template writes `tools` into the prompt itself."""
        if self._renders_tools is None:
            probe = "hanlin_probe_function"
            tool = {"type": "function", "function": {"name": probe, "parameters": {}}}
            try:
                text = self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": "hi"}], tools=[tool], tokenize=False
                )
                self._renders_tools = probe in str(text)
            except Exception:  # a template that fails on tools does not render them
                self._renders_tools = False
        return self._renders_tools

    # -- shared -------------------------------------------------------------------------------

    def check_model(self, name: str) -> str | None:
        """The LoRA adapter a request's `model` names (None: the base model); else a 404."""
        if name == self.model_name:
            return None
        if name in self.adapters:
            return name
        served = ", ".join(f"`{m}`" for m in [self.model_name, *self.adapters])
        raise RequestError(
            ErrorCode.MODEL_NOT_FOUND,
            f"The model `{name}` does not exist; this server serves {served}.",
            "model",
        )

    def _submit(
        self, prompts: list[list[int]], params: list[SamplingParams], adapter: str | None
    ) -> list[RequestStream]:
        streams: list[RequestStream] = []
        try:
            for ids, p in zip(prompts, params, strict=True):
                streams.append(self.engine.submit(ids, p, adapter=adapter))
        except RequestError:
            for s in streams:
                s.abort()
            raise
        return streams

    def _token_text(self, token: int) -> str:
        return str(self.tokenizer.decode([token]))

    def _default_max_tokens(self, prompt: list[int], requested: int | None) -> int:
        if requested is not None:
            return requested
        return max(int(self.max_model_len) - len(prompt), 0)

    # -- tokenizer ------------------------------------------------------------------------------

    def tokenize(self, req: TokenizeRequest) -> TokenizeResponse:
        """A prompt's token ids, as completions or (with messages) chat would see them."""
        if req.model is not None:
            self.check_model(req.model)
        if (req.prompt is None) == (req.messages is None):
            raise RequestError(
                ErrorCode.INVALID_REQUEST, "give exactly one of prompt and messages", "prompt"
            )
        if req.messages is not None:
            chat = ChatCompletionRequest(
                model=req.model or self.model_name,
                messages=req.messages,
                tools=req.tools,
                add_generation_prompt=req.add_generation_prompt,
            )
            ids, _ = self._chat_prompt(chat)
        else:
            ids = list(
                self.tokenizer(req.prompt, add_special_tokens=req.add_special_tokens).input_ids
            )
        return TokenizeResponse(count=len(ids), max_model_len=self.max_model_len, tokens=ids)

    def detokenize(self, req: DetokenizeRequest) -> DetokenizeResponse:
        """The text of token ids (ids outside the vocabulary are a 400)."""
        if req.model is not None:
            self.check_model(req.model)
        vocab = self.engine.limits.vocab_size
        bad = [t for t in req.tokens if not 0 <= t < vocab]
        if bad:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"tokens holds {bad[0]}, outside the vocabulary [0, {vocab})",
                "tokens",
            )
        return DetokenizeResponse(prompt=str(self.tokenizer.decode(req.tokens)))

    # -- completions ----------------------------------------------------------------------------

    def _completion_prompts(self, req: CompletionRequest) -> list[tuple[str, list[int]]]:
        p = req.prompt
        if isinstance(p, str):
            texts: list[str | list[int]] = [p]
        elif p and all(isinstance(x, int) for x in p):
            texts = [list(p)]  # type: ignore[arg-type]
        else:
            texts = list(p)  # type: ignore[arg-type]
        if not texts:
            raise RequestError(ErrorCode.INVALID_REQUEST, "prompt must not be empty", "prompt")
        out: list[tuple[str, list[int]]] = []
        for t in texts:
            if isinstance(t, str):
                out.append((t, list(self.tokenizer(t).input_ids)))
            else:
                out.append((str(self.tokenizer.decode(t)), list(t)))
        return out

    def _start_completion(
        self, req: CompletionRequest
    ) -> tuple[list[tuple[str, list[int]]], list[RequestStream]]:
        adapter = self.check_model(req.model)
        if req.suffix:
            raise RequestError(ErrorCode.INVALID_REQUEST, "suffix is not supported", "suffix")
        if req.best_of is not None and req.best_of != req.n:
            raise RequestError(
                ErrorCode.INVALID_REQUEST,
                f"best_of {req.best_of} is not supported: send n instead (best_of must equal "
                f"n, {req.n}, or be omitted)",
                "best_of",
            )
        prompts = self._completion_prompts(req)
        guide = req.requested_guide()
        ids: list[list[int]] = []
        params: list[SamplingParams] = []
        for _, prompt in prompts:
            for j in range(req.n):
                ids.append(prompt)
                params.append(
                    req.to_sampling_params(
                        16 if req.max_tokens is None else req.max_tokens,
                        req.logprobs,
                        req.logprobs if req.echo and req.logprobs is not None else None,
                        j,
                        guide,
                    )
                )
        return prompts, self._submit(ids, params, adapter)

    def _completion_logprobs(
        self, req: CompletionRequest, prompt_ids: list[int], c: _Choice
    ) -> CompletionLogprobs | None:
        if req.logprobs is None:
            return None
        out = CompletionLogprobs()
        pairs: list[tuple[int, Logprob | None]] = []
        if req.echo:
            plp = c.prompt_logprobs or [None] * len(prompt_ids)
            pairs.extend(zip(prompt_ids, plp, strict=True))
        pairs.extend(zip(c.token_ids, c.logprobs, strict=False))
        offset = 0
        for token, lp in pairs:
            text = self._token_text(token)
            out.tokens.append(text)
            out.text_offset.append(offset)
            offset += len(text)
            if lp is None:
                out.token_logprobs.append(None)
                out.top_logprobs.append(None)
            else:
                out.token_logprobs.append(lp[0])
                top = {self._token_text(t): v for t, v in lp[1].items()}
                top.setdefault(text, lp[0])
                out.top_logprobs.append(top)
        return out

    async def completion(self, req: CompletionRequest) -> CompletionResponse:
        """A whole (non-streamed) completion."""
        prompts, streams = self._start_completion(req)
        choices = [_Choice() for _ in streams]
        async for i, out in merge(streams):
            _accumulate(choices[i], out)
        result: list[CompletionChoice] = []
        for i, c in enumerate(choices):
            text, prompt_ids = prompts[i // req.n]
            result.append(
                CompletionChoice(
                    index=i,
                    text=(text if req.echo else "") + c.text,
                    logprobs=self._completion_logprobs(req, prompt_ids, c),
                    finish_reason=c.finish_reason,
                )
            )
        return CompletionResponse(
            model=self.model_name, choices=result, usage=_usage(prompts, choices)
        )

    async def completion_stream(self, req: CompletionRequest) -> AsyncIterator[str]:
        """SSE chunks of a completion (validation errors raise before the first chunk)."""
        prompts, streams = self._start_completion(req)
        return self._completion_events(req, prompts, streams)

    async def _completion_events(
        self,
        req: CompletionRequest,
        prompts: list[tuple[str, list[int]]],
        streams: list[RequestStream],
    ) -> AsyncIterator[str]:
        rid = CompletionResponse(model=self.model_name, choices=[]).id
        choices = [_Choice() for _ in streams]
        try:
            if req.echo:
                for i in range(len(streams)):
                    chunk = CompletionResponse(
                        id=rid,
                        model=self.model_name,
                        choices=[CompletionChoice(index=i, text=prompts[i // req.n][0])],
                    )
                    yield sse(chunk.model_dump(exclude_none=False))
            async for i, out in merge(streams):
                _accumulate(choices[i], out)
                lp = None
                if req.logprobs is not None and out.token_ids:
                    lp = self._completion_logprobs(
                        req.model_copy(update={"echo": False}),
                        [],
                        _Choice(token_ids=out.token_ids, logprobs=out.logprobs),
                    )
                if not out.text and not out.finished and lp is None:
                    continue
                chunk = CompletionResponse(
                    id=rid,
                    model=self.model_name,
                    choices=[
                        CompletionChoice(
                            index=i, text=out.text, logprobs=lp, finish_reason=out.finish_reason
                        )
                    ],
                )
                yield sse(chunk.model_dump())
            if req.stream_options and req.stream_options.include_usage:
                chunk = CompletionResponse(
                    id=rid, model=self.model_name, choices=[], usage=_usage(prompts, choices)
                )
                yield sse(chunk.model_dump())
        except RequestError as exc:
            yield sse(error_body(exc))
        yield sse("[DONE]")

    # -- chat -------------------------------------------------------------------------------------

    def _chat_prompt(self, req: ChatCompletionRequest) -> tuple[list[int], ToolPlan | None]:
        plan = plan_tools(
            req.tools, req.tool_choice, req.parallel_tool_calls, self.template_renders_tools()
        )
        messages = render_messages(
            [{"role": m.role, "content": m.text(), **(m.model_extra or {})} for m in req.messages],
            plan,
        )
        tools = None
        if plan is not None and plan.in_template:
            tools = [{"type": "function", "function": f} for f in plan.functions]
        try:
            ids = self.tokenizer.apply_chat_template(
                messages,
                tools=tools,
                add_generation_prompt=req.add_generation_prompt,
                tokenize=True,
                return_dict=False,
            )
        except Exception as exc:  # a template that refuses these messages
            raise RequestError(
                ErrorCode.INVALID_REQUEST, f"cannot apply the chat template: {exc}", "messages"
            ) from None
        if isinstance(ids, dict):
            ids = ids["input_ids"]
        prompt = [int(t) for t in ids]
        if plan is not None and plan.prefix:
            prompt += self.tokenizer.encode(plan.prefix, add_special_tokens=False)
        return prompt, plan

    def _start_chat(
        self, req: ChatCompletionRequest
    ) -> tuple[list[int], list[RequestStream], ToolPlan | None]:
        adapter = self.check_model(req.model)
        prompt, plan = self._chat_prompt(req)
        requested = req.max_completion_tokens if req.max_tokens is None else req.max_tokens
        if requested is None and len(prompt) >= self.max_model_len:
            requested = 1  # let the engine produce the standard too-long message
        max_tokens = self._default_max_tokens(prompt, requested)
        top = (req.top_logprobs or 0) if req.logprobs else None
        # A forced call is held to its grammar (and its arguments to the schema).
        guide = (plan.guide() if plan is not None else None) or req.requested_guide()
        params = [req.to_sampling_params(max_tokens, top, None, j, guide) for j in range(req.n)]
        return prompt, self._submit([prompt] * req.n, params, adapter), plan

    def _chat_logprobs(self, tokens: list[int], lps: list[Logprob]) -> ChatLogprobs:
        content = []
        for token, (value, top) in zip(tokens, lps, strict=False):
            text = self._token_text(token)
            content.append(
                TokenLogprob(
                    token=text,
                    logprob=value,
                    bytes=list(text.encode()),
                    top_logprobs=[
                        TopLogprob(
                            token=(t := self._token_text(i)), logprob=v, bytes=list(t.encode())
                        )
                        for i, v in top.items()
                    ],
                )
            )
        return ChatLogprobs(content=content)

    async def chat(self, req: ChatCompletionRequest) -> ChatCompletionResponse:
        """A whole (non-streamed) chat completion."""
        prompt, streams, plan = self._start_chat(req)
        choices = [_Choice() for _ in streams]
        async for i, out in merge(streams):
            _accumulate(choices[i], out)
        return ChatCompletionResponse(
            model=self.model_name,
            choices=[
                ChatChoice(
                    index=i,
                    message=message,
                    logprobs=self._chat_logprobs(c.token_ids, c.logprobs) if req.logprobs else None,
                    finish_reason=finish,
                )
                for i, c in enumerate(choices)
                for message, finish in [assistant_message(c.text, c.finish_reason, plan)]
            ],
            usage=_usage([("", prompt)], choices),
        )

    async def chat_stream(self, req: ChatCompletionRequest) -> AsyncIterator[str]:
        """SSE chunks of a chat completion (validation errors raise before the first chunk)."""
        prompt, streams, plan = self._start_chat(req)
        return self._chat_events(req, prompt, streams, plan)

    async def _chat_events(
        self,
        req: ChatCompletionRequest,
        prompt: list[int],
        streams: list[RequestStream],
        plan: ToolPlan | None,
    ) -> AsyncIterator[str]:
        rid = ChatCompletionResponse(model="", choices=[], usage=UsageInfo()).id
        choices = [_Choice() for _ in streams]
        filters = [ContentFilter(plan) if plan else None for _ in streams]
        try:
            for i in range(len(streams)):
                first = ChatCompletionChunk(
                    id=rid,
                    model=self.model_name,
                    choices=[
                        ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))
                    ],
                )
                yield sse(first.model_dump(exclude_none=True))
            async for i, out in merge(streams):
                _accumulate(choices[i], out)
                text, calls, finish = out.text, None, out.finish_reason
                if (f := filters[i]) is not None:
                    text = f.feed(out.text)
                    if out.finished:
                        rest, found = f.finish()
                        text += rest
                        if found:
                            calls = [DeltaToolCall(index=k, **c) for k, c in enumerate(found)]
                            finish = "tool_calls"
                if not text and not calls and not out.finished:
                    continue
                choice = ChatChunkChoice(
                    index=i,
                    delta=DeltaMessage(content=text or None, tool_calls=calls),
                    logprobs=self._chat_logprobs(out.token_ids, out.logprobs)
                    if req.logprobs
                    else None,
                    finish_reason=finish,
                )
                chunk = ChatCompletionChunk(id=rid, model=self.model_name, choices=[choice])
                yield sse(chunk.model_dump(exclude_none=True) | _null_finish(choice))
            if req.stream_options and req.stream_options.include_usage:
                chunk = ChatCompletionChunk(
                    id=rid, model=self.model_name, choices=[], usage=_usage([("", prompt)], choices)
                )
                yield sse(chunk.model_dump(exclude_none=True))
        except RequestError as exc:
            yield sse(error_body(exc))
        yield sse("[DONE]")


def _null_finish(choice: ChatChunkChoice) -> dict[str, Any]:
    # OpenAI sends "finish_reason": null on every chunk but the last; keep the key.
    dumped = choice.model_dump(exclude_none=True)
    dumped.setdefault("finish_reason", None)
    dumped.setdefault("logprobs", None)
    return {"choices": [dumped]}


def _accumulate(c: _Choice, out: RequestOutput) -> None:
    c.text += out.text
    c.token_ids.extend(out.token_ids)
    c.logprobs.extend(out.logprobs)
    if out.prompt_logprobs is not None:
        c.prompt_logprobs = out.prompt_logprobs
    c.cached_tokens = out.cached_tokens
    if out.finished:
        c.finish_reason = out.finish_reason


def _usage(prompts: list[tuple[str, list[int]]], choices: list[_Choice]) -> UsageInfo:
    prompt_tokens = sum(len(ids) for _, ids in prompts)
    completion = sum(len(c.token_ids) for c in choices)
    # The n choices of a prompt share it: count its first choice's cache hits.
    n = max(len(choices) // max(len(prompts), 1), 1)
    cached = sum(c.cached_tokens for c in choices[::n])
    return UsageInfo(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


def error_body(exc: RequestError) -> dict[str, Any]:
    """The OpenAI error JSON for a `RequestError`."""
    return {
        "error": {
            "message": exc.message,
            "type": exc.code.error_type,
            "param": exc.param,
            "code": exc.code.name.lower(),
        }
    }
