"""AgentService -> ConfigMap (spec and resolved tools), Deployment, Service."""

from __future__ import annotations

import json
from typing import Any

from hanlin.api import AgentService
from hanlin.plan import Resolved, plan_agent
from hanlin_operator.builders.common import BuildSettings, spec_configmap
from hanlin_operator.builders.model_deployment import deployment, service

TOOLS_FILE = "tools.json"


def resolved_tools(agent: AgentService) -> list[dict[str, Any]]:
    """The tool list with remote serviceRefs turned into in-cluster URLs."""
    out: list[dict[str, Any]] = []
    for tool in agent.spec.tools or []:
        if tool.builtin is not None:
            out.append({"builtin": tool.builtin, "config": tool.config or {}})
            continue
        remote = tool.remote
        assert remote is not None  # the model guarantees one of builtin/remote
        url = remote.url
        if remote.service_ref is not None:
            ref = remote.service_ref
            url = f"http://{ref.name}.{agent.metadata.namespace}.svc:{ref.port}{ref.path}"
        out.append({"remote": {"url": url, "tools": remote.tools}})
    return out


def build(
    agent: AgentService, settings: BuildSettings, resolved: Resolved | None = None
) -> list[dict[str, Any]]:
    """The children of an AgentService."""
    plan = plan_agent(agent, resolved)
    config = spec_configmap(agent, {TOOLS_FILE: json.dumps(resolved_tools(agent), indent=1)})
    env_digest = {"env": [(e.name, repr(e.value)) for e in plan.env], "cm": config["data"]}
    return [
        config,
        deployment(agent, plan, settings, env_digest, agent.spec.replicas),
        service(agent, plan),
    ]
