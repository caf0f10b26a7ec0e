"""The FastAPI app: OpenAI routes, health, metrics, API-key auth, error rendering."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hanlin.serve.async_engine import AsyncEngine
from hanlin.serve.errors import ErrorCode, RequestError
from hanlin.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
)
from hanlin.serve.serving import OpenAIServing, error_body

T = TypeVar("T")


def error_response(exc: RequestError) -> JSONResponse:
    """Render a `RequestError` as OpenAI error JSON with its HTTP status."""
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    return JSONResponse(error_body(exc), status_code=exc.code.http_status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    param = None
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if param is None and loc:
            param = loc[0]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request body", param


async def _until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it (and so aborting its sequences) if the client goes away."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while not task.done():
            if await request.is_disconnected():
                task.cancel()
                return
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    try:
        return await task
    finally:
        watcher.cancel()


def create_app(engine: AsyncEngine, model_name: str, api_key: str | None = None) -> FastAPI:
    """The REST app over a started `AsyncEngine` (the caller starts and stops it)."""

    app = FastAPI(title="Hanlin serve")
    serving = OpenAIServing(engine, model_name)
    metrics = engine.metrics

    async def authorize(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), api_key):
            raise RequestError(
                ErrorCode.UNAUTHENTICATED,
                "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
            )

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        if exc.code is not ErrorCode.OVERLOADED:
            metrics.rejected.labels(exc.code.name).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(RequestError(ErrorCode.INVALID_REQUEST, message, param))

    @app.get("/health")
    async def health() -> Response:
        if not engine.healthy:
            return JSONResponse({"status": "dead", "error": repr(engine.error)}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(
            await engine.render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def cards() -> list[ModelCard]:
        base = ModelCard(id=model_name, root=model_name, max_model_len=serving.max_model_len)
        adapters = [
            ModelCard(id=name, root=name, parent=model_name, max_model_len=serving.max_model_len)
            for name in serving.adapters
        ]
        return [base, *adapters]

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> ModelList:
        return ModelList(data=cards())

    @app.get("/v1/models/{model:path}", dependencies=[Depends(authorize)])
    async def model(model: str) -> ModelCard:
        """One model (`client.models.retrieve`); an unknown id is OpenAI's 404."""
        serving.check_model(model)
        return next(c for c in cards() if c.id == model)

    @app.post("/tokenize", dependencies=[Depends(authorize)])
    async def tokenize(body: TokenizeRequest) -> TokenizeResponse:
        """Token ids of a prompt or of chat messages (vLLM's endpoint)."""
        return serving.tokenize(body)

    @app.post("/detokenize", dependencies=[Depends(authorize)])
    async def detokenize(body: DetokenizeRequest) -> DetokenizeResponse:
        """Text of token ids (vLLM's endpoint)."""
        return serving.detokenize(body)

    def _stream(events: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/completions", dependencies=[Depends(authorize)], response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        if body.stream:
            return _stream(await serving.completion_stream(body))
        result = await _until_disconnect(request, serving.completion(body))
        return JSONResponse(result.model_dump())

    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)], response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        if body.stream:
            return _stream(await serving.chat_stream(body))
        result = await _until_disconnect(request, serving.chat(body))
        return JSONResponse(result.model_dump())

    _ = (completions, chat, models, prometheus, health, _request_error, _validation_error)
    return app
