"""Tools that live on a remote tool server, built from its OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx

from hanlin.agent.tooling import Tool, ToolError

JSONDict = dict[str, Any]


def _resolve(schema: Any, document: JSONDict) -> Any:
    # Servers other than ours may put argument schemas under components/schemas.
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            node: Any = document
            for part in ref[2:].split("/"):
                node = node[part]
            return _resolve(node, document)
        return {k: _resolve(v, document) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, document) for v in schema]
    return schema


def remote_tools(url: str, *, timeout_s: float = 60.0) -> list[Tool]:
    """Every POST operation of the server's OpenAPI document, as a Tool."""
    base = url.rstrip("/")
    try:
        response = httpx.get(f"{base}/openapi.json", timeout=10.0)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ValueError(f"tools.remote.url: cannot read {base}/openapi.json: {exc}") from None
    tools: list[Tool] = []
    for path, operations in document.get("paths", {}).items():
        post = operations.get("post") if isinstance(operations, dict) else None
        if not post:
            continue
        name = post.get("operationId") or path.rstrip("/").rsplit("/", 1)[-1]
        schema = (
            post.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema", {"type": "object", "properties": {}})
        )
        tools.append(
            Tool(
                name=name,
                description=post.get("summary") or post.get("description") or name,
                parameters=_resolve(schema, document),
                call=_caller(f"{base}{path}", name, timeout_s),
                source="remote",
            )
        )
    if not tools:
        raise ValueError(f"tools.remote.url: {base}/openapi.json describes no POST operations")
    return tools


def _caller(endpoint: str, name: str, timeout_s: float) -> Any:
    def call(arguments: JSONDict) -> str:
        try:
            response = httpx.post(endpoint, json=arguments, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise ToolError(f"remote tool {name} unreachable: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            raise ToolError(f"remote tool {name}: HTTP {response.status_code}, not JSON") from None
        if isinstance(body, dict) and "ok" in body:
            if body["ok"]:
                return str(body.get("output", ""))
            raise ToolError(str(body.get("error", "failed")))
        if response.status_code >= 400:
            raise ToolError(
                f"remote tool {name}: HTTP {response.status_code}: {response.text[:300]}"
            )
        # A plain (non-Hanlin) endpoint: its JSON body is the result.
        return response.text

    return call
