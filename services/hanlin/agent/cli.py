"""`hanlin agent`: serve an agent over HTTP (or run one task) from a spec or from flags."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Run an AgentService: an LLM, a strategy and tools behind an HTTP API.")


@app.command()
def agent(
    spec: Path | None = typer.Option(None, "--spec", help="An AgentService resource (YAML)."),
    llm: str | None = typer.Option(None, "--llm", help="OpenAI-compatible endpoint URL."),
    model: str | None = typer.Option(None, "--model", help="Model name for the endpoint."),
    strategy: str = typer.Option("react", help="react, rewoo, plan-execute or function-calling."),
    tool: list[str] = typer.Option(
        [], "--tool", help="NAME, NAME:{json config}, or a tool server URL; repeat for more."
    ),
    max_steps: int = typer.Option(8, "--max-steps", help="Most tool calls per run."),
    timeout: float = typer.Option(120.0, "--timeout", help="Wall-clock budget per run, seconds."),
    system_prompt: str = typer.Option("", "--system-prompt", help="Instructions for every run."),
    task: str | None = typer.Option(
        None, "--task", help="Run this one task, print the result as JSON and exit."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 in a pod)."),
    port: int = typer.Option(8080, help="Port to bind."),
) -> None:
    """Serve the agent API, or with --task run a single task."""
    from hanlin.agent.runtime import Agent, AgentSettings
    from hanlin.agent.toolspecs import parse_tool_flag, tools_from_specs

    try:
        if spec is not None:
            from hanlin.agent.spec import settings_from_spec

            settings = settings_from_spec(spec, llm_url=llm, model=model)
        else:
            if not llm or not model:
                raise typer.BadParameter("give --spec FILE, or both --llm URL and --model NAME")
            settings = AgentSettings(
                llm_url=llm,
                model=model,
                strategy=strategy,
                system_prompt=system_prompt,
                max_steps=max_steps,
                wall_seconds=timeout,
                tools=[parse_tool_flag(t) for t in tool],
            )
        tools = tools_from_specs(settings.tools)
    except ValueError as exc:  # pydantic's ValidationError and ResourceError included
        raise typer.BadParameter(str(exc)) from None
    runner = Agent(settings, tools)
    if task is not None:
        result = runner.run(task)
        typer.echo(json.dumps(result.to_json(), indent=2))
        raise typer.Exit(0 if result.status == "succeeded" else 1)
    import uvicorn

    from hanlin.agent.service.app import create_app

    uvicorn.run(create_app(runner, name=settings.name), host=host, port=port, log_level="info")
