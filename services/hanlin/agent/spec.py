"""An AgentService resource (or CLI flags) → AgentSettings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hanlin.agent.runtime import AgentSettings

JSONDict = dict[str, Any]

# Where a ModelDeployment's OpenAI API listens (its Service, port 8000); the operator may
# pass the exact address instead through HANLIN_LLM_URL.
DEPLOYMENT_PORT = 8000


def settings_from_spec(
    path: str | Path, *, llm_url: str | None = None, model: str | None = None
) -> AgentSettings:
    """Settings from an AgentService file; `llm_url`/`model` (or HANLIN_LLM_URL/_MODEL) override."""
    from hanlin.api import AgentService, load_resource

    resource = load_resource(Path(path), AgentService)
    spec = resource.spec
    llm = spec.llm
    if llm.endpoint is not None:
        url, name = llm.endpoint.url, llm.endpoint.model
    elif llm.deployment_ref is not None:
        ref = llm.deployment_ref.name
        url, name = f"http://{ref}:{DEPLOYMENT_PORT}/v1", ref
    else:  # the API model refuses this; keep the message if it ever changes
        raise ValueError("spec.llm: set exactly one of deploymentRef or endpoint")
    url = llm_url or os.environ.get("HANLIN_LLM_URL") or url
    name = model or os.environ.get("HANLIN_LLM_MODEL") or name
    tools: list[JSONDict] = []
    for t in spec.tools or []:
        if t.builtin is not None:
            tools.append({"builtin": t.builtin, "config": dict(t.config or {})})
        elif t.remote is not None:
            remote = t.remote
            if remote.url is not None:
                base = remote.url
            else:
                assert remote.service_ref is not None
                ref_ = remote.service_ref
                base = f"http://{ref_.name}:{ref_.port}{ref_.path.rstrip('/')}"
            entry: JSONDict = {"url": base}
            if remote.tools:
                entry["tools"] = list(remote.tools)
            tools.append({"remote": entry})
    return AgentSettings(
        llm_url=url,
        model=name,
        strategy=spec.strategy,
        system_prompt=spec.system_prompt or "",
        max_steps=spec.max_steps,
        wall_seconds=float(spec.timeout_seconds),
        # The Secret named by apiKeySecretRef reaches the pod as this variable.
        api_key=os.environ.get("HANLIN_LLM_API_KEY") or None,
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
        tools=tools,
        name=resource.metadata.name,
    )
