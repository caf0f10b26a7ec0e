"""gRPC transport: Generate, GenerateStream and Health over the shared `AsyncEngine`.

Only conversion lives here: requests become `SamplingParams`, `RequestError`
becomes the `grpc.StatusCode` its `ErrorCode` names.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc

from hanlin.serve.async_engine import AsyncEngine
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.guided import Guide, one_guide
from hanlin.serve.outputs import Logprob, RequestOutput
from hanlin.serve.params import SamplingParams
from hanlin.serve.proto import serve_pb2 as _pb2
from hanlin.serve.proto import serve_pb2_grpc as _pb2_grpc

# Generated modules carry no type information.
serve_pb2: Any = _pb2
serve_pb2_grpc: Any = _pb2_grpc


def _logprobs(tokens: list[int], values: list[Logprob]) -> list[Any]:
    return [
        serve_pb2.TokenLogprob(token_id=t, logprob=v[0], top=v[1])
        for t, v in zip(tokens, values, strict=False)
    ]


class InferenceService(_pb2_grpc.InferenceServicer):  # type: ignore[misc]
    """The servicer: converts messages and errors, nothing else."""

    def __init__(self, engine: AsyncEngine, model_name: str, api_key: str | None) -> None:
        self.engine = engine
        self.model_name = model_name
        self.api_key = api_key
        self.tokenizer: Any = engine.tokenizer

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], exc: RequestError) -> None:
        await context.abort(getattr(grpc.StatusCode, exc.code.grpc_status), exc.message)

    def _authorize(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.api_key is None:
            return
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.api_key):
            raise RequestError(
                ErrorCode.UNAUTHENTICATED,
                "missing or invalid API key (authorization: Bearer <key>)",
            )

    def _prepare(self, request: Any) -> tuple[list[int], SamplingParams, str | None]:
        adapter = request.model if request.model in self.engine.limits.lora_names else None
        if request.model != self.model_name and adapter is None:
            names = ", ".join([self.model_name, *self.engine.limits.lora_names])
            raise RequestError(
                ErrorCode.MODEL_NOT_FOUND,
                f"model {request.model!r} is not served here; use one of {names}",
                "model",
            )
        ids = list(request.prompt_token_ids) or list(self.tokenizer(request.prompt).input_ids)
        params = SamplingParams(
            max_tokens=request.max_tokens or 16,
            temperature=request.temperature,
            top_p=request.top_p or 1.0,
            top_k=request.top_k,
            min_p=request.min_p,
            seed=request.seed if request.HasField("seed") else None,
            stop=list(request.stop),
            stop_token_ids=list(request.stop_token_ids),
            ignore_eos=request.ignore_eos,
            logprobs=request.logprobs if request.HasField("logprobs") else None,
            min_tokens=request.min_tokens,
            logit_bias=dict(request.logit_bias),
            repetition_penalty=request.repetition_penalty or 1.0,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            guide=_guide(request),
        )
        return ids, params, adapter

    async def _run(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[RequestOutput]:
        self._authorize(context)
        ids, params, adapter = self._prepare(request)
        async for out in self.engine.submit(ids, params, adapter=adapter):
            yield out

    async def Generate(  # noqa: N802 (the proto's method name)
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """One whole generation."""
        text, tokens, lps = "", [], []
        last: RequestOutput | None = None
        try:
            async for out in self._run(request, context):
                text += out.text
                tokens.extend(out.token_ids)
                lps.extend(out.logprobs)
                last = out
        except RequestError as exc:
            await self._fail(context, exc)
        assert last is not None
        return serve_pb2.GenerateResponse(
            text=text,
            token_ids=tokens,
            finish_reason=last.finish_reason or "",
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            logprobs=_logprobs(tokens, lps),
        )

    async def GenerateStream(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        """Chunks as they are produced; a cancelled call aborts the sequence."""
        try:
            async for out in self._run(request, context):
                yield serve_pb2.GenerateChunk(
                    text=out.text,
                    token_ids=out.token_ids,
                    finish_reason=out.finish_reason or "",
                    prompt_tokens=out.prompt_tokens,
                    completion_tokens=out.completion_tokens,
                    logprobs=_logprobs(out.token_ids, out.logprobs),
                )
        except RequestError as exc:
            await self._fail(context, exc)

    async def Health(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        """Liveness and load."""
        state = self.engine.state
        return serve_pb2.HealthResponse(
            serving=self.engine.healthy,
            model=self.model_name,
            running=state.running,
            waiting=state.waiting,
            kv_cache_usage=state.kv_usage,
        )


async def start_grpc(
    engine: AsyncEngine, model_name: str, host: str, port: int, api_key: str | None
) -> grpc.aio.Server:
    """Start a gRPC server on `host:port` (returns once it listens)."""
    server = grpc.aio.server()
    serve_pb2_grpc.add_InferenceServicer_to_server(
        InferenceService(engine, model_name, api_key), server
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC to {host}:{port}")
    await server.start()
    return server


def _guide(request: Any) -> Guide | None:
    """The structured output a request asks for; more than one is INVALID_ARGUMENT."""
    return one_guide(
        [
            Guide.of(kind, value, kind if kind != "json" else "json_schema")
            for kind, value in (
                ("json", request.json_schema),
                ("regex", request.regex),
                ("choice", list(request.choice)),
                ("grammar", request.grammar),
            )
            if value
        ]
    )
