"""`hanlin tools serve`: expose built-in tools over HTTP with an OpenAPI document."""

from __future__ import annotations

import typer

app = typer.Typer(help="Serve tools over HTTP (POST /tools/{name}, OpenAPI at /openapi.json).")


@app.callback()
def main() -> None:
    """Remote tool servers."""


@app.command()
def serve(
    tool: list[str] = typer.Option(
        ..., "--tool", help="A built-in tool: NAME or NAME:{json config}; repeat for more."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8090, help="Port to bind."),
) -> None:
    """Serve the named tools until interrupted."""
    import uvicorn

    from hanlin.agent.tool_server import create_tool_app
    from hanlin.agent.tooling import Toolbox
    from hanlin.agent.toolspecs import builtin_tool, parse_tool_flag

    tools = []
    for i, value in enumerate(tool):
        spec = parse_tool_flag(value)
        if "builtin" not in spec:
            raise typer.BadParameter(f"--tool {value!r}: only built-in tools can be served")
        try:
            tools.append(builtin_tool(spec["builtin"], spec.get("config"), f"--tool[{i}]"))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    uvicorn.run(create_tool_app(Toolbox.of(tools)), host=host, port=port, log_level="warning")
