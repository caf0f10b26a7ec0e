"""A remote tool server (AgentLego-style): `POST /tools/{name}` per tool, described by
an OpenAPI document whose request schemas are the tools' own argument schemas."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hanlin.agent.tooling import Toolbox

JSONDict = dict[str, Any]

RESULT_SCHEMA: JSONDict = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "output": {"type": "string"},
        "error": {"type": "string"},
    },
    "required": ["ok"],
}


def openapi_document(toolbox: Toolbox, title: str = "Hanlin tools") -> JSONDict:
    """OpenAPI 3.1 for the tools: one POST operation per tool, operationId = tool name."""
    paths: JSONDict = {}
    for t in toolbox.tools.values():
        paths[f"/tools/{t.name}"] = {
            "post": {
                "operationId": t.name,
                "summary": t.description,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": t.parameters}},
                },
                "responses": {
                    "200": {
                        "description": "The tool ran; ok=false carries an expected failure.",
                        "content": {"application/json": {"schema": RESULT_SCHEMA}},
                    }
                },
            }
        }
    return {"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": paths}


def create_tool_app(toolbox: Toolbox) -> FastAPI:
    """The FastAPI app serving `toolbox`."""
    app = FastAPI(title="Hanlin tools", openapi_url=None, docs_url=None, redoc_url=None)
    document = openapi_document(toolbox)

    @app.get("/openapi.json")
    def openapi() -> JSONDict:
        return document

    @app.get("/health")
    def health() -> JSONDict:
        return {"status": "ok", "tools": toolbox.names()}

    @app.post("/tools/{name}")
    async def call(name: str, request: Request) -> JSONResponse:
        if name not in toolbox.tools:
            return JSONResponse({"ok": False, "error": f"unknown tool {name!r}"}, status_code=404)
        try:
            arguments = await request.json()
        except ValueError:
            return JSONResponse(
                {"ok": False, "error": "the request body must be a JSON object"}, status_code=400
            )
        # Tools block (a sandboxed process, an HTTP fetch): keep the event loop free.
        result = await asyncio.to_thread(toolbox.invoke, name, arguments)
        body: JSONDict = {"ok": result.ok}
        body.update({"output": result.output} if result.ok else {"error": result.error})
        return JSONResponse(body)

    return app
