"""The FastAPI app of an AgentService replica."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hanlin.agent.runtime import Agent
from hanlin.agent.service.metrics import AgentMetrics
from hanlin.agent.service.protocol import (
    ChatRequest,
    RunRequest,
    RunResponse,
    SessionCreate,
    SessionView,
    StepModel,
    ToolView,
    Turn,
    Usage,
)
from hanlin.agent.service.sessions import Session, SessionStore
from hanlin.agent.strategies import RunResult, Step

JSONDict = dict[str, Any]


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}},
        status_code=status,
    )


def _response(run_id: str, result: RunResult, session_id: str | None) -> JSONDict:
    model = RunResponse(
        id=run_id,
        status=result.status,
        answer=result.answer,
        reason=result.reason,
        steps=[StepModel(**asdict(s)) for s in result.steps],
        tool_steps=result.tool_steps,
        usage=Usage(prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens),
        duration_s=result.duration_s,
        session_id=session_id,
    )
    return model.model_dump(by_alias=True)


def _sse(event: str, data: JSONDict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n"


def create_app(agent: Agent, *, name: str = "hanlin-agent") -> FastAPI:
    """The service for one agent; `name` is the model name /v1/chat/completions answers as."""
    app = FastAPI(title="Hanlin agent", version="1")
    metrics = AgentMetrics()
    sessions = SessionStore()

    def execute(task: str, session: Session | None, on_step: Any = None) -> RunResult:
        history = session.memory() if session else []
        result = agent.run(task, history=history, on_step=on_step, on_tool=metrics.observe_tool)
        metrics.observe_run(result)
        if session is not None:
            sessions.add_turn(session, task, result)
        return result

    async def run(request: RunRequest, session: Session | None) -> Response:
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        sid = session.id if session else None
        if not request.stream:
            result = await asyncio.to_thread(execute, request.task, session)
            return JSONResponse(_response(run_id, result, sid))
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Step | None] = asyncio.Queue()

        def on_step(step: Step) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, step)

        async def events() -> AsyncIterator[str]:
            task = asyncio.create_task(asyncio.to_thread(execute, request.task, session, on_step))
            task.add_done_callback(lambda _: queue.put_nowait(None))
            while (step := await queue.get()) is not None:
                yield _sse("step", StepModel(**asdict(step)).model_dump(by_alias=True))
            yield _sse("result", _response(run_id, await task, sid))

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/health")
    def health() -> JSONDict:
        return {"status": "ok", "strategy": agent.settings.strategy, "tools": agent.toolbox.names()}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/tools")
    def list_tools() -> JSONDict:
        tools = [
            ToolView(
                name=t.name, description=t.description, parameters=t.parameters, source=t.source
            )
            for t in agent.toolbox.tools.values()
        ]
        return {"tools": [t.model_dump() for t in tools]}

    @app.post("/v1/runs", response_model=None)
    async def create_run(request: RunRequest) -> Response:
        session = None
        if request.session_id is not None:
            session = sessions.get(request.session_id)
            if session is None:
                return _error(
                    404, f"sessionId: no session {request.session_id!r}", "session_not_found"
                )
        return await run(request, session)

    @app.post("/v1/sessions", status_code=201, response_model=None)
    def create_session(body: SessionCreate | None = None) -> Response:
        try:
            session = sessions.create(body.id if body else None)
        except KeyError:
            return _error(409, f"id: session {body.id if body else ''!r} exists", "session_exists")
        return JSONResponse({"id": session.id}, status_code=201)

    @app.get("/v1/sessions/{session_id}", response_model=None)
    def get_session(session_id: str) -> Response:
        session = sessions.get(session_id)
        if session is None:
            return _error(404, f"no session {session_id!r}", "session_not_found")
        view = SessionView(
            id=session.id,
            turns=[
                Turn(task=t, status=r.status, answer=r.answer, reason=r.reason)
                for t, r in session.turns
            ],
            memory=session.memory(),
        )
        return JSONResponse(view.model_dump())

    @app.post("/v1/sessions/{session_id}/runs", response_model=None)
    async def session_run(session_id: str, request: RunRequest) -> Response:
        session = sessions.get(session_id)
        if session is None:
            return _error(404, f"no session {session_id!r}", "session_not_found")
        return await run(request, session)

    @app.delete("/v1/sessions/{session_id}", status_code=204, response_model=None)
    def delete_session(session_id: str) -> Response:
        if not sessions.delete(session_id):
            return _error(404, f"no session {session_id!r}", "session_not_found")
        return Response(status_code=204)

    @app.get("/v1/models")
    def models() -> JSONDict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "hanlin"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: ChatRequest) -> Response:
        # The last user message is the task; everything before it is the conversation so far.
        users = [i for i, m in enumerate(request.messages) if m.role == "user"]
        if not users:
            return _error(400, "messages: needs at least one user message", "no_user_message")
        last = users[-1]
        task = request.messages[last].text()
        history = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in request.messages[:last]
            if m.role in ("system", "developer", "user", "assistant")
        ]

        def execute_chat() -> RunResult:
            result = agent.run(task, history=history, on_tool=metrics.observe_tool)
            metrics.observe_run(result)
            return result

        result = await asyncio.to_thread(execute_chat)
        content = (
            result.answer if result.answer is not None else f"The agent failed: {result.reason}"
        )
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
        if not request.stream:
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                    "hanlin": {"status": result.status, "toolSteps": result.tool_steps},
                }
            )

        def chunk(delta: JSONDict, finish: str | None) -> str:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(body)}\n\n"

        async def stream() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            yield chunk({"content": content}, None)
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
